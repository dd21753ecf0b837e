"""datagen select: the selection rules against brute force, thresholds and reasons, the ledger,
re-selection without a model, determinism."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datagen.core.errors import UserError
from datagen.core.record import Record
from datagen.curate.select.algorithms import ScoreDef, Threshold, greedy_diverse, k_center, parse_assignments, screen, thresholds_from


# -- brute force references ----------------------------------------------------------------------
def brute_deita(E: np.ndarray, s: np.ndarray, budget: int, tau: float) -> list[int]:
    """Walk by score (ties: lowest index); keep i iff cos(i, j) <= tau for every kept j."""
    sel: list[int] = []
    for i in sorted(range(len(s)), key=lambda i: (-s[i], i)):
        if len(sel) == budget:
            break
        if all(float(np.dot(E[i], E[j])) <= tau for j in sel):
            sel.append(i)
    return sel


def brute_kcenter(E: np.ndarray, s: np.ndarray, budget: int, tau: float) -> list[int]:
    """Farthest point: start at the best score; add the point whose distance to its nearest
    selected point is largest (ties: better score, then lower index); stop at the budget or when
    that point is more similar than tau."""
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    sel = [order[0]]
    while len(sel) < budget:
        rest = [i for i in order if i not in sel]
        if not rest:
            break
        dist = {i: min(1.0 - float(np.dot(E[i], E[j])) for j in sel) for i in rest}
        best = max(rest, key=lambda i: dist[i])  # max() keeps the first maximum: score order
        if 1.0 - dist[best] > tau:
            break
        sel.append(best)
    return sel


def clustered(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    """Unit vectors around a few centres, so that near neighbours are common."""
    centres = rng.normal(size=(max(1, n // 6), d))
    x = centres[rng.integers(len(centres), size=n)] + rng.uniform(0.05, 0.6) * rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


CASES = [(seed, tau, budget) for seed in range(40) for tau in (0.3, 0.8, 0.95, 1.0) for budget in (1, 4, 50)]


@pytest.mark.parametrize("strategy", ["deita", "kcenter"])
def test_selection_matches_brute_force(strategy):
    fn, brute = (greedy_diverse, brute_deita) if strategy == "deita" else (k_center, brute_kcenter)
    for seed, tau, budget in CASES:
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 40))
        E = clustered(rng, n)
        s = rng.integers(1, 5, size=n).astype(float)  # many ties: exercises the lowest-index rule
        got = fn(E, s, budget, tau)
        want = brute(E, s, budget, tau)
        assert got.order == want, (strategy, seed, tau, budget)
        # every candidate is accounted for exactly once
        assert sorted(got.order + got.too_similar + got.over_budget) == list(range(n))
        # the evidence: each skipped record's nearest selected record and its cosine
        for i in got.too_similar + got.over_budget:
            sims = [float(E[i] @ E[j]) for j in got.order]
            assert got.nearest[i] in got.order
            assert math.isclose(got.max_sim[i], max(sims), abs_tol=1e-12)
        for i in got.too_similar:
            assert got.max_sim[i] > tau
        for k, (i, sim) in enumerate(zip(got.order, got.sim_at_pick)):
            prior = [float(E[i] @ E[j]) for j in got.order[:k]]
            assert (sim is None) == (not prior)
            if prior:
                assert math.isclose(sim, max(prior), abs_tol=1e-12) and (tau >= 1 or sim <= tau)


def test_hnsw_search_selects_as_the_exact_walk_and_the_same_on_every_run():
    """The graph search on blocks larger than one (3,000 candidates: three blocks of 1,024) finds
    the nearest selected record of every candidate here, so it selects exactly what the exact
    walk does; its reported cosines are exact products, and two runs give the same selection."""
    rng = np.random.default_rng(7)
    E = clustered(rng, 3000, d=16).astype(np.float32)
    s = rng.random(3000)
    want = greedy_diverse(E, s, budget=600, tau=0.8)
    got = greedy_diverse(E, s, budget=600, tau=0.8, search="hnsw")
    again = greedy_diverse(E, s, budget=600, tau=0.8, search="hnsw")
    assert got.order == want.order and got.too_similar == want.too_similar and got.over_budget == want.over_budget
    assert again.order == got.order and np.array_equal(again.max_sim, got.max_sim)
    assert np.allclose(got.max_sim, want.max_sim, atol=1e-5) and (got.nearest == want.nearest).mean() > 0.99
    assert all(got.max_sim[i] > 0.8 and got.nearest[i] in got.order for i in got.too_similar)  # evidence that shows the reason
    picked = E[got.order]
    sims = picked @ picked.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= 0.8 + 1e-6  # no two selected records above tau


def test_deita_walks_down_the_scores_and_skips_near_duplicates():
    E = np.array([[1.0, 0.0], [0.999, math.sqrt(1 - 0.999**2)], [0.0, 1.0], [0.6, 0.8]])
    s = np.array([5.0, 4.0, 3.0, 2.0])
    sel = greedy_diverse(E, s, budget=2, tau=0.9)
    assert sel.order == [0, 2] and sel.too_similar == [1] and sel.over_budget == [3]
    assert sel.nearest[1] == 0 and sel.max_sim[1] == pytest.approx(0.999)


# -- screening and scores ------------------------------------------------------------------------
def test_screen_reasons_and_evidence():
    th = thresholds_from(["judge=3.5", "complexity=2"], ["ifd=1.0"])
    scores = [
        {"judge": 4, "complexity": 3, "ifd": 0.5},   # passes
        {"judge": 4, "ifd": 0.5},                    # no complexity
        {"judge": float("nan"), "complexity": 3, "ifd": 0.5},  # NaN is missing, not a value
        {"judge": 3, "complexity": 3, "ifd": 0.5},   # judge too low
        {"judge": 3, "complexity": 1, "ifd": 1.2},   # three failures: the first is the reason
        {"judge": 4, "complexity": 2, "ifd": 1.0},   # bounds are inclusive
        {"judge": 4, "complexity": 3, "ifd": 0.5, "other": 1},
    ]
    kept, rejected = screen(scores, th, needed=["judge"])
    assert kept == [0, 5, 6]
    by = {i: (reason, ev) for i, reason, ev in rejected}
    assert by[1] == ("missing_score", {"missing": ["complexity"], "present": ["ifd", "judge"]})
    assert by[2] == ("missing_score", {"missing": ["judge"], "present": ["complexity", "ifd"], "non_finite": ["judge"]})
    assert by[3] == ("below_min_judge", {"score": "judge", "value": 3, "min": 3.5})
    assert by[4][0] == "below_min_judge" and by[4][1]["also_failed"] == ["below_min_complexity", "above_max_ifd"]
    # a score the combined score needs is required too
    kept, rejected = screen([{"judge": 4}], [], needed=["judge", "complexity"])
    assert kept == [] and rejected[0][1] == "missing_score"


def test_parse_flags():
    assert parse_assignments(["judge=3.5,complexity=2", " ifd = 1 "], "--min") == [("judge", 3.5), ("complexity", 2.0), ("ifd", 1.0)]
    assert parse_assignments(["judge,complexity=2"], "--score", default_value=1.0) == [("judge", 1.0), ("complexity", 2.0)]
    for bad in (["judge"], ["judge=x"], ["=3"], ["judge=1,judge=2"], ["judge=inf"]):
        with pytest.raises(UserError):
            parse_assignments(bad, "--min")
    assert Threshold("ifd", "max", 1.0).reason == "above_max_ifd"


def test_combined_scores():
    v = np.array([[4.0, 2.0], [2.0, 3.0], [5.0, 1.0]])
    assert ScoreDef.parse("judge,complexity").combined(v).tolist() == pytest.approx([8.0, 6.0, 5.0])  # DEITA product
    assert ScoreDef.parse("judge=1,complexity=-1").combined(v).tolist() == pytest.approx([2.0, 2 / 3, 5.0])
    z = ScoreDef.parse("judge=1,complexity=1", "sum", "zscore").combined(v)
    zj = (v[:, 0] - v[:, 0].mean()) / v[:, 0].std()
    zc = (v[:, 1] - v[:, 1].mean()) / v[:, 1].std()
    assert z == pytest.approx(zj + zc)
    mm = ScoreDef.parse("judge=2,complexity=1", "sum", "minmax").combined(v)
    assert mm == pytest.approx(2 * (v[:, 0] - 2) / 3 + (v[:, 1] - 1) / 2)
    assert ScoreDef.parse("judge", "sum", "zscore").combined(np.array([[3.0], [3.0]])).tolist() == [0.0, 0.0]  # constant
    with pytest.raises(UserError, match="positive"):
        ScoreDef.parse("ifd").combined(np.array([[0.0]]), ids=["abc"])


# -- the command ---------------------------------------------------------------------------------
TOPICS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Write a haiku about autumn leaves.", "Crimson leaves drifting / the old oak lets go again / wind keeps every one."),
    ("Explain how a binary search works.", "It halves a sorted range at each step, comparing the middle element with the target."),
    ("Give three tips for sleeping better.", "Keep a fixed schedule, avoid screens late at night, and keep the bedroom cool."),
    ("Translate 'good morning' into Spanish.", "Buenos días."),
    ("What causes the seasons on Earth?", "The tilt of Earth's axis changes how directly sunlight hits each hemisphere."),
    ("Write a SQL query counting rows in a table named users.", "SELECT COUNT(*) FROM users;"),
    ("Suggest a name for a bakery.", "The Rolling Pin."),
    ("How do vaccines train the immune system?", "They expose it to a harmless piece or copy of a pathogen so it learns to recognise it."),
    ("Summarise the plot of Romeo and Juliet in one sentence.", "Two young lovers from feuding families die in a tragic misunderstanding."),
    ("Convert 100 degrees Fahrenheit to Celsius.", "About 37.8 degrees Celsius."),
    ("List the primary colours of light.", "Red, green and blue."),
]


def make_records() -> list[Record]:
    recs = []
    for k, (q, a) in enumerate(TOPICS):
        recs.append(Record.from_turns(q, a, scores={"judge": 5 - k * 0.1, "complexity": 2 + (k % 3), "ifd": 0.5}))
    for k in (2, 5, 8, 11):  # near-duplicates of the four best (by judge x complexity), scored just below them: reached early, skipped
        q, a = TOPICS[k]
        recs.append(Record.from_turns(q.lower(), a.lower() + "!", scores={"judge": 4.95 - k * 0.1, "complexity": 2 + (k % 3), "ifd": 0.5}))
    recs.append(Record.from_turns("Name a mammal that lays eggs.", "The platypus.", scores={"judge": 4.0, "ifd": 0.4}))
    # a score that could not be computed is left out (a record can hold no NaN: tests/core/test_robustness.py)
    recs.append(Record.from_turns("Name a bird that cannot fly.", "The ostrich.", scores={"judge": 4.0, "ifd": 0.4}, flags={"complexity": {"error": "unparsed"}}))
    recs.append(Record.from_turns("Say hi.", "Hi.", scores={"judge": 2.0, "complexity": 1, "ifd": 0.3}))
    recs.append(Record.from_turns("Say bye.", "Bye.", scores={"judge": 3.0, "complexity": 1, "ifd": 0.3}))
    recs.append(Record.from_turns("Repeat after me: cat.", "cat", scores={"judge": 4.5, "complexity": 2, "ifd": 1.3}))
    recs.append(Record.from_turns("Repeat after me: dog.", "dog", scores={"judge": 4.5, "complexity": 2, "ifd": 1.05}))
    return recs


def write(path: Path, recs: list[Record]) -> Path:
    path.write_text("".join(r.to_json() + "\n" for r in recs), encoding="utf-8")
    return path


def select_cmd(inp: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["select", "--input", str(inp), "--out", str(out), "--cache-dir", str(cache),
            "--min", "judge=3.5", "--max", "ifd=1.0", *extra]


PROBE = """
import sys, time, json
t0 = time.time()
from datagen.cli import main
rc = main(json.loads(sys.argv[1]))
print(json.dumps({"rc": rc, "seconds": time.time() - t0,
                  "sentence_transformers": "sentence_transformers" in sys.modules, "torch": "torch" in sys.modules}))
"""


def run_select(argv: list[str]) -> dict:
    """`datagen select` in a fresh interpreter; reports whether a model library was imported."""
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {**json.loads(r.stdout.strip().splitlines()[-1]), "stderr": r.stderr}


def outputs(out: Path) -> tuple[list[dict], list[dict], dict, dict]:
    rows = lambda name: [json.loads(x) for x in (out / name).read_text(encoding="utf-8").splitlines()]  # noqa: E731
    return rows("records.jsonl"), rows("rejected.jsonl"), json.loads((out / "stats.json").read_text()), json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One run with an empty embedding cache: the real all-MiniLM-L6-v2 embeds the pool."""
    tmp = tmp_path_factory.mktemp("select")
    recs = make_records()
    inp = write(tmp / "scored.jsonl", recs)
    cache = tmp / "cache"
    res = run_select(select_cmd(inp, tmp / "run1", cache, "--budget", "8"))
    assert res["rc"] == 0, res["stderr"]
    return tmp, inp, cache, recs, res


def test_select_run_directory_reasons_and_ledger(first_run):
    tmp, inp, _, recs, res = first_run
    kept, rejected, stats, manifest = outputs(tmp / "run1")
    assert len(kept) + len(rejected) == len(recs)  # the ledger: nothing dropped silently
    assert {r["id"] for r in kept} | {r["record"]["id"] for r in rejected} == {r.id for r in recs}
    reasons = {}
    for r in rejected:
        reasons.setdefault(r["reason"], []).append(r)
    by_q = lambda rs: sorted(r["record"]["messages"][0]["content"] for r in rs)  # noqa: E731
    assert by_q(reasons["missing_score"]) == ["Name a bird that cannot fly.", "Name a mammal that lays eggs."]
    assert by_q(reasons["below_min_judge"]) == ["Say bye.", "Say hi."]
    assert by_q(reasons["above_max_ifd"]) == ["Repeat after me: cat.", "Repeat after me: dog."]
    assert reasons["above_max_ifd"][0]["evidence"]["max"] == 1.0
    # the lower-cased near-duplicates of the four best are reached before the budget fills, and skipped
    assert len(reasons["too_similar"]) == 4
    kept_ids = {r["id"] for r in kept}
    for r in reasons["too_similar"]:
        ev = r["evidence"]
        assert r["stage"] == "select" and ev["most_similar_id"] in kept_ids and ev["cosine"] > 0.9 and ev["tau"] == 0.9
    assert len(reasons["over_budget"]) == 4 and all(r["evidence"]["budget"] == 8 for r in reasons["over_budget"])
    # the curated set: in selection order, best combined score (judge x complexity) first
    assert [r["flags"]["select"]["rank"] for r in kept] == list(range(1, 9))
    combined = [r["flags"]["select"]["combined_score"] for r in kept]
    assert combined == sorted(combined, reverse=True)
    assert all(r["flags"]["select"]["max_sim_to_selected"] <= 0.9 for r in kept[1:])
    assert kept[0]["flags"]["select"]["max_sim_to_selected"] is None
    # stats and manifest
    sel = stats["stages"]["select"]
    assert stats["stages"]["select.screen"] == {"in": 22, "out": 16, "rejected": {"above_max_ifd": 2, "below_min_judge": 2, "missing_score": 2}, "rejected_total": 6}
    assert sel["in"] == 16 and sel["out"] == 8 and sel["rejected"] == {"over_budget": 4, "too_similar": 4}
    assert stats["extra"]["funnel"] == {"read": 22, "parsed": 22, "screened": 16, "selected": 8}
    assert stats["extra"]["embeddings"]["computed"] == 16
    dist = stats["extra"]["score_distributions"]["judge"]
    assert dist["selected"]["count"] == 8 and dist["not_selected"]["count"] == 14
    assert manifest["status"] == "complete" and manifest["budget"] == 8 and manifest["tau"] == 0.9
    assert manifest["strategy"] == "deita" and manifest["models"]["embeddings"] == "all-MiniLM-L6-v2"
    assert manifest["thresholds"] == [{"score": "judge", "min": 3.5}, {"score": "ifd", "max": 1.0}]
    assert manifest["score"]["combine"] == "product"


def test_reselect_loads_no_model(first_run):
    tmp, inp, cache, _, _ = first_run
    for k, extra in enumerate((["--budget", "5", "--tau", "0.8"], ["--budget", "3", "--strategy", "kcenter"])):
        res = run_select(select_cmd(inp, tmp / f"again{k}", cache, *extra))
        assert res["rc"] == 0, res["stderr"]
        assert not res["sentence_transformers"] and not res["torch"], "a cached re-selection loaded a model"
        assert res["seconds"] < 15, res  # seconds, not a model load (generous: the test machine is shared)
        kept, _, stats, _ = outputs(tmp / f"again{k}")
        assert stats["extra"]["embeddings"] == {**stats["extra"]["embeddings"], "computed": 0, "cached": 16}
        assert len(kept) == int(extra[1])
    # --no-embed with everything cached works too; with a record missing from the cache it refuses
    extra_rec = Record.from_turns("Describe a rainbow.", "An arc of colours.", scores={"judge": 4.2, "complexity": 2, "ifd": 0.5})
    inp2 = write(tmp / "more.jsonl", make_records() + [extra_rec])
    res = subprocess.run([sys.executable, "-m", "datagen.cli", *select_cmd(inp2, tmp / "noembed", cache, "--budget", "5", "--no-embed")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no cached all-MiniLM-L6-v2 embedding" in res.stderr and "Traceback" not in res.stderr


def test_shuffled_input_selects_the_same(first_run):
    tmp, _, cache, recs, _ = first_run
    shuffled = list(recs)
    random.Random(7).shuffle(shuffled)
    inp = write(tmp / "shuffled.jsonl", shuffled)
    res = run_select(select_cmd(inp, tmp / "shuffled", cache, "--budget", "8"))
    assert res["rc"] == 0, res["stderr"]
    a, ra, _, _ = outputs(tmp / "run1")
    b, rb, _, _ = outputs(tmp / "shuffled")
    assert [(r["id"], r["flags"]["select"]) for r in a] == [(r["id"], r["flags"]["select"]) for r in b]
    key = lambda rs: sorted((r["record"]["id"], r["reason"], json.dumps(r["evidence"], sort_keys=True)) for r in rs)  # noqa: E731
    assert key(ra) == key(rb)


def test_user_mistakes_exit_2(first_run, cli):
    tmp, inp, cache, _, _ = first_run
    r = cli(*select_cmd(inp, tmp / "typo", cache, "--budget", "3", "--score", "judeg=1"))
    assert r.returncode == 2 and "'judeg' appears in no input record" in r.stderr and "Traceback" not in r.stderr
    r = cli(*select_cmd(inp, tmp / "bad", cache, "--budget", "3", "--min", "judge"))
    assert r.returncode == 2 and "NAME=NUMBER" in r.stderr
    r = cli(*select_cmd(inp, tmp / "zero", cache, "--budget", "0"))
    assert r.returncode == 2 and "--budget" in r.stderr
    r = cli(*select_cmd(inp, tmp / "kc", cache, "--budget", "3", "--strategy", "kcenter", "--search", "hnsw"))
    assert r.returncode == 2 and "--search hnsw is for --strategy deita" in r.stderr and not (tmp / "kc").exists()
