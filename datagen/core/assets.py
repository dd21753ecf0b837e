"""Where the bundled prompts/ and seeds/ live: beside the package in a source checkout or editable
install, inside it (``datagen/_assets``) in a built wheel."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]  # the datagen package


@lru_cache(maxsize=None)
def asset_dir(name: str) -> Path:
    for candidate in (_PKG / "_assets" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled '{name}/' folder not found next to {_PKG}; the installation is incomplete")


def prompts_dir() -> Path:
    return asset_dir("prompts")


def seeds_dir() -> Path:
    return asset_dir("seeds")


def resolve_seed_file(path: str) -> Path:
    """A user path if it exists, else a file of that name among the bundled seeds
    (so ``--seeds seeds/175.jsonl`` works from any directory)."""
    p = Path(path)
    if p.exists():
        return p
    bundled = seeds_dir() / p.name
    return bundled if bundled.exists() else p
