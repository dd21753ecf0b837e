"""The package's import graph, read from the source (every import, a function-local one too).

``python -m tests.import_graph`` prints the edges between units (a subpackage of ``datagen``, a
top-level module of it, or ``train``) and every cycle among them; ``tests/test_import_graph.py``
holds the rules."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datagen", "train")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the package modules ``path`` imports (``from x import y`` gives ``x.y``
    when that is a module, else ``x``)."""
    name = module_name(path)
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def unit(module: str) -> str:
    """``datagen.curate.dedup.minhash`` -> ``datagen.curate``; ``datagen.cli`` -> ``datagen.cli``;
    ``train.run`` -> ``train``."""
    parts = module.split(".")
    if parts[0] == "train":
        return "train"
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def graph() -> dict[str, set[str]]:
    """Unit -> the units it imports (package ``__init__`` files included, self-edges left out)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    known = set(modules)
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        src = unit(name)
        edges.setdefault(src, set())
        for target in imports(path):
            while target and target not in known:  # ``from x import name``: the module is x
                target = target.rpartition(".")[0]
            if target and unit(target) != src and unit(target) not in ("datagen",):
                edges[src].add(unit(target))
    return dict(edges)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    edges = graph()
    for src in sorted(edges):
        print(f"{src} -> {', '.join(sorted(edges[src])) or '-'}")
    found = cycles(edges)
    print(f"\n{len(found)} cycle(s)" + "".join(f"\n  {' <-> '.join(c)}" for c in found))


if __name__ == "__main__":
    main()
