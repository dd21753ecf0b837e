"""Reading records: JSONL, JSON arrays, Parquet and Arrow in (a ``save_to_disk`` folder and a
cached dataset id through :mod:`datagen.core.hfdata`), any of the formats of
:mod:`datagen.core.formats` and the shapes of :mod:`datagen.core.shapes`.

Readers stream, locate every problem precisely (file, line or row, field) and either raise an
:class:`InputError` or, with ``on_error="skip"``, hand the bad row to a rejection callback and
carry on. What JSON is accepted is :mod:`datagen.core.strictjson`'s; writing, atomic, is
:mod:`datagen.core.writing`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from datagen.core.errors import FieldError, InputError, UserError, printable
from datagen.core.formats import misspelt_field
from datagen.core.hfdata import input_files
from datagen.core.record import Record, Rejection
from datagen.core.shapes import INPUT_FORMATS, RowMap, describe, detect, explain, read_row
from datagen.core.strictjson import DECODER, MAX_DEPTH, BadValue, check_value, decode_line

RejectFn = Callable[[Rejection], None]


# -- raw rows (each value decoded as strict JSON: datagen.core.strictjson) --------------------------
def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


Row = tuple[int, "int | None", Any]  # (line or row number, array item number or None, value)


def _lines(path: Path, span: tuple[int, int, int] | None) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of the file, or of the byte range ``(start, end, first line)``."""
    start, end, first = span or (0, None, 1)
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        for lineno, raw in enumerate(f, start=first):
            if end is not None and pos >= end:
                return
            pos += len(raw)
            yield lineno, raw


def _iter_jsonl(path: Path, on_bad: Callable[[InputError, str], None] | None, span: tuple[int, int, int] | None = None) -> Iterator[Row]:
    for lineno, raw in _lines(path, span):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            err = InputError(str(path), lineno, None, f"bytes are not valid UTF-8 (byte {e.start + 1} of the line: {raw[e.start:e.start + 4]!r})")
            err.code = "invalid_utf8"  # type: ignore[attr-defined]
            if on_bad is None:
                raise err from None
            on_bad(err, raw.decode("utf-8", errors="replace"))
            continue
        if lineno == 1:
            line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        try:
            obj = decode_line(line)
        except json.JSONDecodeError as e:
            err = InputError(str(path), lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")
            err.code = "malformed_json"  # type: ignore[attr-defined]
        except BadValue as e:
            err = InputError(str(path), lineno, e.field, e.message)
            err.code = e.code  # type: ignore[attr-defined]
        else:
            yield lineno, None, obj
            continue
        if on_bad is None:
            raise err from None
        on_bad(err, printable(line.rstrip("\n")))


def _iter_json_array(path: Path) -> Iterator[Row]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(str(path), line, None, "bytes are not valid UTF-8") from None
    pos = text.index("[") + 1
    item = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise InputError(str(path), _line_of(text, pos), None, "malformed JSON: array is not closed with ']'")
        if text[pos] == "]":
            tail = text[pos + 1:]
            if tail.strip():
                rest = pos + 1 + len(tail) - len(tail.lstrip())
                raise InputError(str(path), _line_of(text, rest), None, f"malformed JSON: unexpected text after the closing ']' of the array: {text[rest:rest + 20]!r}")
            return
        item += 1
        line = _line_of(text, pos)
        try:
            obj, end = DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InputError(str(path), _line_of(text, e.pos), None, f"malformed JSON: {e.msg}", item=item) from None
        except RecursionError:
            raise InputError(str(path), line, None, f"malformed JSON: nested too deeply (more than {MAX_DEPTH} levels)", item=item) from None
        except BadValue as e:
            raise InputError(str(path), line, e.field, e.message, item=item) from None
        bad = check_value(obj)
        if bad is not None:
            raise InputError(str(path), line, bad.field, bad.message, item=item)
        yield line, item, obj
        pos = end


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InputError(str(path), None, None, f"not a readable Parquet file: {e}") from None
    return _batch_rows(path, pf.iter_batches(batch_size=4096), "Parquet")


def _iter_arrow(path: Path) -> Iterator[Row]:
    """An Arrow IPC file: the stream format ``datasets`` writes, or the file format."""
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path))
        if source.read(6) == b"ARROW1":
            reader = pa.ipc.open_file(source)
            batches: Iterator[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            source.seek(0)
            batches = iter(pa.ipc.open_stream(source))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InputError(str(path), None, None, f"not a readable Arrow file (IPC stream or file format): {str(e)[:200]}") from None
    return _batch_rows(path, batches, "Arrow")


def _batch_rows(path: Path, batches: Iterator[Any], what: str) -> Iterator[Row]:
    """The rows of Arrow record batches, numbered from 1, checked as JSON rows are."""
    import pyarrow as pa

    row = 0
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as e:  # a corrupt page behind an intact footer
            raise InputError(str(path), None, None, f"corrupt {what} data after row {row}: {str(e)[:200]}") from None
        if batch is None:
            return
        for obj in batch.to_pylist():
            row += 1
            for k in ("scores", "flags", "meta"):  # record format stores these as JSON strings
                if isinstance(obj.get(k), str):
                    try:
                        obj[k] = decode_line(obj[k])
                    except (json.JSONDecodeError, BadValue) as e:
                        detail = e.msg if isinstance(e, json.JSONDecodeError) else e.message
                        raise InputError(str(path), row, k, f"holds invalid JSON text: {detail}", "row") from None
            bad = check_value(obj)
            if bad is not None:
                raise InputError(str(path), row, bad.field, bad.message, "row")
            yield row, None, {k: v for k, v in obj.items() if v is not None}


def _kind(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if path.suffix.lower() == ".parquet" or head.startswith(b"PAR1"):
        return "parquet"
    if path.suffix.lower() == ".arrow" or head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        return "arrow"
    head = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return "array" if head.startswith(b"[") else "jsonl"


def open_rows(path: str | os.PathLike[str], on_bad: Callable[[InputError, str], None] | None = None,
              span: tuple[int, int, int] | None = None) -> tuple[str, Iterator[Row]]:
    """The raw rows of a JSONL, JSON-array, Parquet or Arrow file: ``(kind, rows)``. Checks first that the
    file exists, is a file and can be read; every problem is a located :class:`InputError` or a
    :class:`UserError`. ``on_bad`` receives bad JSONL lines instead of raising."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory; expected a JSONL, JSON, Parquet or Arrow file")
    try:
        kind = _kind(p)
    except OSError as e:
        raise UserError(f"{p}: cannot be read ({e.strerror or e})") from None
    if kind == "jsonl":
        return kind, _iter_jsonl(p, on_bad, span)
    return kind, {"array": _iter_json_array, "parquet": _iter_parquet, "arrow": _iter_arrow}[kind](p)


def row_error(path: Path, kind: str, line: int, item: int | None, field: str | None, message: str) -> InputError:
    return InputError(str(path), line, field, message, "row" if kind in ("parquet", "arrow") else "line", item=item)


# -- records -----------------------------------------------------------------------------------
def read_records(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    on_error: str = "raise",
    on_reject: RejectFn | None = None,
    limit: int | None = None,
    require_answer: bool = True,
    span: tuple[int, int, int] | None = None,
    split: str | None = None,
    mapping: RowMap | None = None,
    detected: bool = False,
    check: Callable[[Record], None] | None = None,
) -> Iterator[Record]:
    """Stream Records from a file, a ``save_to_disk`` folder or a cached dataset id
    (:func:`datagen.core.hfdata.input_files`; ``split``: a DatasetDict's) in any supported format.

    ``fmt`` None detects the format from the first row. ``on_error="skip"`` sends each bad row to
    ``on_reject`` as a :class:`Rejection` (stage "read") instead of raising. ``limit`` stops after
    that many good records. ``span`` ``(start, end, first line)`` reads only those bytes of a
    JSONL file, numbering its lines from ``first line`` (one shard of a parallel read).
    ``mapping`` (``--map``, ``--roles``) renames each row's fields and roles before it is read.
    ``detected``: ``fmt`` was detected by the caller (from the file's first row), not given.
    ``check`` may refuse a record (a :class:`FieldError`) as a bad row: what the output format
    cannot hold, located like any other input error.
    """
    if fmt is not None and fmt not in INPUT_FORMATS:
        raise UserError(f"unknown format {fmt!r}; expected one of {', '.join(INPUT_FORMATS)}")
    skip = on_error == "skip"
    if skip and on_reject is None:
        raise ValueError("on_error='skip' needs on_reject")
    given = fmt is not None and not detected

    n_bad = 0

    def bad(err: InputError, raw: Any) -> None:
        nonlocal n_bad
        assert on_reject is not None
        n_bad += 1
        on_reject(
            Rejection(
                stage="read",
                reason=getattr(err, "code", "invalid_field"),
                evidence={"error": err.message, **({"field": err.field} if err.field else {})},
                raw=raw,
                location=err.location,
            )
        )

    seen_any = False
    good = 0
    for p, kind, lineno, item, raw in _rows(input_files(str(path), split), bad if skip else None, span):
        seen_any = True
        if limit is not None and good >= limit:
            return
        obj = raw
        try:
            obj = mapping.apply(raw) if mapping else raw
            if fmt is None:
                fmt = detect(obj)
                if fmt is None:
                    err = _unknown_format(p, kind, lineno, item, obj, skip)
                    if not skip:
                        raise err
                    bad(err, raw)
                    continue
            rec = read_row(obj, fmt, require_answer=require_answer)
            if check is not None:
                check(rec)
        except FieldError as fe:
            if fmt is not None:
                fe = explain(fe, obj, fmt, detected=not given, require_answer=require_answer)
            err = row_error(p, kind, lineno, item, fe.field, fe.message)
            err.code = fe.code  # type: ignore[attr-defined]
            if not skip:
                raise err from None
            bad(err, raw)
            continue
        rec.meta.setdefault("origin", f"{p.name}:{lineno}")
        good += 1
        yield rec
    if not seen_any and not n_bad and span is None:
        raise InputError(str(path), 1, None, "file is empty: no records")


def _rows(files: list[Path], on_bad: Callable[[InputError, str], None] | None, span: tuple[int, int, int] | None) -> Iterator[tuple[Path, str, int, int | None, Any]]:
    """``(file, kind, line or row, item, value)`` of every row of ``files``, in order."""
    for f in files:
        kind, rows = open_rows(f, on_bad, span)
        for lineno, item, obj in rows:
            yield f, kind, lineno, item, obj


def _unknown_format(p: Path, kind: str, lineno: int, item: int | None, obj: Any, skip: bool) -> InputError:
    hint = misspelt_field(obj)
    if hint and not skip:
        return row_error(p, kind, lineno, item, hint[0], f"unknown field (did you mean '{hint[1]}'?); --map {hint[0]}={hint[1]} renames it")
    keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
    err = row_error(p, kind, lineno, item, None, f"cannot tell the format from the fields ({keys}); expected {describe()}; "
                    "pass --format, or rename fields with --map src=dst")
    err.code = "unknown_format"  # type: ignore[attr-defined]
    return err


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Read a JSONL file this tool wrote (no format conversion)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def file_format(path: str | os.PathLike[str], mapping: RowMap | None = None) -> tuple[str, str | None]:
    """``(kind, format)`` of a file from its first row (format None when it cannot be told, or
    there is no good first row: a serial read then says why)."""
    try:
        kind, rows = open_rows(path, lambda err, raw: None)
        for _, _, obj in rows:
            return kind, detect(mapping.apply(obj) if mapping else obj)
    except (InputError, UserError, FieldError):
        pass
    return "unknown", None


def read_shard(path: str, span: tuple[int, int, int], fmt: str, on_error: str, require_answer: bool, out: str,
               mapping: RowMap | None = None, detected: bool = False) -> tuple[int, list[Rejection]]:
    """The records of one byte range of a JSONL file into ``out`` (record JSONL): how many, and
    the bad rows skipped (``on_error="skip"``); a bad row raises as in :func:`read_records`."""
    rejects: list[Rejection] = []
    n = 0
    # a plain file, not an atomic one: it is the parent's scratch, removed by it even when this
    # worker is stopped mid-write (an atomic temp file would be left behind)
    with open(out, "w", encoding="utf-8") as f:
        for rec in read_records(path, fmt, on_error=on_error, on_reject=rejects.append, require_answer=require_answer, span=span,
                                mapping=mapping, detected=detected):
            f.write(rec.to_json() + "\n")
            n += 1
    return n, rejects
