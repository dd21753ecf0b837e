"""Prompt templates: every prompt the product sends is a jinja2 file under ``prompts/``.

Templates render with ``StrictUndefined``, so a missing variable is an error, not an empty string.
Each rendered prompt carries its template name and a hash of the template source, which go into
the record's ``meta`` and the run manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from datagen.core.assets import prompts_dir


@dataclass(frozen=True)
class Template:
    name: str  # e.g. "distill/system"
    source: str
    sha: str  # first 12 hex of sha256(source)

    def render(self, **variables: Any) -> str:
        return _compile(self.source).render(**variables).strip()


@lru_cache(maxsize=None)
def _compile(source: str):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return env.from_string(source)


def load(name: str, root: str | Path | None = None) -> Template:
    """Load ``prompts/<name>.j2`` (or a file path ending in .j2)."""
    p = Path(name)
    if p.suffix == ".j2" and p.exists():
        path = p
        name = p.stem
    else:
        path = Path(root or prompts_dir()) / f"{name}.j2"
    if not path.exists():
        raise FileNotFoundError(f"prompt template not found: {path}")
    source = path.read_text(encoding="utf-8")
    return Template(name=name, source=source, sha=hashlib.sha256(source.encode()).hexdigest()[:12])


def available(root: str | Path | None = None) -> list[str]:
    base = Path(root or prompts_dir())
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.j2"))
