"""Hugging Face datasets on disk, as the files to read.

An ``--input`` names a file (read as it is), a folder written by ``datasets``' ``save_to_disk``
(a Dataset: its Arrow files; a DatasetDict: those of the split ``--split`` picks), or a dataset id,
``hf:ORG/NAME`` (or a bare ``ORG/NAME`` that is no path), found in the local caches, offline:
first the ``datasets`` cache (the Arrow files ``load_dataset`` prepared), then the hub cache (the
files ``huggingface-cli download`` or ``load_dataset`` fetched: Parquet, JSONL, JSON, Arrow). A
dataset in neither is an error that says where it looked. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from datagen.core.errors import UserError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")
_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
# the words datasets reads a split from in a file's path (its default data-file patterns)
SPLIT_WORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev"),
               "test": ("test", "testing", "eval", "evaluation")}


def input_files(spec: str, split: str | None = None) -> list[Path]:
    """The files ``spec`` names, in reading order (see the module's doc)."""
    repo_id = hub_id(spec)
    if repo_id is not None:
        return cached_files(repo_id, split, bare=not spec.startswith("hf:"))
    p = Path(spec)
    if p.is_dir():
        return folder_files(p, split)
    if split is not None and p.is_file():
        raise UserError(f"--split {split}: {p} is a file; --split picks a split of a DatasetDict folder or of a cached dataset")
    return [p]


def input_digest(spec: str, split: str | None = None) -> str:
    """sha256 of what ``spec`` names: a file's bytes; over the names and digests of its files for
    a folder or a dataset id (an edited input is a different run)."""
    from datagen.core.rundir import file_digest  # rundir reads through io, which reads through this module

    files = input_files(spec, split)
    if files == [Path(spec)]:
        return file_digest(spec)
    return hashlib.sha256("".join(f"{f.name}:{file_digest(f)}\n" for f in files).encode()).hexdigest()


def hub_id(spec: str) -> str | None:
    """The dataset id of ``hf:ORG/NAME``, or of a bare ``ORG/NAME`` that is no path."""
    if spec.startswith("hf:"):
        if not _ID.match(spec[3:]):
            raise UserError(f"{spec}: expected hf:ORG/NAME (a dataset id on the Hugging Face hub)")
        return spec[3:]
    if "/" in spec and _ID.match(spec) and not Path(spec).exists() and not spec.lower().endswith(FILE_SUFFIXES):
        return spec
    return None


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable datasets metadata file ({e})") from None


def folder_files(path: Path, split: str | None) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` folder, in order."""
    if (path / "dataset_dict.json").is_file():
        splits = list(_json(path / "dataset_dict.json").get("splits") or [])
        return folder_files(path / _pick(splits, split, f"{path} (a DatasetDict)"), None)
    if (path / "state.json").is_file():
        state = _json(path / "state.json")
        if split is not None and state.get("_split") not in (None, split):
            raise UserError(f"{path}: a single Dataset (split {state['_split']!r}), not a DatasetDict; drop --split {split}")
        try:
            return [path / f["filename"] for f in state["_data_files"]]
        except (KeyError, TypeError):
            raise UserError(f"{path / 'state.json'}: no list of data files (_data_files); not a folder save_to_disk wrote") from None
    raise UserError(f"{path}: is a directory, but not a dataset saved by save_to_disk (no dataset_dict.json or state.json); "
                    "expected a JSONL, JSON, Parquet or Arrow file, such a folder, or hf:ORG/NAME")


def _pick(splits: list[str], split: str | None, what: str) -> str:
    if split is None:
        if len(splits) == 1:
            return splits[0]
        raise UserError(f"{what} has the splits {', '.join(splits)}; pick one with --split")
    if split not in splits:
        raise UserError(f"{what} has no split {split!r}; its splits: {', '.join(splits)}")
    return split


# -- the local caches --------------------------------------------------------------------------
def _hf_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"))


def datasets_cache() -> Path:
    return Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets")


def hub_cache() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or _hf_home() / "hub")


def cached_files(repo_id: str, split: str | None, bare: bool = False) -> list[Path]:
    """The files of one split of ``repo_id`` in the datasets cache, else in the hub cache
    (``bare``: the id was given without ``hf:``, so it may have been meant as a path)."""
    for where, found in ((datasets_cache(), _prepared(repo_id)), (hub_cache(), _downloaded(repo_id))):
        if found:
            return sorted(found[_pick(sorted(found), split, f"{repo_id} (in {where})")])
    what = f"{repo_id}: no such file or folder, and as a dataset id it is" if bare else f"hf:{repo_id}:"
    raise UserError(f"{what} not in the local Hugging Face cache (looked in {datasets_cache()} and {hub_cache()}; "
                    f"set HF_HOME, HF_DATASETS_CACHE or HF_HUB_CACHE if it lives elsewhere); datasets are read offline, never "
                    f"downloaded: fetch it first (huggingface-cli download --repo-type dataset {repo_id}), or pass a file or folder")


def _prepared(repo_id: str) -> dict[str, list[Path]]:
    """``{split: files}`` of ``repo_id`` as ``load_dataset`` prepared it:
    ``ORG___NAME/CONFIG/VERSION/HASH/NAME-SPLIT[-00000-of-00002].arrow``, the newest HASH."""
    base = datasets_cache() / repo_id.replace("/", "___")
    if not base.is_dir():
        return {}
    configs = sorted(d.name for d in base.iterdir() if d.is_dir())
    if len(configs) > 1 and "default" in configs:
        configs = ["default"]
    if len(configs) > 1:
        raise UserError(f"hf:{repo_id} (in {base}) has the configurations {', '.join(configs)}; pass the .arrow file "
                        "of the one you want as --input")
    # VERSION/HASH folders that hold Arrow files; HASH.incomplete is one load_dataset did not finish
    prepared = [d for config in configs for d in (base / config).glob("*/*")
                if d.is_dir() and not d.name.endswith(".incomplete") and any(d.glob("*.arrow"))]
    if not prepared:
        return {}
    newest = max(prepared, key=lambda d: d.stat().st_mtime)
    out: dict[str, list[Path]] = {}
    for f in newest.glob("*.arrow"):
        stem = _SHARD.sub("", f.name[: -len(".arrow")])
        out.setdefault(stem.rpartition("-")[2], []).append(f)
    return out


def _downloaded(repo_id: str) -> dict[str, list[Path]]:
    """``{split: files}`` of the snapshot of ``repo_id`` in the hub cache (``refs/main``'s, else
    the newest), the split read from each file's path as ``datasets`` reads it."""
    repo = hub_cache() / ("datasets--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    snap = repo / "snapshots" / ref.read_text().strip() if ref.is_file() else None
    if snap is None or not snap.is_dir():
        snaps = [d for d in (repo / "snapshots").glob("*") if d.is_dir()]
        if not snaps:
            return {}
        snap = max(snaps, key=lambda d: d.stat().st_mtime)
    out: dict[str, list[Path]] = {}
    for f in snap.rglob("*"):
        rel = f.relative_to(snap).as_posix()
        if f.suffix.lower() in FILE_SUFFIXES and not rel.startswith(".") and "dataset_info" not in f.name and f.is_file():
            out.setdefault(split_of(rel), []).append(f)
    return out


def split_of(rel: str) -> str:
    """The split of a data file from its path in a dataset repository: ``data/train_sft-00000-of-00003.parquet``
    -> ``train_sft``; ``valid.jsonl`` -> ``validation``; no split word -> ``train``."""
    name = rel.rsplit("/", 1)[-1]
    m = re.match(r"^(\w+)-\d{5}-of-\d{5}", name)
    if m:
        return m.group(1)
    words = set(re.split(r"[/\-_. ]", rel.lower()))
    return next((s for s, ws in SPLIT_WORDS.items() if words & set(ws)), "train")
