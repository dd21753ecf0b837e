"""Reading and writing records: JSONL, JSON arrays and Parquet in; JSONL, JSON and Parquet out.

Readers stream, locate every problem precisely (file, line or row, field) and either raise an
:class:`InputError` or, with ``on_error="skip"``, hand the bad row to a rejection callback and
carry on. Writers are atomic: they write a temporary file beside the target and rename it into
place, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from .errors import FieldError, InputError, UserError
from .formats import FORMATS, describe_formats, detect_format, misspelt_field, to_record, to_row
from .record import Record, Rejection

RejectFn = Callable[[Rejection], None]


# -- raw rows ----------------------------------------------------------------------------------
def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _iter_jsonl(path: Path, on_bad: Callable[[InputError, str], None] | None) -> Iterator[tuple[int, Any]]:
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
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                err = InputError(str(path), lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")
                err.code = "malformed_json"  # type: ignore[attr-defined]
                if on_bad is None:
                    raise err from None
                on_bad(err, line.rstrip("\n"))
                continue
            yield lineno, obj


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(str(path), line, None, "bytes are not valid UTF-8") from None
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    item = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise InputError(str(path), _line_of(text, pos), None, "malformed JSON: array is not closed with ']'")
        if text[pos] == "]":
            return
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InputError(str(path), _line_of(text, e.pos), None, f"malformed JSON: {e.msg}") from None
        item += 1
        yield _line_of(text, pos), obj
        pos = end


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise InputError(str(path), None, None, f"not a readable Parquet file: {e}") from None
    row = 0
    for batch in pf.iter_batches(batch_size=4096):
        for obj in batch.to_pylist():
            row += 1
            for k in ("scores", "flags", "meta"):  # record format stores these as JSON strings
                if isinstance(obj.get(k), str):
                    obj[k] = json.loads(obj[k])
            yield row, {k: v for k, v in obj.items() if v is not None}


def _kind(path: Path) -> str:
    if path.suffix.lower() == ".parquet":
        return "parquet"
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    return "array" if head.startswith(b"[") else "jsonl"


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
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a directory; expected a JSONL, JSON or Parquet file")
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    skip = on_error == "skip"
    if skip and on_reject is None:
        raise ValueError("on_error='skip' needs on_reject")
    kind = _kind(p)
    unit = {"jsonl": "line", "array": "item", "parquet": "row"}[kind]

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

    if kind == "jsonl":
        rows: Iterable[tuple[int, Any]] = _iter_jsonl(p, bad if skip else None)
    elif kind == "array":
        rows = _iter_json_array(p)
    else:
        rows = _iter_parquet(p)

    seen_any = False
    good = 0
    for lineno, obj in rows:
        seen_any = True
        if limit is not None and good >= limit:
            return
        if fmt is None:
            fmt_here = detect_format(obj)
            if fmt_here is None:
                hint = misspelt_field(obj)
                if hint and not skip:
                    raise InputError(str(p), lineno, hint[0], f"unknown field (did you mean '{hint[1]}'?)", unit)
                keys = ", ".join(sorted(obj)) if isinstance(obj, dict) else type(obj).__name__
                err = InputError(str(p), lineno, None, f"cannot tell the format from the fields ({keys}); expected {describe_formats()}; or pass --format", unit)
                err.code = "unknown_format"  # type: ignore[attr-defined]
                if not skip:
                    raise err
                bad(err, obj)
                continue
            fmt = fmt_here
        try:
            rec = to_record(obj, fmt, require_answer=require_answer)
        except FieldError as fe:
            err = InputError(str(p), lineno, fe.field, fe.message, unit)
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


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The detected format of the first parseable row, or None."""
    p = Path(path)
    kind = _kind(p)
    rows = _iter_jsonl(p, lambda e, r: None) if kind == "jsonl" else (_iter_json_array(p) if kind == "array" else _iter_parquet(p))
    for _, obj in rows:
        return detect_format(obj)
    return None


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
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=False)
        f.write("\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(row.to_json() if hasattr(row, "to_json") else json.dumps(row, ensure_ascii=False))
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
            json.dump(rows, f, ensure_ascii=False, indent=1)
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
                row[k] = json.dumps(row[k], ensure_ascii=False)
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
