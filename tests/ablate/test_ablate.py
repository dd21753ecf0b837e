"""``datagen ablate``: arms, equal steps, the two-order win rate, resuming, and a tiny real run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from datagen.ablate import AblationSettings
from datagen.ablate.arms import build_arms, random_arm
from datagen.ablate.runs import answer_limit, judge_arm, strict_scores, train_config
from datagen.ablate.summary import composition, near_duplicate_groups, paired_defects, paired_loss, removed_by, sign_test
from datagen.core.summary import spread
from datagen.core.io import read_records
from datagen.core.writing import write_records
from datagen.llm.base import ChatRequest, GenParams, TokenLogprob
from datagen.core.record import Record
from tests.scripted import ScriptedLLM


def _pool(n: int) -> list[Record]:
    return [Record.from_turns(f"Question number {i}: what is {i} plus {i}?", f"{i} plus {i} is {2 * i}.") for i in range(n)]


def _settings(tmp_path: Path, **kw) -> AblationSettings:
    pool = tmp_path / "pool.jsonl"
    if not pool.exists():
        write_records(pool, _pool(30))
    return AblationSettings(pool=str(pool), gold=str(pool), budget=kw.pop("budget", 8), out=tmp_path / "out", **kw)


def test_random_arm_is_deterministic_per_seed():
    pool = _pool(40)
    a0, b0, a1 = random_arm(pool, 10, 0), random_arm(pool, 10, 0), random_arm(pool, 10, 1)
    assert [r.id for r in a0] == [r.id for r in b0]
    assert {r.id for r in a0} != {r.id for r in a1}
    assert len({r.id for r in a0}) == 10


def test_arms_have_equal_sizes_and_are_reproducible(tmp_path):
    """The real filter and select: 30 pool records of which 24 are exact duplicates of 6 (the
    same question repeated), so the filter leaves 6 < budget 8 and every arm gets 6."""
    pool = [Record.from_turns(f"Question number {i % 6}: what is {i % 6} plus {i % 6}?", f"{i % 6} plus {i % 6} is {2 * (i % 6)}.",
                              meta={"copy": i}) for i in range(30)]
    write_records(tmp_path / "pool.jsonl", pool)
    s = _settings(tmp_path, stages="heuristics,exact,quality", cache_dir=str(tmp_path / "cache"))
    first = build_arms(s, [0, 1, 2])
    again = build_arms(s, [0, 1, 2])
    assert {a.size for group in first.values() for a in group} == {6}
    assert all(sum(1 for _ in read_records(a.path)) == 6 for group in first.values() for a in group)
    assert [a.sha256 for a in first["random"]] == [a.sha256 for a in again["random"]]
    assert len({a.sha256 for a in first["random"]}) == 3  # a new draw per seed
    assert len({a.sha256 for a in first["curated"]}) == 1  # one selection for every seed


def test_limit_builds_every_arm_from_the_first_k_pool_records(tmp_path):
    s = _settings(tmp_path, budget=4, limit=12, stages="heuristics,exact,quality", full=True, cache_dir=str(tmp_path / "cache"))
    arms = build_arms(s, [0, 1])
    first = {r.id for r in _pool(30)[:12]}
    drawn = {name: {r.id for a in group for r in read_records(a.path)} for name, group in arms.items()}
    assert drawn["full"] == first and drawn["random"] <= first and drawn["curated"] <= first
    assert json.loads((s.out / "arms" / "curated" / "filter" / "stats.json").read_text())["stages"]["read"]["in"] == 12
    assert {a.size for a in arms["full"]} == {12} and arms["full"][0].path != Path(s.pool)


def _arms_over_refusals(tmp_path: Path, **arm: bool) -> tuple[AblationSettings, dict, set[str]]:
    """The real filter and select (no model stage but the embedding for select's diversity) over
    24 clean records and 8 refusals; the settings, the arms of seeds 0 and 1, the refusals' ids."""
    pool = _pool(24) + [Record.from_turns(f"Name a color, please ({i}).", "I'm sorry, but I can't help with that.") for i in range(8)]
    write_records(tmp_path / "pool.jsonl", pool)
    s = _settings(tmp_path, budget=10, stages="heuristics,exact,minhash,quality", cache_dir=str(tmp_path / "cache"), **arm)
    return s, build_arms(s, [0, 1]), {r.id for r in pool[24:]}


def test_filtered_arm_draws_from_the_filter_survivors_only(tmp_path):
    s, arms, refusals = _arms_over_refusals(tmp_path, filtered=True)
    assert list(arms) == ["curated", "random", "filtered"]
    for group in arms.values():
        assert {a.size for a in group} == {10}
    drawn = [{r.id for r in read_records(a.path)} for a in arms["filtered"]]
    assert all(len(d) == 10 and not d & refusals for d in drawn) and drawn[0] != drawn[1]
    assert build_arms(s, [0, 1])["filtered"][1].sha256 == arms["filtered"][1].sha256  # reproducible


def test_removed_arm_draws_from_what_the_filter_removed_only(tmp_path):
    """The positive control: the real filter, whose rejected.jsonl the arm is drawn from."""
    s, arms, refusals = _arms_over_refusals(tmp_path, removed=True)
    assert list(arms) == ["curated", "random", "removed"]
    assert [a.size for a in arms["removed"]] == [8, 8]  # the filter removed 8 < 10: the arm gets them all
    assert all({r.id for r in read_records(a.path)} == refusals for a in arms["removed"])
    assert s.arm_names() == ["curated", "random", "removed"]


def test_answer_limit_is_twice_the_longest_gold_answer_in_model_tokens(tmp_path):
    from transformers import AutoTokenizer

    from datagen.llm.models import resolve_model

    gold = [Record.from_turns("Q1?", "Short."), Record.from_turns("Q2?", " ".join(["word"] * 60)), Record.from_turns("Q3?", "x " * 200)]
    write_records(tmp_path / "gold.jsonl", gold)
    s = AblationSettings(pool=str(tmp_path / "gold.jsonl"), gold=str(tmp_path / "gold.jsonl"), budget=2, out=tmp_path / "o",
                         recipe="lora-smollm2-cpu", answer_prompts=2)  # the third (longest) answer is never asked
    tok = AutoTokenizer.from_pretrained(str(resolve_model("smollm2")))
    longest = len(tok(gold[1].response, add_special_tokens=False)["input_ids"])
    assert answer_limit(s) == max(64, math.ceil(2 * longest / 32) * 32) > 2 * longest - 1
    s.answer_prompts = 1
    assert answer_limit(s) == 64  # "Short." is a couple of tokens: the floor


def test_every_arm_and_seed_gets_the_same_steps(tmp_path):
    s = _settings(tmp_path, steps=7, sets=["max_length=128"])
    cfgs = [train_config(s, k) for k in range(3)]
    assert {c.max_steps for c in cfgs} == {7}
    assert [c.seed for c in cfgs] == [0, 1, 2]
    assert all(c.eval_split is None and c.max_length == 128 for c in cfgs)
    # without --steps: the recipe's max_steps (lora-smollm2-cpu has 40)
    assert train_config(_settings(tmp_path), 0).max_steps == 40


def _judge_preferring(word: str) -> ScriptedLLM:
    """A judge that picks the answer containing ``word`` whichever position it is in."""

    def answer(req: ChatRequest, params: GenParams) -> str:
        text = req.messages[-1][1]
        a = text.split("Answer A:")[1].split("Answer B:")[0]
        return "A" if word in a else "B"

    return ScriptedLLM(answer)


def test_win_rate_asks_both_orders_and_counts_only_consistent_wins(tmp_path):
    s = _settings(tmp_path)
    records = _pool(3)
    mine = {"fingerprint": "m", "answers": ["GOOD one", "GOOD two", "meh"]}
    theirs = {"fingerprint": "t", "answers": ["meh", "meh", "GOOD three"]}
    judge = _judge_preferring("GOOD")
    doc = judge_arm(s, judge, "curated", 0, mine, theirs, records)
    assert len(judge.calls) == 6  # two orders per prompt
    first, second = judge.calls[0].messages[-1][1], judge.calls[1].messages[-1][1]
    assert first.index("GOOD one") < first.index("meh") and second.index("meh") < second.index("GOOD one")
    assert (doc["wins"], doc["losses"], doc["ties"]) == (2, 1, 0)
    assert doc["win_rate"] == pytest.approx(2 / 3)

    # a judge that always says "A" has pure position bias: every prompt is a split, i.e. a tie
    biased = ScriptedLLM(lambda req, params: "A")
    s2 = _settings(tmp_path / "b")
    doc = judge_arm(s2, biased, "curated", 0, mine, theirs, records)
    assert (doc["wins"], doc["losses"], doc["ties"]) == (0, 0, 3) and doc["win_rate"] == 0.5


def _biased_judge(word: str, bias: float, gap: float) -> ScriptedLLM:
    """A judge that always WRITES "A" (pure position bias in its verdicts) while its log-odds
    are ``bias`` plus ``gap`` toward the answer containing ``word``, as a real small judge's are."""

    def logprobs(req: ChatRequest, params: GenParams, text: str) -> list[TokenLogprob]:
        body = req.messages[-1][1]
        a = body.split("Answer A:")[1].split("Answer B:")[0]
        b = body.split("Answer B:")[1]
        log_odds = bias + (gap if word in a else 0.0) - (gap if word in b else 0.0)
        # P(A) + P(B) = 0.5 (the rest goes to other tokens), split by the log-odds
        pa = 0.5 / (1 + math.exp(-log_odds))
        return [TokenLogprob("A", math.log(pa), {"A": math.log(pa), " B": math.log(0.5 - pa), "The": math.log(0.3)})]

    return ScriptedLLM(lambda req, params: "A", logprobs=logprobs)


def test_debiased_win_rate_reads_a_position_biased_judges_probabilities(tmp_path):
    records = _pool(3)
    mine = {"fingerprint": "m", "answers": ["GOOD one", "GOOD two", "meh"]}
    theirs = {"fingerprint": "t", "answers": ["meh", "meh", "GOOD three"]}
    doc = judge_arm(_settings(tmp_path), _biased_judge("GOOD", bias=4.0, gap=1.0), "curated", 0, mine, theirs, records)
    # the verdicts say nothing: "A" in both orders is a split, i.e. a tie, for every prompt
    assert (doc["wins"], doc["losses"], doc["ties"]) == (0, 0, 3)
    # the probabilities do: l1 - l2 = 2 * gap toward GOOD, the bias of 4 cancels
    items = doc["judge_pairs"]["items"]
    assert [it["debiased"] for it in items] == pytest.approx([1 / (1 + math.exp(-1.0))] * 2 + [1 / (1 + math.exp(1.0))])
    assert doc["debiased_win_rate"] == pytest.approx((2 * 0.7310586 + 0.2689414) / 3)
    assert doc["judge_pairs"]["debiased_wins"] == 2 and doc["judge_pairs"]["debiased_losses"] == 1
    assert doc["position_bias"] > 0.95  # mean P(A) among A/B: the judge's lean toward the first answer
    assert doc["judge_pairs"]["choice_mass"] == pytest.approx(0.5)

    # equal answers: exactly 0.5 whatever the bias
    same = {"fingerprint": "s", "answers": ["GOOD", "GOOD", "meh"]}
    doc = judge_arm(_settings(tmp_path / "s"), _biased_judge("GOOD", bias=-3.0, gap=2.0), "curated", 0, same, same, records)
    assert doc["debiased_win_rate"] == pytest.approx(0.5)


def test_choice_log_odds_handles_missing_and_absent_choices():
    from datagen.score.pairwise import choice_log_odds, debiased_preference

    assert choice_log_odds(None) is None
    assert choice_log_odds([TokenLogprob("The", -0.1, {"The": -0.1, "It": -2.5})]) is None
    # the first position holding A or B is used; " A" and "A" add up
    pos = [TokenLogprob("**", -0.2, {"**": -0.2}), TokenLogprob("A", math.log(0.3), {"A": math.log(0.3), " A": math.log(0.1), "B": math.log(0.2)})]
    o = choice_log_odds(pos)
    assert o.log_odds == pytest.approx(math.log(0.4 / 0.2)) and o.mass == pytest.approx(0.6) and not o.bounded
    # B not listed: bounded by the lowest listed alternative
    o = choice_log_odds([TokenLogprob("A", math.log(0.9), {"A": math.log(0.9), "x": math.log(0.01)})])
    assert o.bounded and o.log_odds == pytest.approx(math.log(90))
    assert debiased_preference(o, None) is None


def test_strict_scores_treat_unreadable_verdicts_as_ties():
    items = [{"verdicts": ["A", None]}, {"verdicts": ["tie", "B"]}, {"verdicts": ["B", "A"]}, {"verdicts": ["A", "B"]}]
    assert strict_scores({"items": items}) == [0.5, 0.5, 0.0, 1.0]


def test_spread():
    assert spread([1.0, 3.0, None]) == {"count": 2, "missing": 1, "min": 1.0, "max": 3.0, "mean": 2.0, "std": pytest.approx(1.4142135)}
    assert spread([None])["mean"] is None


@pytest.mark.slow
def test_tiny_ablation_end_to_end(tmp_path, cli):
    """Curated vs random, one seed, 3 steps, the real embedded SmolLM2 for training and judging (the
    default student, Gemma 3 270M base, is what the documented run uses; too slow here)."""
    pool = _pool(16) + [
        Record.from_turns("Name a primary color.", "I'm sorry, but I can't help with that.", meta={"injected": "refusal"}),
        Record.from_turns("Name a fruit.", "我不知道这个问题的答案是什么，请问别人吧，谢谢你的理解和支持。", meta={"injected": "wrong_language"}),
    ]
    gold = [Record.from_turns(q, a) for q, a in (
        ("What is 2 plus 2?", "2 plus 2 is 4."), ("Name the capital of France.", "Paris."),
        ("What color is the sky on a clear day?", "Blue."), ("How many legs does a cat have?", "Four."),
    )]
    write_records(tmp_path / "pool.jsonl", pool)
    write_records(tmp_path / "gold.jsonl", gold, fmt="messages")
    out = tmp_path / "abl"
    args = ["ablate", "--pool", tmp_path / "pool.jsonl", "--gold", tmp_path / "gold.jsonl", "--budget", "6", "--out", out,
            "--seeds", "1", "--steps", "3", "--stages", "heuristics,exact,minhash,quality", "--recipe", "lora-smollm2-cpu", "--set", "max_length=128",
            "--set", "per_device_batch_size=2", "--set", "gradient_accumulation_steps=1", "--judge-prompts", "2",
            "--max-new-tokens", "16", "--cache-dir", tmp_path / "cache", "--llm-cache", tmp_path / "llm.sqlite"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "ablation.json").read_text())
    assert set(doc["arms"]) == {"curated", "random"}
    assert {a["steps"] for a in doc["arms"].values()} == {3}
    assert {a["records"] for a in doc["arms"].values()} == {6}
    assert doc["arms"]["curated"]["loss"]["mean"] > 0
    assert doc["base"]["model"] == "smollm2" and doc["base"]["loss"] > 0  # the untrained reference
    assert 0 <= doc["arms"]["curated"]["win_rate"]["mean"] <= 1
    # behaviour: every gold prompt answered by every model, the base included, and its defects counted
    for arm in ("curated", "random"):
        a = doc["arms"][arm]
        assert 0 <= a["defect_rate"]["mean"] <= 1 and a["defect_rate"]["count"] == 1
        assert a["defect_rate"]["mean"] >= max(a[f"defect_{k}"]["mean"] for k in ("no_stop", "refusal", "repetition"))
    assert 0 <= doc["base"]["defect_rate"] <= 1
    ev = json.loads((out / "runs" / "curated-s0" / "eval.json").read_text())
    assert len(ev["answers"]) == len(ev["stopped"]) == len(ev["defects"]) == len(gold)
    assert ev["behaviour"]["answers"] == len(gold)
    # the judge's probabilities were read (SmolLM2 puts mass on "A"/"B"), and the gold items compared one by one
    assert 0 < doc["arms"]["curated"]["debiased_win_rate"]["mean"] < 1
    paired = doc["arms"]["curated"]["paired_vs_random"]
    assert paired["items"] == len(gold) and paired["lower"] + paired["higher"] <= len(gold)
    assert doc["curation"]["defects"]["refusal"]["removed_by_filter"] == 1.0
    assert not (out / "ablation.html").exists()  # one renderer: the report's
    assert "verdict:" in r.stdout and "curated" in r.stdout and "answers up to 16 new tokens" in r.stdout
    # one page: why each pool record was kept or dropped (filter, select), and the ablation
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="ablation"' in page and 'data-run="filter"' in page and 'data-run="select"' in page
    assert re.search(r"curated: lower gold loss than random in [01] of 1 seeds", page)
    assert re.search(r"curated: lower defect rate than random in [01] of 1 seeds", page)
    assert "Overall: curated" in page
    r = cli(*args)  # rerun: everything is done already
    assert r.returncode == 0 and "training" not in r.stderr and "already trained" in r.stderr
    # another step count: the finished runs are not silently reused, nor silently redone
    r = cli(*[a if a != "3" else "2" for a in args])
    assert r.returncode == 2 and "different settings" in r.stderr and "Traceback" not in r.stderr
    r = cli(*[a if a != "3" else "2" for a in args], "--force")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {a["steps"] for a in json.loads((out / "ablation.json").read_text())["arms"].values()} == {2}


def test_near_duplicate_groups_count_a_group_reduced_to_either_member_as_handled():
    originals = _pool(3)
    copies = [r.with_answer(r.response + " Hope this helps.", meta={"injected": "near_duplicate", "injected_from": r.id}) for r in originals]
    pool = originals + copies
    # group 0 keeps its copy, group 1 its original, group 2 both; nothing else removed
    kept = {copies[0].id, originals[1].id, originals[2].id, copies[2].id}
    assert near_duplicate_groups(pool, kept) == {
        "groups": 3, "reduced_to_one": 2, "all_removed": 0, "more_than_one_kept": 1, "clean_removed_copy_kept": 1,
    }
    assert near_duplicate_groups(pool, set())["all_removed"] == 3


def test_removed_by_counts_stage_and_reason_per_tag(tmp_path):
    rows = [
        {"stage": "heuristics", "reason": "refusal", "record": {"meta": {"injected": "refusal"}}},
        {"stage": "heuristics", "reason": "refusal", "record": {"meta": {"injected": "refusal"}}},
        {"stage": "minhash", "reason": "near_duplicate", "record": {"meta": {}}},
    ]
    path = tmp_path / "rejected.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert removed_by(path) == {"clean": {"minhash/near_duplicate": 1}, "refusal": {"heuristics/refusal": 2}}
    assert removed_by(tmp_path / "missing.jsonl") == {}


def test_paired_loss_compares_item_by_item_against_the_same_seeds_random_arm():
    evals = {
        ("curated", 0): {"per_sample_loss": [1.0, 2.0, 3.0, 4.0]},
        ("random", 0): {"per_sample_loss": [1.5, 2.5, 2.0, 4.5]},
        ("curated", 1): {"per_sample_loss": [1.0, 2.0, 3.0, 4.0]},
        ("random", 1): {"per_sample_loss": [1.5, 2.5, 2.0, 4.5]},
    }
    p = paired_loss(evals, "curated", [0, 1])
    assert (p["items"], p["seeds"], p["lower"], p["higher"]) == (4, 2, 3, 1)
    assert p["mean_diff"] == pytest.approx((-0.5 - 0.5 + 1.0 - 0.5) / 4)
    assert p["ci95"][0] <= p["mean_diff"] <= p["ci95"][1]
    assert p["sign_test_p"] == pytest.approx(2 * (1 + 4) / 16)
    evals["curated", 1] = {"loss": 1.0}  # an evaluation from before per-item losses
    assert paired_loss(evals, "curated", [0, 1]) is None


def test_paired_defects_count_discordant_answers_per_prompt_and_seed():
    no_stop, loop = {"no_stop": "ran to the limit"}, {"repetition": "x 5 times"}
    evals = {
        ("curated", 0): {"defects": [{}, {}, no_stop, {**no_stop, **loop}]},
        ("random", 0): {"defects": [no_stop, {}, no_stop, {}]},
        ("curated", 1): {"defects": [{}, loop, {}, {}]},
        ("random", 1): {"defects": [loop, {}, no_stop, loop]},
    }
    p = paired_defects(evals, "curated", [0, 1])
    # seed 0: prompt 0 fewer, prompt 3 more; seed 1: prompt 1 more, prompts 0, 2, 3 fewer
    assert (p["answers"], p["seeds"], p["fewer"], p["more"]) == (8, 2, 4, 2)
    assert p["sign_test_p"] == pytest.approx(sign_test(4, 2))
    assert (p["kinds"]["no_stop"]["fewer"], p["kinds"]["no_stop"]["more"]) == (2, 1)
    assert (p["kinds"]["repetition"]["fewer"], p["kinds"]["repetition"]["more"]) == (2, 2)
    assert p["kinds"]["refusal"] == {"fewer": 0, "more": 0, "sign_test_p": 1.0}
    evals["curated", 1] = {"defects": []}  # not answered (--answer-prompts 0)
    assert paired_defects(evals, "curated", [0, 1]) is None


def test_sign_test():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(0, 10) == sign_test(10, 0)


def test_composition_reports_language_shares_and_answer_length_per_draw():
    en = [Record.from_turns("What is two plus two?", "Four, because two and two make four.")] * 3
    zh = [Record.from_turns("二加二等于几？", "二加二等于四。")]
    c = composition({"gold": [en + zh], "random": [en[:2] + zh * 2, en]})
    assert c["gold"]["share_latin"]["mean"] == 0.75 and c["gold"]["share_zh"]["mean"] == 0.25
    assert c["random"]["share_zh"]["count"] == 2 and c["random"]["share_zh"]["mean"] == 0.25  # (0.5 + 0) / 2
    assert c["random"]["share_zh"]["min"] == 0.0 and c["random"]["share_zh"]["max"] == 0.5
    assert c["gold"]["answer_words"]["mean"] == pytest.approx((3 * 7 + 6 / 1.6) / 4)  # 7 words; 6 characters


def test_the_pool_may_be_a_dataset_folder(tmp_path):
    import datasets

    folder = tmp_path / "pool-folder"
    rows = [{"instruction": r.instruction, "input": "", "output": r.response} for r in _pool(12)]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    s = AblationSettings(pool=str(folder), gold=str(folder), budget=4, out=tmp_path / "out", stages="heuristics,exact,quality",
                         full=True, cache_dir=str(tmp_path / "cache"))
    arms = build_arms(s, [0])
    assert {r.id for r in read_records(arms["full"][0].path)} == {r.id for r in _pool(12)}  # the folder's records, as a file
    assert {a.size for a in arms["random"]} == {arms["curated"][0].size}


def test_map_and_roles_apply_to_the_pool_and_the_gold_set(tmp_path):
    from datagen.ablate.arms import read_pool

    rows = [{"question": r.instruction, "reply": r.response} for r in _pool(6)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = AblationSettings(pool=str(pool), gold=str(pool), budget=2, out=tmp_path / "out", map="question=instruction,reply=output", limit=4)
    assert [r.id for r in read_pool(s)] == [r.id for r in _pool(6)[:4]]
    assert [r.response for r in s.gold_input().read(lambda _: None)] == [r.response for r in _pool(6)]
    from datagen.core.errors import InputError

    with pytest.raises(InputError):  # without the mapping the rows are not records: a located error
        AblationSettings(pool=str(pool), gold=str(pool), budget=2, out=tmp_path / "out").pool_input().read(lambda _: None)
