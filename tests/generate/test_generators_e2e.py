"""The generators end to end on the real embedded model (SmolLM2-135M-Instruct, ``--llm local``),
through the CLI in a subprocess, with a fresh request cache so that the model really generates.

Each run must produce a complete run directory whose files agree with its stats. SmolLM2-135M is
a plumbing model: it evolves instructions well enough, but as a Self-Instruct generator it often
proposes nothing usable, so for self-instruct we accept a run without records as long as every
proposed task was rejected for one of the loop's documented reasons.
"""

import json
from collections import Counter

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow

# Every reason code self-instruct can write (see datagen/generate/self_instruct.py's docstring).
SELF_INSTRUCT_REASONS = {
    "self-instruct": {"llm_error", "no_tasks_parsed", "unparsed_task", "truncated", "too_short", "too_long", "blacklisted",
                      "starts_with_punctuation", "write_a_program", "near_duplicate", "surplus", "no_valid_instance"},
    "self-instruct.instances": {"truncated", "empty_output", "input_equals_output", "duplicate_instance", "conflicting_outputs"},
}


def check_run_dir(out, command):
    """A finished run: complete manifest, a ledger that balances for every stage, and output files
    whose line counts are the stats' counts. Returns (stats, records, rejections)."""
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == command and manifest["status"] == "complete"
    assert not (out / ".parts").exists()
    stats = json.loads((out / "stats.json").read_text())
    for name, s in stats["stages"].items():
        assert s["in"] == s["out"] + s["rejected_total"], (name, s)
        assert s["rejected_total"] == sum(s["rejected"].values())
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(records) == stats["records"] and len(rejected) == stats["rejected"]
    by_stage = Counter((r["stage"], r["reason"]) for r in rejected)
    for name, s in stats["stages"].items():
        assert {reason: n for (st, reason), n in by_stage.items() if st == name} == s["rejected"], name
    return stats, records, rejected


def test_evolve_one_round_on_the_embedded_model(tmp_path):
    out = tmp_path / "evolve"
    r = run_cli("evolve", "--rounds", "1", "--limit", "4", "--max-new-tokens", "64", "--seed", "1",
                "--cache", tmp_path / "cache.sqlite", "--out", out, timeout=600)
    assert r.returncode == 0, r.stderr
    stats, records, rejected = check_run_dir(out, "evolve")
    assert stats["stages"]["evolve"]["in"] == 4 and stats["extra"]["llm"]["cache_hits"] == 0
    assert records, f"no evolution survived: {stats['stages']['evolve']['rejected']}"
    for rec in records:
        assert rec["parent_id"] and rec["meta"]["round"] == 1 and rec["source"] == f"evol:{rec['meta']['operation']}"
        assert rec["messages"][-1]["role"] == "assistant" and rec["messages"][-1]["content"].strip()
    assert stats["extra"]["pass_rate"]["overall"]["tried"] == 4


def test_self_instruct_on_the_embedded_model(tmp_path):
    out = tmp_path / "self-instruct"
    r = run_cli("self-instruct", "--limit", "8", "--num", "1", "--requests-per-round", "2", "--max-rounds", "1",
                "--max-new-tokens", "64", "--seed", "1", "--cache", tmp_path / "cache.sqlite", "--out", out, timeout=600)
    assert r.returncode == 0, r.stderr
    stats, records, rejected = check_run_dir(out, "self-instruct")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stop_reason"] in ("done", "max_rounds") and manifest["rounds"] == 1
    assert stats["extra"]["requests"]["tasks"] == 2 and stats["extra"]["llm"]["cache_hits"] == 0
    for rej in rejected:  # every rejection names a documented reason
        assert rej["reason"] in SELF_INSTRUCT_REASONS[rej["stage"]], rej
    if records:
        assert manifest["tasks_accepted"] == 1 and all(r["source"] == "self-instruct" for r in records)
        assert all(r["messages"][-1]["content"].strip() for r in records)
    else:  # the tiny model proposed nothing usable: every proposal is accounted for by a reason
        assert manifest["stop_reason"] == "max_rounds" and manifest["tasks_accepted"] == 0
        assert stats["stages"]["self-instruct"]["rejected_total"] == stats["stages"]["self-instruct"]["in"] >= 1
