"""The data behind each view of `datagen report`, on small run directories written by the tests."""

from __future__ import annotations

import json
import math

import numpy as np
from pathlib import Path

import pytest
from report_fixtures import XSS, pipeline

from datagen.core.errors import UserError
from datagen.core.kvcache import KVCache, sha_key
from datagen.curate.dedup.lsh import detection_probability as lsh_probability
from datagen.report import data, figures
from datagen.report import runs as report_runs
from datagen.report.html import script_json
from datagen.report.text import summary
from datagen.report.training import read_eval, read_training


@pytest.fixture
def runs(tmp_path):
    paths, named = pipeline(tmp_path)
    return paths, named, data.load_runs(paths)


def test_funnel_equals_stats_json(runs):
    paths, _, loaded = runs
    rows = data.funnel(loaded)
    for path, run in zip(paths, loaded):
        stats = json.loads((path / "stats.json").read_text())
        mine = {r.stage: r for r in rows if r.run == run.label}
        assert list(mine) == list(stats["stages"])
        for name, s in stats["stages"].items():
            assert (mine[name].n_in, mine[name].n_out, mine[name].rejected) == (s["in"], s["out"], s["rejected"])
            assert mine[name].rejected_total == s["rejected_total"]
    assert [(r, st, reason, c) for r, st, reason, c in report_runs.top_reasons(rows, 2)] == [
        ("filter", "minhash", "near_duplicate", 2), ("evolve", "evolve", "copied_scaffolding", 1)]


def test_index_fates_and_totals(runs):
    _, named, loaded = runs
    index = data.build_index(loaded)
    assert len(index) == 12  # 3 evolve records, 11 filter records, 2 of them the same as evolve's
    fate = {rid: (e.fate.run, e.fate.status, e.fate.stage, e.fate.reason) for rid, e in index.entries.items()}
    assert fate[named["b"].id] == ("select", "kept", "", "")
    assert fate[named["a"].id] == ("select", "rejected", "select", "too_similar")
    assert fate[named["near1"].id] == ("filter", "rejected", "minhash", "near_duplicate")
    assert fate[named["evolve_bad"].id] == ("evolve", "rejected", "evolve", "copied_scaffolding")
    # b was kept by every run it went through: three events, in run order
    assert [(e.run, e.status) for e in index.entries[named["b"].id].events] == [("evolve", "kept"), ("filter", "kept"), ("select", "kept")]
    assert index.totals() == {"records": 12, "curated": 3, "rejected": 9, "other": 0}


def test_lineage_follows_parent_ids_across_runs(runs):
    _, named, loaded = runs
    index = data.build_index(loaded)
    # b (evolved from a, evolved from the seed): a is in the runs, the seed is not
    assert data.lineage(index, named["b"].id) == [(named["a"].id, True), (named["evolve_seed"].id, False)]
    assert data.lineage(index, named["surv"].id) == []


def test_histograms_bins_and_thresholds(runs):
    _, _, loaded = runs
    index = data.build_index(loaded)
    limits = data.thresholds(loaded)
    assert [(t.score, t.bound, t.value) for t in limits] == [("ifd", "max", 1.0), ("judge", "min", 3.6)]
    h = data.histogram(index, "judge", limits, bins=4)
    assert h is not None
    # judge scores: surv 4.5, near1 3.0, near2 2.0, a 3.8, b 4.2, xss 3.5, sem_surv 4.0, low 1.0
    assert h.edges == [1.0, 1.875, 2.75, 3.625, 4.5]
    assert h.curated == [0, 0, 0, 3]  # b, surv, sem_surv
    assert h.other == [1, 1, 2, 1]  # low | near2 | near1, xss | a
    assert h.count == 8 and [t.value for t in h.thresholds] == [3.6]
    ifd = data.histogram(index, "ifd", limits, bins=5)
    assert ifd is not None and ifd.edges[0] == 0.2 and ifd.edges[-1] == 1.4
    assert data.histogram(index, "no_such_score", limits) is None


def test_histogram_range_includes_a_threshold_outside_the_values(runs):
    _, _, loaded = runs
    index = data.build_index(loaded)
    h = data.histogram(index, "complexity", [data.Threshold("complexity", "min", 8.0, "x")], bins=7)
    assert h is not None and h.edges[0] == 1.0 and h.edges[-1] == 8.0


def test_detection_curve_matches_lsh_formula(runs):
    _, _, loaded = runs
    curve = data.detection_curve(loaded, points=11)
    assert curve is not None and (curve.bands, curve.rows, curve.threshold) == (18, 7, 0.7)
    for s, p in curve.points:
        assert p == pytest.approx(float(lsh_probability(s, 18, 7)), abs=1e-12)
    assert curve.at_threshold == pytest.approx(0.7871, abs=1e-4)  # the value lsh.py stores for (18, 7)
    assert curve.observed == [0.75, 0.86]
    assert data.detection_curve(loaded[:1]) is None


def test_duplicate_clusters(runs):
    _, named, loaded = runs
    clusters = data.duplicate_clusters(data.build_index(loaded))
    assert [c.survivor for c in clusters] == [named["surv"].id] + sorted([named["b"].id, named["sem_surv"].id])
    big = clusters[0]
    assert big.size == 4 and big.kinds == ["exact", "minhash"]
    assert [(m.id, m.kind, m.similarity) for m in big.members] == [
        (named["exact"].id, "exact", None), (named["near1"].id, "minhash", 0.86), (named["near2"].id, "minhash", 0.75)]
    kinds = {c.survivor: c.kinds for c in clusters}
    assert kinds[named["sem_surv"].id] == ["semantic"] and kinds[named["b"].id] == ["too similar"]


def test_word_diff_rebuilds_both_texts():
    a, b = "sort the list and remove duplicates", "sort the long list and drop duplicates now"
    d = figures.word_diff(a, b)
    assert "".join(t for op, t in d if op != "+") == a
    assert "".join(t for op, t in d if op != "-") == b
    assert ("+", " long") in d and ("-", "remove") in d and ("+", "drop") in d


def test_breakdowns(runs):
    _, _, loaded = runs
    b = data.breakdowns(data.build_index(loaded))
    src = {g.key: (g.total, g.curated, g.rejected) for g in b["source"]}
    assert src == {"distill:m": (9, 2, 7), "evol:deepening": (1, 0, 1), "evol:concretizing": (1, 1, 0), "evol:breadth": (1, 0, 1)}
    ops = {g.key: g.total for g in b["operation"]}
    assert ops == {"(none)": 9, "deepening": 1, "concretizing": 1, "breadth": 1}
    assert {g.key: g.total for g in b["round"]} == {"(none)": 9, "1": 2, "2": 1}
    assert {g.key for g in b["language"]} == {"latin"}
    distill = next(g for g in b["source"] if g.key == "distill:m")
    assert distill.reasons["minhash: near_duplicate"] == 2


def test_browser_rows_details_and_truncation(runs):
    _, named, loaded = runs
    index = data.build_index(loaded)
    br = data.browser(index, max_chars=30)
    ids = [r[0] for r in br.rows]
    i = ids.index(named["b"].id)
    row, det = br.rows[i], br.details[i]
    assert row[1] == 1 and br.facets["status"][row[2]] == "kept" and br.facets["stage"][row[3]] == "select: kept"
    assert br.facets["source"][row[5]] == "evol:concretizing"
    assert [x[0] for x in det["l"]] == [named["a"].id, named["evolve_seed"].id]
    assert det["l"][1][1] == ""  # the seed is not in the runs: no preview
    assert sum(len(m[1]) for m in det["m"]) == 30 and det["x"] > 0  # text cut to max_chars, the rest counted
    assert [e[:4] for e in det["e"]] == [["evolve", "kept", "", ""], ["filter", "kept", "", ""], ["select", "kept", "", ""]]
    assert br.truncated == sum(1 for d in br.details if d["x"])
    j = ids.index(named["a"].id)
    assert br.facets["reason"][br.rows[j][4]] == "too_similar" and br.details[j]["e"][-1][4]["cosine"] == 0.93


def test_script_json_cannot_close_the_script_element():
    s = str(script_json({"t": XSS}))
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"t": XSS}


def test_embedding_map_from_the_cache_only(runs, tmp_path):
    _, _, loaded = runs
    index = data.build_index(loaded)
    cache = tmp_path / "cache"
    m, note = data.embedding_map(index, cache, "all-MiniLM-L6-v2")
    assert m is None and "no all-MiniLM-L6-v2 embedding cache" in note
    assert not (cache / "embeddings").exists()  # looking did not create a cache
    # vectors in a 2-D plane of a 384-D space: the projection keeps every distance
    entries = [e for e in index if e.response][:-1]  # one record left without a vector
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(384, 2)))[0].T
    coords = rng.normal(size=(len(entries), 2)) * [3.0, 1.0]
    vecs = (coords @ basis).astype(np.float32)
    kv = KVCache(cache / "embeddings" / "all-MiniLM-L6-v2" / "embeddings.sqlite")
    kv.put_many((sha_key(e.instruction + "\n\n" + e.response), v.tobytes()) for e, v in zip(entries, vecs))
    kv.close()
    m, note = data.embedding_map(index, cache, "all-MiniLM-L6-v2")
    assert m is not None and len(m.ids) == len(entries) and "1 of" in note
    assert sum(m.explained) == pytest.approx(1.0, abs=1e-5)
    xy = np.array(m.xy)
    d_in = np.linalg.norm(vecs[:, None] - vecs[None], axis=-1)
    d_out = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.allclose(d_in, d_out, atol=1e-3)


def test_text_summary(runs):
    _, _, loaded = runs
    out = summary(loaded)
    assert "filter > minhash" in out and "9 -> 7" in out and "near_duplicate 2" in out
    assert "12 distinct, 3 curated (25%), 9 rejected" in out
    assert "filter > minhash: near_duplicate" in out.split("top reasons:")[1]


def test_not_a_run_directory(tmp_path):
    with pytest.raises(UserError, match="not a datagen run directory"):
        report_runs.load_run(tmp_path)
    with pytest.raises(UserError, match="no such directory"):
        report_runs.load_run(tmp_path / "nope")


def test_training_reader_is_tolerant(tmp_path):
    run = tmp_path / "train"
    run.mkdir()
    (run / "log_history.json").write_text(json.dumps([
        {"loss": 2.0, "step": 10, "epoch": 0.5, "learning_rate": 1e-4}, {"eval_loss": 1.9, "step": 10},
        {"loss": 1.5, "step": 20}, {"eval_loss": 1.7, "step": 20, "eval_runtime": 1.0}, {"train_runtime": 12.0, "step": 20},
        {"loss": float("nan"), "step": 30}, "not a dict",
    ]).replace("NaN", "null"))
    (run / "metrics.json").write_text(json.dumps({"eval_loss": 1.7, "train": {"runtime": 12.0}, "notes": ["x"]}))
    t = read_training(run)
    assert t.loss == [(10.0, 2.0), (20.0, 1.5)] and t.eval_loss == [(10.0, 1.9), (20.0, 1.7)]
    assert t.metrics == {"eval_loss": 1.7, "train.runtime": 12.0}
    # trainer_state.json of the newest checkpoint, when there is no log_history.json
    ck = tmp_path / "t2" / "checkpoint-40"
    ck.mkdir(parents=True)
    (tmp_path / "t2" / "checkpoint-5").mkdir()
    (tmp_path / "t2" / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 9.0, "step": 5}]}))
    (ck / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 3.0, "step": 5}, {"loss": 2.5, "step": 40}]}))
    assert read_training(tmp_path / "t2").loss == [(5.0, 3.0), (40.0, 2.5)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="found no log_history.json"):
        read_training(tmp_path / "empty")


def test_eval_reader_is_tolerant(tmp_path):
    p = tmp_path / "results.json"
    p.write_text(json.dumps({
        "model": "runs/train", "metrics": {"eval_loss": 1.2, "perplexity": 3.3},
        "samples": [{"response": "Paris.", "prompt": "Capital of France?", "extra": {"k": 1}},
                    {"messages": [{"role": "user", "content": "hi"}], "generation": "hello"}],
    }))
    e = read_eval(p)
    assert e.metrics == {"model": "runs/train", "metrics.eval_loss": 1.2, "metrics.perplexity": 3.3}
    (title, rows), = e.samples
    assert title == "samples"
    assert rows[0] == [("prompt", "Capital of France?"), ("response", "Paris."), ("extra", '{"k": 1}')]
    assert rows[1] == [("messages", "[user] hi"), ("generation", "hello")]
    # a bare list of samples, in a directory
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "results.json").write_text(json.dumps([{"prompt": "a", "output": "b"}]))
    assert read_eval(tmp_path / "d").samples == [("samples", [[("prompt", "a"), ("output", "b")]])]
    assert math.isfinite(e.metrics["metrics.eval_loss"])


def test_cli_writes_the_page_and_prints_the_text_summary(runs, cli, tmp_path):
    paths, named, _ = runs
    r = cli("report", *paths, "--cache-dir", tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    page = (paths[-1] / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page  # escaped everywhere, in markup and in the JSON
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page
    assert "http://" not in page and "https://" not in page
    assert named["near1"].id in page  # in the duplicate clusters
    r = cli("report", *paths, "--text")
    assert r.returncode == 0 and "top reasons:" in r.stdout and "filter > minhash" in r.stdout
    r = cli("report", tmp_path / "nope")
    assert r.returncode == 2 and "no such directory" in r.stderr and "Traceback" not in r.stderr


def test_eval_reader_reads_train_eval_results(tmp_path):
    """The shape `train eval` writes: loss, perplexity, generations with prompt messages and the
    base model's answer, a judge summary."""
    p = tmp_path / "eval.json"
    p.write_text(json.dumps({
        "model": "runs/train", "data": {"path": "d.jsonl", "samples": 20}, "loss": 1.25, "perplexity": 3.49, "tokens": 900,
        "generations": [{"id": "abc", "prompt": [{"role": "user", "content": "Name a colour."}], "answer": "Blue.", "base_answer": "red"}],
        "judge": {"base_model": "smollm2", "wins": 1, "losses": 0},
    }))
    e = read_eval(p)
    assert e.metrics["loss"] == 1.25 and e.metrics["judge.wins"] == 1 and e.metrics["data.samples"] == 20
    assert e.samples == [("generations", [[("id", "abc"), ("prompt", "[user] Name a colour."), ("answer", "Blue."), ("base_answer", "red")]])]


def test_the_semantic_stages_relevance_threshold_is_drawn():
    run = data.Run(Path("f"), "filter", {"stages": [{"name": "semantic", "min_relevance": 0.1, "threshold": 0.95},
                                                    {"name": "quality", "scorers": ["complexity_features"], "max_ifd": 1.0}]}, {}, [], [])
    # quality's max_ifd is not drawn: that run did not score IFD
    assert [(t.score, t.bound, t.value, t.origin) for t in data.thresholds([run])] == [("relevance", "min", 0.1, "filter: semantic.min_relevance")]


def test_limit_reads_the_first_k_records_of_each_run_and_keeps_the_whole_funnel(runs, cli, tmp_path):
    paths, _, loaded = runs
    limited = data.load_runs(paths, limit=1)
    for whole, part in zip(loaded, limited):
        assert part.records == whole.records[:1] and part.rejected == whole.rejected[:1]
    assert data.funnel(limited) == data.funnel(loaded)
    report = data.build(paths, embeddings=False, limit=1)
    assert len(report.index) < len(data.build(paths, embeddings=False).index)
    assert any("--limit 1" in w for w in report.warnings)
    out = tmp_path / "limited.html"
    r = cli("report", *paths, "--limit", "1", "--no-map", "--out", out)
    assert r.returncode == 0 and out.is_file() and "--limit 1" in r.stderr, r.stderr
    r = cli("report", *paths, "--limit", "0", "--text")
    assert r.returncode == 2 and "--limit must be >= 1" in r.stderr and "Traceback" not in r.stderr


def test_the_embedding_map_colours_each_rejection_by_its_kind():
    from datagen.report.html import MAP_CLASSES, map_category
    from datagen.report.index import Entry, Event, Index

    def entry(rid: str, *events: Event) -> Entry:
        return Entry(rid, {}, list(events))

    entries = {
        "a": entry("a", Event("filter", "kept"), Event("select", "kept")),
        "b": entry("b", Event("filter", "rejected", "minhash", "near_duplicate")),
        "c": entry("c", Event("filter", "rejected", "heuristics", "truncated")),
        "d": entry("d", Event("filter", "kept"), Event("select", "rejected", "select", "too_similar")),
        "e": entry("e", Event("filter", "kept")),
        "f": entry("f", Event("filter", "rejected", "decontaminate", "benchmark_overlap")),
        "g": entry("g", Event("filter", "rejected", "pii", "pii_email")),
    }
    index = Index(entries, ["filter", "select"])
    got = {rid: MAP_CLASSES[map_category(e, index)] for rid, e in entries.items()}
    assert got == {"a": "curated", "b": "rejected: dedup", "c": "rejected: quality / heuristics", "d": "rejected: select",
                   "e": "other", "f": "rejected: benchmark overlap / personal data", "g": "rejected: benchmark overlap / personal data"}
