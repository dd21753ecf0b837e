"""Writing without losing anything: a file appears complete or not at all (temp file, fsync,
rename), with the permissions a plain open would give; records in any format; output paths
refused before any work when they cannot be written, or when they are the input. Reading is
:mod:`datagen.core.io`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from datagen.core.errors import UserError
from datagen.core.formats import to_row
from datagen.core.record import Record, dumps_strict


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


def concat_files(path: str | os.PathLike[str], parts: Iterable[str | os.PathLike[str]], remove: bool = False) -> None:
    """``parts`` joined in order into ``path``, atomically (``remove``: each part deleted once copied)."""
    import shutil

    with atomic_open(path, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            if remove:
                os.unlink(part)


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
