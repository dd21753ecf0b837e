"""Evol-Instruct: the four WizardLM elimination rules, lineage, pass rates, ledger and resume,
with a scripted LLM whose behaviour is keyed on markers in the seed instructions."""

import json
import re

import pytest

from datagen.core.errors import UserError
from datagen.commands import evolve as evolve_cmd
from datagen.commands.common import settings_from
from datagen.core.settings import build
from datagen.generate import evol_instruct as ev
from datagen.generate.distill import Teacher
from datagen.core.io import iter_jsonl
from datagen.llm.base import GenParams
from datagen.llm.cache import CachedLLM, RequestCache
from datagen.core.record import Record
from datagen.core.rundir import RunDir
from tests.scripted import Interrupting, ScriptedLLM

SEEDS = {
    "alpha": "alpha: Describe a cat.",  # evolves fine, twice
    "bravo": "bravo: Name a colour.",  # the judge calls the evolution equal to its parent
    "charlie": "charlie: Tell me a joke.",  # the evolution's answer is a short refusal
    "delta": "delta: Say something.",  # the evolution's answer is only stop words
    "echo": "echo: Write a haiku.",  # the evolution copies the prompt scaffolding
    "foxtrot": "foxtrot: Count to ten.",  # the evolution request errors
    "golf": "golf: Spell 'dog'.",  # the evolution comes back blank
    "hotel": "hotel: Add 2 and 2.",  # the evolution is the parent again: no need to ask the judge
}
GIVEN = re.compile(r"#The Given Prompt#:\n(.*?)\n\n#(?:Rewritten|Created) Prompt#:", re.S)


def marker(text):
    return next(k for k in SEEDS if text.startswith(k) or f" {k}:" in text or text.startswith(f"#Rewritten Prompt#: {k}"))


def script(req, params):
    user = req.messages[-1][1]
    m = GIVEN.search(user)
    if m:  # an evolution request
        given = m.group(1)
        k = marker(given)
        return {
            "alpha": f"#Rewritten Prompt#: {given} Use exactly three sentences.",
            "bravo": f"{given} Please.",
            "charlie": f"{given} Make it about cats.",
            "delta": f"{given} Be brief.",
            "echo": f"Here is the rewritten prompt: {given} Use a 5-7-5 pattern.",
            "foxtrot": RuntimeError("server said 500"),
            "golf": "   ",
            "hotel": f"{given.upper()}!",
        }[k]
    if user.startswith("Here are two instructions"):
        return "Equal" if "bravo" in user else "Not Equal."
    k = marker(user)  # an answer request
    if k == "charlie":
        return "I'm sorry, but as an AI I cannot do that."
    if k == "delta":
        return "It is... the, of and it!"
    return f"A thorough answer to: {user}"


def seed_file(tmp_path):
    p = tmp_path / "seeds.jsonl"
    rows = [{"id": f"seed_task_{i}", "name": k, "instruction": v, "instances": [{"input": "", "output": f"out {i}"}], "is_classification": False}
            for i, (k, v) in enumerate(SEEDS.items())]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def pool_of(tmp_path):
    from datagen.core.io import read_records

    return list(read_records(seed_file(tmp_path), require_answer=False))


def make(llm, rounds=2, chunk=3, **kw):
    params = GenParams(max_tokens=64, seed=0)
    return ev.EvolInstruct(llm, params, teacher=Teacher(llm, params, "Be helpful.", {"name": "distill/system", "sha": "x"}),
                           rounds=rounds, chunk_size=chunk, progress=False, **kw)


def run_evolve(tmp_path, llm, name="run", **kw):
    pool = pool_of(tmp_path)
    out = tmp_path / name
    stats = make(llm, **kw).run(RunDir(out, "evolve", {"t": 1}), pool)
    return out, stats, pool


def load(out):
    recs = [Record.model_validate(r) for r in iter_jsonl(out / "records.jsonl")]
    rejs = list(iter_jsonl(out / "rejected.jsonl"))
    return recs, rejs


def test_rules_lineage_and_pass_rates(tmp_path):
    llm = ScriptedLLM(script)
    out, stats, pool = run_evolve(tmp_path, llm)
    seeds = {marker(r.instruction): r for r in pool}
    recs, rejs = load(out)

    # survivors: alpha in round 1, its child in round 2; nothing else
    assert [(r.meta["round"], marker(r.instruction)) for r in recs] == [(1, "alpha"), (2, "alpha")]
    a1, a2 = recs
    assert a1.instruction == "alpha: Describe a cat. Use exactly three sentences."  # echoed label stripped
    assert a1.parent_id == seeds["alpha"].id and a2.parent_id == a1.id
    assert a1.meta["root_id"] == a2.meta["root_id"] == seeds["alpha"].id
    for r in recs:
        op = r.meta["operation"]
        assert op in ev.OPERATIONS and r.source == f"evol:{op}"
        assert set(r.meta["prompt_templates"]) == {f"evol/{op}", "evol/equality", "distill/system"}
        assert r.response.startswith("A thorough answer to:")
        assert r.meta["equality"]["verdict"] == "not_equal"
        assert r.meta["teacher"] == "scripted"
    assert a2.instruction.startswith(a1.instruction)  # round 2 evolved the round-1 survivor

    # every other seed failed twice, each time with its own reason and evidence
    seed_of = {v.id: k for k, v in seeds.items()}
    reasons = {(seed_of[r["evidence"]["parent_id"]], r["evidence"]["round"]): r for r in rejs}
    expected = {"bravo": "no_information_gain", "charlie": "refusal", "delta": "stopwords_only", "echo": "copied_scaffolding",
                "foxtrot": "evolution_llm_error", "golf": "empty_evolution", "hotel": "no_information_gain"}
    assert len(rejs) == 2 * len(expected)
    for (k, rnd), r in reasons.items():
        assert r["stage"] == "evolve" and r["reason"] == expected[k], (k, r)
        e = r["evidence"]
        assert e["round"] == rnd and e["parent_id"] == seeds[k].id and e["root_id"] == seeds[k].id  # parent went back to the pool
        assert e["operation"] == make(llm).pick(rnd, seeds[k].id)
    ev_of = {(k, rnd): r["evidence"] for (k, rnd), r in reasons.items()}
    assert ev_of[("bravo", 1)]["judged_by"] == "llm" and ev_of[("bravo", 1)]["judge_text"] == "Equal"
    assert ev_of[("hotel", 1)]["judged_by"] == "string" and ev_of[("hotel", 1)]["similarity"] == 1.0
    assert ev_of[("charlie", 1)]["phrase"] == "I'm sorry, but" and ev_of[("charlie", 1)]["response_words"] < 80
    assert ev_of[("delta", 2)]["answer"] == "It is... the, of and it!"
    assert ev_of[("echo", 1)]["matched"].lower() == "rewritten prompt"
    assert "500" in ev_of[("foxtrot", 1)]["error"]
    rej_charlie = next(r for r in rejs if r["reason"] == "refusal")
    assert rej_charlie["record"]["messages"][-1]["content"].startswith("I'm sorry")  # the answered evolution is kept as evidence
    # the judge is never asked about a string-identical evolution
    assert not any(c.messages[-1][1].startswith("Here are two") and "HOTEL" in c.messages[-1][1] for c in llm.calls)

    # stats: ledger and pass rates
    st = json.loads((out / "stats.json").read_text())
    e = st["stages"]["evolve"]
    assert e["in"] == 16 and e["out"] == 2 and e["in"] == e["out"] + e["rejected_total"]
    assert e["rejected"] == {"copied_scaffolding": 2, "empty_evolution": 2, "evolution_llm_error": 2, "no_information_gain": 4, "refusal": 2, "stopwords_only": 2}
    assert st["records"] == e["out"] and st["rejected"] == e["rejected_total"] + st["stages"]["read"]["rejected_total"]
    assert st["stages"]["read"] == {"in": 8, "out": 8, "rejected": {}, "rejected_total": 0}
    pr = st["extra"]["pass_rate"]
    assert pr["by_round"] == {"1": {"tried": 8, "passed": 1, "rate": 0.125}, "2": {"tried": 8, "passed": 1, "rate": 0.125}}
    assert pr["overall"] == {"tried": 16, "passed": 2, "rate": 0.125}
    assert sum(v["tried"] for v in pr["by_operation"].values()) == 16
    for op, v in pr["by_operation"].items():
        assert v["rate"] == round(v["passed"] / v["tried"], 4)
    assert sum(v["passed"] for v in pr["by_operation"].values()) == 2
    assert pr["by_operation"][a1.meta["operation"]]["passed"] >= 1
    assert sum(st["extra"]["rejected_by_operation_reason"].values()) == 14
    assert st["extra"]["judge_verdicts"] == {"equal": 2, "not_equal": 6}  # bravo; alpha, charlie, delta (x2 rounds)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and set(manifest["prompt_templates"]) >= {"evol/breadth", "evol/equality"}


def test_operations_are_seeded_and_restrictable(tmp_path):
    llm = ScriptedLLM(script)
    e = make(llm, operations=("deepening", "breadth"))
    picks = [e.pick(r, f"id{i}") for r in (1, 2) for i in range(40)]
    assert set(picks) == {"deepening", "breadth"}
    assert picks == [make(llm, operations=("deepening", "breadth")).pick(r, f"id{i}") for r in (1, 2) for i in range(40)]
    assert picks[:40] != picks[40:]  # a new round draws anew
    with pytest.raises(UserError, match="unknown operation.*widening"):
        build(ev.Settings, flags={"operations": ["deepening", "widening"]})


def test_rule_helpers():
    assert ev.parse_evolution("#Rewritten Prompt#: Do X.") == "Do X."
    assert ev.parse_evolution("**Rewritten Prompt:** \"Do X.\"") == "Do X."
    assert ev.parse_evolution("Created Prompt: Do Y") == "Do Y"
    assert ev.copied_scaffolding("Do X, as the #Given Prompt# says") == "#Given Prompt#"
    assert ev.copied_scaffolding("Describe the created prompt") == "created prompt"
    assert ev.copied_scaffolding("Describe a prompt engineer's day") is None
    assert ev.parse_equality("Not Equal") == "not_equal"
    assert ev.parse_equality("equal.") == "equal"
    assert ev.parse_equality("They are the same") == "equal"
    assert ev.parse_equality("hmm") == "unclear"
    assert ev.refusal("抱歉，我无法回答。")["phrase"] == "抱歉，我无法"
    assert ev.refusal("I'm sorry, but I can't help with that.")["phrase"] == "I'm sorry, but"
    assert ev.refusal("Sorry! " + "word " * 100) is None  # a long answer that apologises is not a refusal
    assert ev.stopwords_only("... and the, of!") and not ev.stopwords_only("The cat sat.")
    assert not ev.stopwords_only("猫")


def test_no_answer_mode(tmp_path):
    llm = ScriptedLLM(script)
    params = GenParams(max_tokens=64, seed=0)
    e = ev.EvolInstruct(llm, params, teacher=None, rounds=1, chunk_size=8, progress=False)
    out = tmp_path / "na"
    e.run(RunDir(out, "evolve", {"t": 2}), pool_of(tmp_path))
    recs, rejs = load(out)
    # without answers, the refusal and stop-word rules cannot fire: charlie and delta survive
    assert sorted(marker(r.instruction) for r in recs) == ["alpha", "charlie", "delta"]
    assert all(not r.has_answer for r in recs)


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path):
    ref_out, _, _ = run_evolve(tmp_path, ScriptedLLM(script), name="ref")
    pool = pool_of(tmp_path)
    out = tmp_path / "resumed"
    cache = tmp_path / "cache.sqlite"
    # part 1 takes three calls (evolve, judge, answer); the fifth call is inside part 2
    first = CachedLLM(Interrupting(ScriptedLLM(script), 5), RequestCache(cache))
    with pytest.raises(KeyboardInterrupt):
        make(first).run(RunDir(out, "evolve", {"t": 1}), pool)
    assert (out / ".parts" / "part-000001.done").exists() and not (out / ".parts" / "part-000002.done").exists()
    assert not (out / "records.jsonl").exists()

    inner = ScriptedLLM(script)
    again = CachedLLM(inner, RequestCache(cache))
    make(again).run(RunDir(out, "evolve", {"t": 1}), pool)
    assert again.usage.cache_hits >= 1  # the interrupted part's evolution came from the cache
    for name in ("records.jsonl", "rejected.jsonl"):
        assert (out / name).read_text() == (ref_out / name).read_text()
    st, ref = (json.loads((d / "stats.json").read_text()) for d in (out, ref_out))
    assert st["stages"] == ref["stages"] and st["extra"]["pass_rate"] == ref["extra"]["pass_rate"]


def test_arguments(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    evolve_cmd.add_arguments(p)
    a = p.parse_args(["--out", "x"])
    s = settings_from(a, ev.Settings)
    assert (s.rounds, s.answer, a.seeds, s.chunk_size) == (4, True, "seeds/175.jsonl", 32)
    assert tuple(s.operations) == ev.OPERATIONS
    assert settings_from(p.parse_args(["--out", "x", "--no-answer"]), ev.Settings).answer is False
    # a YAML file < --set < the flags, each layer named when it is wrong
    cfg = tmp_path / "evolve.yaml"
    cfg.write_text("rounds: 2\noperations: [deepening]\nchunk_size: 8\n")
    s = settings_from(p.parse_args(["--out", "x", "--config", str(cfg), "--set", "rounds=3", "--operations", "breadth,deepening",
                                    "--operations", "breadth"]), ev.Settings)
    assert (s.rounds, s.operations, s.chunk_size) == (3, ["breadth", "deepening"], 8)
    assert settings_from(p.parse_args(["--out", "x", "--config", str(cfg), "--rounds", "5", "--set", "rounds=3"]), ev.Settings).rounds == 5
    cfg.write_text("round: 2\n")
    with pytest.raises(UserError, match=r"evolve.yaml: unknown key 'round' \(did you mean 'rounds'\?\)"):
        settings_from(p.parse_args(["--out", "x", "--config", str(cfg)]), ev.Settings)
    with pytest.raises(UserError, match=r"command line: --chunk-size: Input should be greater than or equal to 1"):
        settings_from(p.parse_args(["--out", "x", "--chunk-size", "0"]), ev.Settings)
    with pytest.raises(UserError, match=r"--set: 'rounds': Input should be a valid integer"):
        settings_from(p.parse_args(["--out", "x", "--set", "rounds=many"]), ev.Settings)
