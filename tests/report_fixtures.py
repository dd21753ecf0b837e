"""Small run directories for the report tests, written with datagen.core.rundir as the commands do.

``pipeline(tmp)`` writes three runs (``evolve`` -> ``filter`` -> ``select``) whose numbers are
known: lineage across runs (a seed's evolution, evolved again), every kind of duplicate (exact,
MinHash, semantic, too similar), heuristic and quality rejections, score thresholds, and a record
whose text tries to break out of the page (``<script>alert(1)</script>``, ``</script>``,
U+2028).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datagen.core.record import Record, Rejection
from datagen.core.rundir import RunDir
from datagen.core.stats import Stats

XSS = "Explain this HTML: <script>alert(1)</script> and </script><img src=x onerror=alert(2)> \u2028 & done"
NEEDLE = "zanzibar lighthouse keeper"  # a word only one record contains: the search test looks for it


def rec(user: str, answer: str | None, **kw: Any) -> Record:
    return Record.from_turns(user, answer, **kw)


def _stats(stages: list[tuple[str, int, int, dict[str, int]]]) -> Stats:
    st = Stats()
    for name, n_in, n_out, reasons in stages:
        st.seen(name, n_in)
        st.kept(name, n_out)
        for reason, c in reasons.items():
            st.rejected(name, reason, c)
    return st


def evolve_run(root: Path) -> tuple[Path, dict[str, Record]]:
    """Round 1 evolves seed S into A; round 2 evolves A into B; one evolution fails."""
    seed = rec("Write a poem about the sea.", "The sea is wide.", source="seed")
    a = rec("Write a sonnet about the sea at night.", "Night falls on the sea...", source="evol:deepening", parent_id=seed.id,
            meta={"operation": "deepening", "round": 1, "root_id": seed.id})
    b = rec("Write a sonnet about the sea at night, in iambic pentameter, mentioning a lighthouse.", f"A sonnet: the {NEEDLE} watches the waves.",
            source="evol:concretizing", parent_id=a.id, meta={"operation": "concretizing", "round": 2, "root_id": seed.id})
    bad = rec("#The Given Prompt#: Write a poem", None, source="evol:breadth", parent_id=seed.id,
              meta={"operation": "breadth", "round": 1, "root_id": seed.id})
    run = RunDir(root / "evolve", "evolve", {"fixture": 1})
    rej = Rejection(stage="evolve", reason="copied_scaffolding", evidence={"operation": "breadth", "matched": "#The Given Prompt#"}, record=bad)
    st = _stats([("read", 1, 1, {}), ("evolve", 3, 2, {"copied_scaffolding": 1})])
    run.write_part(0, [a, b], [rej], st)
    run.finalize({"rounds": 2}, n_parts=1)
    return run.path, {"seed": seed, "a": a, "b": b, "bad": bad}


def filter_run(root: Path, evolved: dict[str, Record]) -> tuple[Path, dict[str, Record]]:
    """Survivors with scores; rejections: heuristics, exact, minhash (2 duplicates of one survivor),
    semantic, quality."""
    base = "Sort the list alphabetically and remove duplicates: pear, apple, mango, banana, apple, cherry"
    answer = "apple, banana, cherry, mango, pear"
    surv = rec(base, answer, source="distill:m", scores={"judge": 4.5, "ifd": 0.4, "complexity": 2.0})
    near1 = rec(base + " please", answer, source="distill:m", scores={"judge": 3.0})
    near2 = rec(base + " now", answer + " (sorted)", source="distill:m", scores={"judge": 2.0})
    exact = rec(base.upper(), answer, source="distill:m")
    xss = rec(XSS, "It is a script tag: <script>alert(1)</script>", source="distill:m", scores={"judge": 3.5, "ifd": 0.9, "complexity": 3.0})
    sem_surv = rec("What is the capital of France?", "Paris.", source="distill:m", scores={"judge": 4.0, "ifd": 0.2, "complexity": 1.0})
    sem_dup = rec("Which city is the capital of France?", "Paris.", source="distill:m")
    low = rec("Say hi.", "hi", source="distill:m", scores={"judge": 1.0, "ifd": 1.4, "complexity": 1.0})
    short = rec("Explain gravity.", "x", source="distill:m")
    # the evolved records, scored by the quality stage (same conversation, same id)
    a = evolved["a"].model_copy(update={"scores": {"judge": 3.8, "ifd": 0.5, "complexity": 4.0}})
    b = evolved["b"].model_copy(update={"scores": {"judge": 4.2, "ifd": 0.6, "complexity": 5.0}})

    run = RunDir(root / "filter", "filter", {"fixture": 2})
    run.write_read_part(11, [])
    stages = [
        ("heuristics", [], [Rejection(stage="heuristics", reason="response_too_short", evidence={"words": 1, "min": 2}, record=short)]),
        ("exact", [], [Rejection(stage="exact", reason="exact_duplicate", evidence={"duplicate_of": surv.id, "group_size": 2}, record=exact)]),
        ("minhash", [], [
            Rejection(stage="minhash", reason="near_duplicate", evidence={"duplicate_of": surv.id, "matched_with": surv.id, "jaccard": 0.86, "threshold": 0.7}, record=near1),
            Rejection(stage="minhash", reason="near_duplicate", evidence={"duplicate_of": surv.id, "matched_with": near1.id, "jaccard": 0.75, "threshold": 0.7}, record=near2),
        ]),
        ("semantic", [], [Rejection(stage="semantic", reason="semantic_duplicate", evidence={"duplicate_of": sem_surv.id, "cosine": 0.97, "threshold": 0.95}, record=sem_dup)]),
        ("quality", [surv, a, b, xss, sem_surv], [Rejection(stage="quality", reason="ifd_above_max", evidence={"ifd": 1.4, "max": 1.0}, record=low)]),
    ]
    n_in = 11
    for k, (name, _, rejects) in enumerate(stages, start=1):
        n_out = n_in - len(rejects)
        st = _stats([(name, n_in, n_out, {r.reason: sum(1 for x in rejects if x.reason == r.reason) for r in rejects})])
        survivors = stages[-1][1] if k == len(stages) else []
        run.write_part(k, survivors, rejects, st)
        n_in = n_out
    describe = [
        {"name": "heuristics"}, {"name": "exact"},
        {"name": "minhash", "num_perm": 128, "bands": 18, "rows": 7, "threshold": 0.7},
        {"name": "semantic", "threshold": 0.95, "model": "all-MiniLM-L6-v2"},
        {"name": "quality", "scorers": ["judge", "ifd", "complexity"], "min_judge": None, "max_ifd": 1.0, "min_complexity": None},
    ]
    run.finalize({"stages": describe}, n_parts=len(stages) + 1, records_from=len(stages))
    named = {"surv": surv, "near1": near1, "near2": near2, "exact": exact, "a": a, "b": b, "xss": xss,
             "sem_surv": sem_surv, "sem_dup": sem_dup, "low": low, "short": short}
    return run.path, named


def select_run(root: Path, f: dict[str, Record]) -> Path:
    """Keeps b, surv, sem_surv; a is too similar to b; xss is below --min judge=3.6."""
    run = RunDir(root / "select", "select", {"fixture": 3})
    run.write_read_part(5, [])
    kept = [f["b"], f["surv"], f["sem_surv"]]
    rejects = [
        Rejection(stage="select.screen", reason="below_min_judge", evidence={"value": 3.5, "min": 3.6}, record=f["xss"]),
        Rejection(stage="select", reason="too_similar", evidence={"most_similar_id": f["b"].id, "cosine": 0.93, "tau": 0.9}, record=f["a"]),
    ]
    st = _stats([("select.screen", 5, 4, {"below_min_judge": 1}), ("select", 4, 3, {"too_similar": 1})])
    run.write_part(1, kept, rejects, st)
    run.finalize({"thresholds": [{"score": "judge", "min": 3.6}], "embeddings": {"model": "all-MiniLM-L6-v2", "cache_dir": str(root / "cache")}}, n_parts=2)
    return run.path


def pipeline(root: Path) -> tuple[list[Path], dict[str, Record]]:
    """The three runs in pipeline order, and the named records."""
    ev_path, ev = evolve_run(root)
    f_path, f = filter_run(root, ev)
    s_path = select_run(root, f)
    return [ev_path, f_path, s_path], {**{f"evolve_{k}": v for k, v in ev.items()}, **f}
