"""``datagen filter``: the pipeline's ledger, resumption, configuration and registry."""

import json
import random
import subprocess
import sys

import pytest

from datagen.core.errors import UserError
from datagen.curate import registry
from datagen.curate.config import FilterConfig, load_config
from datagen.curate.pipeline import FilterPipeline
from datagen.core.record import Record, Rejection
from datagen.core.rundir import RunDir
from datagen.core.stats import Stats

from conftest import ROOT
from tests.stages import Interrupt, KeepAll

EN = ("Regular exercise strengthens the heart and lungs, improves mood and sleep, and lowers the risk "
      "of many chronic diseases such as diabetes and high blood pressure.")
ZH = "长城是中国古代修建的军事防御工程，东起山海关，西至嘉峪关，绵延数千公里，是世界上最著名的建筑之一。"


def rows():
    """Alpaca rows: clean ones, exact and near duplicates (English and Chinese), and one failure
    per heuristic."""
    out = [
        {"instruction": "Why is exercise good for you?", "input": "", "output": EN},
        {"instruction": "Why is exercise good for you?", "input": "", "output": EN.upper()},  # exact dup (case)
        {"instruction": "Why is exercise good for you?", "input": "", "output": EN + " Stay active."},  # near dup (Jaccard 0.93)
        {"instruction": "介绍一下长城。", "input": "", "output": ZH},
        {"instruction": "介绍一下长城。", "input": "", "output": ZH.replace("。", "！")},  # exact dup (punctuation)
        {"instruction": "介绍一下长城。", "input": "", "output": ZH + "值得一游。"},  # near dup (Jaccard 0.92)
        {"instruction": "Tell me a secret.", "input": "", "output": "I'm sorry, but I cannot share that."},
        {"instruction": "请介绍一下长城的历史。", "input": "", "output": "The Great Wall was built over many centuries to protect the north."},
        {"instruction": "Repeat after me please", "input": "", "output": "Repeat after me please"},
        {"instruction": "Say nothing.", "input": "", "output": " "},
    ]
    for k in range(8):
        out.append({"instruction": f"Give me fact number {k} about the number {k * 7}.", "input": "",
                    "output": f"The number {k * 7} is {'even' if k % 2 == 0 else 'odd'}, and {k * 7} squared is {k * k * 49}."})
    return out


def write(path, data):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    return path


def lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_filter_end_to_end_ledger(tmp_path, cli):
    src = write(tmp_path / "in.jsonl", rows() + [{"instrution": "bad row"}])
    out = tmp_path / "run"
    r = cli("filter", "--input", src, "--out", out, "--stages", "heuristics,exact,minhash", "--on-error", "skip")
    assert r.returncode == 0, r.stderr
    kept, rejected = lines(out / "records.jsonl"), lines(out / "rejected.jsonl")
    assert len(kept) + len(rejected) == len(rows()) + 1
    assert len({k["id"] for k in kept}) == len(kept)
    reasons = {(x["stage"], x["reason"]) for x in rejected}
    assert {("read", "unknown_field"), ("heuristics", "refusal"), ("heuristics", "language_mismatch"), ("heuristics", "echoes_instruction"),
            ("heuristics", "empty_response"), ("exact", "exact_duplicate"), ("minhash", "near_duplicate")} <= reasons
    assert sum(1 for x in rejected if x["stage"] == "exact") == 2
    assert sum(1 for x in rejected if x["stage"] == "minhash") == 2  # the English and the Chinese near duplicates
    for x in rejected:
        if x["stage"] != "read":
            assert x["evidence"] and x["record"]["flags"]
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["stages"]) == ["read", "heuristics", "exact", "minhash"]
    for name, s in stats["stages"].items():
        assert s["in"] == s["out"] + s["rejected_total"], name
    assert stats["stages"]["minhash"]["out"] == len(kept) == stats["records"]
    dist = stats["extra"]["scores"]["heuristics"]["response_words"]
    assert dist["count"] == stats["stages"]["heuristics"]["in"]
    assert {"min", "max", "mean", "p10", "p50", "p90", "histogram"} <= set(dist)
    manifest = json.loads((out / "manifest.json").read_text())
    mh = [s for s in manifest["stages"] if s["name"] == "minhash"][0]
    assert mh["bands"] * mh["rows"] <= mh["num_perm"] and mh["engine"] in ("datasketch", "rensa")
    assert "heuristics" in r.stderr and "->" in r.stderr  # the funnel


def test_shuffled_input_keeps_the_same_records(tmp_path, cli):
    data = rows()
    outs = []
    for k, seed in enumerate((None, 5)):
        d = list(data)
        if seed is not None:
            random.Random(seed).shuffle(d)
        src = write(tmp_path / f"in{k}.jsonl", d)
        r = cli("filter", "--input", src, "--out", tmp_path / f"run{k}", "--stages", "exact,minhash")
        assert r.returncode == 0, r.stderr
        outs.append(sorted(x["id"] for x in lines(tmp_path / f"run{k}" / "records.jsonl")))
    assert outs[0] == outs[1]


def test_unknown_config_key_fails_naming_it(tmp_path, cli):
    src = write(tmp_path / "in.jsonl", rows())
    cfg = tmp_path / "filter.yaml"
    cfg.write_text("minhash:\n  treshold: 0.8\n")
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--config", cfg, "--stages", "minhash")
    assert r.returncode == 2
    assert "filter.yaml" in r.stderr and "minhash.treshold" in r.stderr and "did you mean 'threshold'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run" / "records.jsonl").exists()


def test_set_overrides_the_config_file_stage_by_stage(tmp_path, cli):
    cfg = tmp_path / "filter.yaml"
    cfg.write_text("minhash:\n  threshold: 0.8\n  num_perm: 64\n")
    got = load_config(cfg, ["minhash.threshold=0.75", "exact.text=response"])
    assert (got.minhash.threshold, got.minhash.num_perm, got.exact.text) == (0.75, 64, "response")
    assert load_config(None, ["minhash.threshold=0.6"]).minhash.threshold == 0.6
    with pytest.raises(UserError, match=r"--set: minhash.treshold.*did you mean 'threshold'"):
        load_config(None, ["minhash.treshold=0.6"])
    with pytest.raises(UserError, match="expected STAGE.KEY=VALUE"):
        load_config(None, ["threshold=0.6"])
    # the command: --set reaches the stages and the manifest (so a changed setting is a different run)
    src = write(tmp_path / "in.jsonl", rows())
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--config", cfg, "--set", "minhash.threshold=0.75", "--stages", "minhash")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["minhash"]["threshold"] == 0.75 and manifest["config"]["minhash"]["num_perm"] == 64


def test_example_config_is_the_defaults():
    assert load_config(ROOT / "examples" / "filter.yaml") == FilterConfig()


def test_bad_values_and_sections_are_user_errors(tmp_path):
    for text, needle in [("minhash:\n  threshold: 2\n", "minhash.threshold"), ("heuristic:\n  refusal: false\n", "did you mean 'heuristics'"),
                         ("minhash:\n  bands: 4\n", "bands and rows"), ("- a\n", "mapping")]:
        p = tmp_path / "c.yaml"
        p.write_text(text)
        with pytest.raises(UserError, match=needle):
            load_config(p)


def test_no_model_is_imported_for_the_non_model_stages(tmp_path):
    src = write(tmp_path / "in.jsonl", rows())
    code = f"""
import sys
from datagen.cli import main
assert main(["filter", "--input", {str(src)!r}, "--out", {str(tmp_path / 'run')!r}, "--stages", "heuristics,exact,minhash"]) == 0
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_registry_order_and_missing_modules(monkeypatch):
    assert registry.parse_stages("minhash, heuristics") == ["heuristics", "minhash"]
    with pytest.raises(UserError, match="unknown stage 'minhsh'"):
        registry.parse_stages("minhsh")
    monkeypatch.setitem(registry.LAZY, "semantic", ("datagen.curate.no_such_module", "X", "Y"))
    with pytest.raises(UserError, match="stage 'semantic' is not available"):
        registry.build_stage("semantic", FilterConfig())


# -- resumption ------------------------------------------------------------------------------
def pipeline(last, tmp_path):
    cfg = FilterConfig()
    return FilterPipeline(registry.build_stages(["heuristics", "exact", "minhash"], cfg) + [last], tmp_path / "cache", progress=False)


def records():
    return [Record.from_turns(r["instruction"], r["output"]) for r in rows()]


def test_interrupted_run_resumes_to_identical_outputs(tmp_path):
    read_rejects = [Rejection(stage="read", reason="malformed_json", raw="{", location="in.jsonl:99")]
    clean = RunDir(tmp_path / "clean", "filter", {"x": 1})
    pipeline(KeepAll(), tmp_path).run(clean, records(), read_rejects)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        pipeline(Interrupt(), tmp_path).run(RunDir(out, "filter", {"x": 1}), records(), read_rejects)
    assert RunDir(out, "filter", {"x": 1}).done_parts() == [0, 1, 2, 3]
    assert not (out / "records.jsonl").exists()

    class Spy(KeepAll):
        seen = 0

        def annotate(self, recs, ctx):
            Spy.seen = len(recs)
            super().annotate(recs, ctx)

    again = pipeline(Spy(), tmp_path)
    for st in again.stages[:3]:  # finished stages must not run again
        st.annotate = lambda *a: pytest.fail("a finished stage ran again")
    again.run(RunDir(out, "filter", {"x": 1}), records(), read_rejects)
    assert Spy.seen == json.loads((tmp_path / "clean" / "stats.json").read_text())["stages"]["quality"]["in"]
    for name in ("records.jsonl", "rejected.jsonl"):
        assert (out / name).read_text() == (tmp_path / "clean" / name).read_text(), name
    a, b = (json.loads((d / "stats.json").read_text()) for d in (tmp_path / "clean", out))
    assert a["stages"] == b["stages"] and a["extra"]["scores"] == b["extra"]["scores"]


def test_finalize_records_from_one_part(tmp_path):
    run = RunDir(tmp_path / "run", "demo", {})
    run.write_part(0, [], [], Stats())
    first = [Record.from_turns(f"q{i}", "a") for i in range(3)]
    run.write_part(1, first, [], Stats())
    run.write_part(2, first[:1], [Rejection(stage="s", reason="r", record=first[1])], Stats())
    doc = run.finalize({}, n_parts=3, records_from=2)
    assert doc["records"] == 1 and doc["rejected"] == 1
    assert [json.loads(x)["id"] for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()] == [first[0].id]
