"""Reading and writing records: JSONL, JSON arrays and Parquet in; JSONL, JSON and Parquet out.

Readers stream, locate every problem precisely (file, line or row, field) and either raise an
:class:`InputError` or, with ``on_error="skip"``, hand the bad row to a rejection callback and
carry on. Writers are atomic: they write a temporary file beside the target and rename it into
place, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from datagen.core.errors import FieldError, InputError, UserError, field_path, printable
from datagen.core.formats import FORMATS, describe_formats, detect_format, misspelt_field, to_record, to_row
from datagen.core.record import Record, Rejection, dumps_strict

RejectFn = Callable[[Rejection], None]


# -- raw rows ----------------------------------------------------------------------------------
# Input is strict JSON (RFC 8259): NaN/Infinity, numbers that overflow to infinity, duplicate keys
# (which JSON leaves undefined: most parsers silently keep the last value, losing the first) and
# lone UTF-16 surrogates (not Unicode text; they cannot be written back as UTF-8) are refused with
# the file, line and field, like any other bad field. Nesting is limited to MAX_DEPTH levels.
MAX_DEPTH = 64


class _BadValue(ValueError):
    """A JSON value this tool refuses (see above), raised by the decoder's hooks."""

    def __init__(self, field: str | None, message: str, code: str) -> None:
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _BadValue(dup, "appears twice in one object (duplicate JSON key); keep one", "duplicate_key")
    return obj


def _no_constant(name: str) -> Any:
    raise _BadValue(None, f"non-standard JSON value {name} (JSON has no NaN or Infinity; use null)", "non_finite_number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise _BadValue(None, f"number {text[:30]} is too large for a 64-bit float", "non_finite_number")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite_float)


def _path(parts: list[Any]) -> str:
    return printable(field_path(parts))


def check_value(obj: Any) -> _BadValue | None:
    """The first problem in a decoded row: nesting deeper than MAX_DEPTH, a lone surrogate in a
    string or a key, a non-finite float (Parquet can hold them). Iterative, so any depth is safe."""
    stack: list[tuple[Any, list[Any]]] = [(obj, [])]
    while stack:
        value, where = stack.pop()
        if len(where) > MAX_DEPTH:
            return _BadValue(_path(where[:3]) or None, f"nested more than {MAX_DEPTH} levels deep", "too_deep")
        if isinstance(value, str):
            if _has_surrogate(value):
                return _BadValue(_path(where) or None, "holds a lone UTF-16 surrogate (\\ud800-\\udfff escape without its pair): not valid Unicode text", "invalid_unicode")
        elif isinstance(value, float):
            if not math.isfinite(value):
                return _BadValue(_path(where) or None, f"non-finite number {value} (JSON has no NaN or Infinity)", "non_finite_number")
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and _has_surrogate(k):
                    return _BadValue(_path(where + [k]), "key holds a lone UTF-16 surrogate: not valid Unicode text", "invalid_unicode")
                stack.append((v, where + [k]))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, where + [i]) for i, v in enumerate(value))
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decode_line(line: str) -> Any:
    """One strict JSON value; raises json.JSONDecodeError or _BadValue."""
    try:
        obj = _DECODER.decode(line)
    except RecursionError:
        raise _BadValue(None, f"nested too deeply (more than {MAX_DEPTH} levels)", "too_deep") from None
    # the cheap tests first: a row can only be too deep with many brackets, and only hold a lone
    # surrogate if it spells one as an escape
    if line.count("[") + line.count("{") > MAX_DEPTH or "\\ud" in line or "\\uD" in line:
        bad = check_value(obj)
        if bad is not None:
            raise bad
    return obj


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


Row = tuple[int, "int | None", Any]  # (line or row number, array item number or None, value)


def _iter_jsonl(path: Path, on_bad: Callable[[InputError, str], None] | None) -> Iterator[Row]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
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
                obj = _decode_line(line)
            except json.JSONDecodeError as e:
                err = InputError(str(path), lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")
                err.code = "malformed_json"  # type: ignore[attr-defined]
            except _BadValue as e:
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
            obj, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InputError(str(path), _line_of(text, e.pos), None, f"malformed JSON: {e.msg}", item=item) from None
        except RecursionError:
            raise InputError(str(path), line, None, f"malformed JSON: nested too deeply (more than {MAX_DEPTH} levels)", item=item) from None
        except _BadValue as e:
            raise InputError(str(path), line, e.field, e.message, item=item) from None
        bad = check_value(obj)
        if bad is not None:
            raise InputError(str(path), line, bad.field, bad.message, item=item)
        yield line, item, obj
        pos = end


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InputError(str(path), None, None, f"not a readable Parquet file: {e}") from None
    row = 0
    batches = pf.iter_batches(batch_size=4096)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as e:  # a corrupt page behind an intact footer
            raise InputError(str(path), None, None, f"corrupt Parquet data after row {row}: {str(e)[:200]}") from None
        if batch is None:
            return
        for obj in batch.to_pylist():
            row += 1
            for k in ("scores", "flags", "meta"):  # record format stores these as JSON strings
                if isinstance(obj.get(k), str):
                    try:
                        obj[k] = _decode_line(obj[k])
                    except (json.JSONDecodeError, _BadValue) as e:
                        detail = e.msg if isinstance(e, json.JSONDecodeError) else e.message
                        raise InputError(str(path), row, k, f"holds invalid JSON text: {detail}", "row") from None
            bad = check_value(obj)
            if bad is not None:
                raise InputError(str(path), row, bad.field, bad.message, "row")
            yield row, None, {k: v for k, v in obj.items() if v is not None}


def _kind(path: Path) -> str:
    if path.suffix.lower() == ".parquet":
        return "parquet"
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    return "array" if head.startswith(b"[") else "jsonl"


def open_rows(path: str | os.PathLike[str], on_bad: Callable[[InputError, str], None] | None = None) -> tuple[str, Iterator[Row]]:
    """The raw rows of a JSONL, JSON-array or Parquet file: ``(kind, rows)``. Checks first that the
    file exists, is a file and can be read; every problem is a located :class:`InputError` or a
    :class:`UserError`. ``on_bad`` receives bad JSONL lines instead of raising."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory; expected a JSONL, JSON or Parquet file")
    try:
        kind = _kind(p)
    except OSError as e:
        raise UserError(f"{p}: cannot be read ({e.strerror or e})") from None
    if kind == "jsonl":
        return kind, _iter_jsonl(p, on_bad)
    return kind, _iter_json_array(p) if kind == "array" else _iter_parquet(p)


def row_error(path: Path, kind: str, line: int, item: int | None, field: str | None, message: str) -> InputError:
    return InputError(str(path), line, field, message, "row" if kind == "parquet" else "line", item=item)


# -- records -----------------------------------------------------------------------------------
def read_records(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    on_error: str = "raise",
    on_reject: RejectFn | None = None,
    limit: int | None = None,
    require_answer: bool = True,
) -> Iterator[Record]:
    """Stream Records from a file in any supported format.

    ``fmt`` None detects the format from the first row. ``on_error="skip"`` sends each bad row to
    ``on_reject`` as a :class:`Rejection` (stage "read") instead of raising. ``limit`` stops after
    that many good records.
    """
    p = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    skip = on_error == "skip"
    if skip and on_reject is None:
        raise ValueError("on_error='skip' needs on_reject")

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

    kind, rows = open_rows(p, bad if skip else None)
    seen_any = False
    good = 0
    for lineno, item, obj in rows:
        seen_any = True
        if limit is not None and good >= limit:
            return
        if fmt is None:
            fmt_here = detect_format(obj)
            if fmt_here is None:
                hint = misspelt_field(obj)
                if hint and not skip:
                    raise row_error(p, kind, lineno, item, hint[0], f"unknown field (did you mean '{hint[1]}'?)")
                keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
                err = row_error(p, kind, lineno, item, None, f"cannot tell the format from the fields ({keys}); expected {describe_formats()}; or pass --format")
                err.code = "unknown_format"  # type: ignore[attr-defined]
                if not skip:
                    raise err
                bad(err, obj)
                continue
            fmt = fmt_here
        try:
            rec = to_record(obj, fmt, require_answer=require_answer)
        except FieldError as fe:
            err = row_error(p, kind, lineno, item, fe.field, fe.message)
            err.code = fe.code  # type: ignore[attr-defined]
            if not skip:
                raise err from None
            bad(err, obj)
            continue
        rec.meta.setdefault("origin", f"{p.name}:{lineno}")
        good += 1
        yield rec
    if not seen_any and not n_bad:
        raise InputError(str(p), 1, None, "file is empty: no records")


# -- atomic writing ----------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success fsync and rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_umask() -> int:
    # read once, at import: os.umask can only be read by setting it, which is not thread-safe
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(path) as f:
        f.write(dumps_strict(obj, indent=2))
        f.write("\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(row.to_json() if hasattr(row, "to_json") else dumps_strict(row))
            f.write("\n")
            n += 1
    return n


def output_kind(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    return {".parquet": "parquet", ".json": "json"}.get(suffix, "jsonl")


def write_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    """Write plain dict rows as JSONL, a JSON array (.json) or Parquet (.parquet), atomically."""
    kind = output_kind(path)
    if kind == "jsonl":
        return write_jsonl(path, rows)
    rows = list(rows)
    if kind == "json":
        with atomic_open(path) as f:
            f.write(dumps_strict(rows, indent=1))
            f.write("\n")
        return len(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys: dict[str, None] = {}
    for r in rows:  # Arrow infers the schema from the first row only: give every row every column
        keys.update(dict.fromkeys(r))
    try:
        table = pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise UserError(f"{path}: these records cannot be stored as Parquet ({e}); write .jsonl instead") from None
    with atomic_open(path, "wb") as f:
        pq.write_table(table, f)
    return len(rows)


def record_rows(records: Iterable[Record], fmt: str, parquet: bool = False) -> Iterator[dict[str, Any]]:
    for rec in records:
        row = to_row(rec, fmt)
        if parquet and fmt == "record":
            # free-form dicts vary per record; Arrow needs one schema, so store them as JSON text
            for k in ("scores", "flags", "meta"):
                row[k] = dumps_strict(row[k])
        yield row


def write_records(path: str | os.PathLike[str], records: Iterable[Record], fmt: str = "record") -> int:
    return write_rows(path, record_rows(records, fmt, parquet=output_kind(path) == "parquet"))


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Read a JSONL file this tool wrote (no format conversion)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    pa_, pb = Path(a), Path(b)
    if pa_.exists() and pb.exists():
        return os.path.samefile(pa_, pb)
    return pa_.resolve() == pb.resolve()


def check_output(path: str | os.PathLike[str], what: str = "--out", *, directory: bool) -> Path:
    """Refuse, before any work, an output path that cannot be created: one under a regular file,
    a file path that is a directory, a directory path that is a file."""
    p = Path(path)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{what} {p}: cannot be created, because {parent} is a file, not a directory")
            break
    if directory and p.exists() and not p.is_dir():
        raise UserError(f"{what} {p}: exists and is not a directory")
    if not directory and p.is_dir():
        raise UserError(f"{what} {p}: is a directory; give a file path (.jsonl, .json or .parquet)")
    return p


def rejects_path(out: str | os.PathLike[str]) -> Path:
    """Where ``convert`` puts the rows it skipped: beside ``out``, its name with the last suffix
    replaced (``train.v2.parquet`` -> ``train.v2.rejected.jsonl``)."""
    p = Path(out)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(f"{stem}.rejected.jsonl")

