"""Self-Instruct: parsing, filters, the novelty index, the bootstrap loop, alpaca mode and resume."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re

import pytest

from datagen.core.errors import InputError
from datagen.curate.stages.instructions import check_instruction
from datagen.generate.novelty import NoveltyIndex, best_match_bruteforce, lcs_length, lcs_length_dp, rouge_l, rouge_l_tokens
from datagen.core.formats import to_alpaca
from datagen.generate.self_instruct import SelfInstruct
from datagen.generate.self_instruct_settings import Settings
from datagen.generate.self_instruct_parsing import (
    clean_instances, load_seed_tasks, parse_alpaca_tasks, parse_instances, parse_tasks, parse_yes_no,
)
from datagen.llm.base import GenParams
from datagen.llm.cache import CachedLLM, RequestCache
from datagen.core.record import Record
from datagen.core.rundir import RunDir
from datagen.core.text import count_words_or_chars, detect_language, is_cjk, tokens
from tests.conftest import DATA
from tests.scripted import ScriptedLLM

SEEDS = DATA / "seed_tasks.jsonl"

# -- a scripted model that behaves like a (cooperative) Self-Instruct generator ------------------
SPECIAL_TASKS = [
    "Summarize the main idea of the following paragraph in two sentences.",
    "Draw a picture of a cat sitting on a mat.",  # blacklisted
    "Hi there.",  # too short
    '"Quoted" instructions are weird things to start with.',  # punctuation
    "Write a program that sorts a list of numbers.",  # write a program
    "Give three tips for staying very healthy.",  # near-duplicate of seed_task_1
    "Classify the sentiment of the given movie review as positive or negative.",  # classification
    "Repeat the given word back exactly, as an echo.",  # one instance has input == output
    "Resolve the conflict between these two statements carefully.",  # conflicting outputs
    "Leave the blank answer for this odd request please.",  # only empty outputs -> no instance
    "Tell me whether this ambiguous statement is sarcastic.",  # unparseable classification answer
]
VERBS = ["Describe", "Explain", "Compare", "List", "Rank", "Evaluate", "Outline", "Critique"]
WORDS = (
    "river mountain economy battery language garden protocol violin harbor theorem glacier market "
    "festival algorithm pottery satellite orchard vaccine tunnel poetry bicycle volcano museum "
    "currency desert compiler lantern telescope recipe archive meadow engine canyon ballet pepper "
    "stadium fossil dialect magnet quartz sonnet ferry cactus tariff kernel spindle lagoon"
).split()


def fresh_tasks(key: str, n: int = 3) -> list[str]:
    rng = random.Random(key)
    return [f"{rng.choice(VERBS)} {' '.join(rng.sample(WORDS, 6))}." for _ in range(n)]


def scripted_answer(req, params) -> str:
    prompt = req.messages[-1][1]
    key = hashlib.sha1(prompt.encode()).hexdigest()
    if prompt.startswith("Come up with a series of new tasks"):
        n = len(re.findall(r"^Task \d+:", prompt, re.M))
        lines = SPECIAL_TASKS + fresh_tasks(key)
        lines.append("Explain in detail " + "why " * 500)  # cut by max_tokens: truncated
        return "Here are more tasks:\n" + "\n".join(f"Task {n + 1 + i}: {t}" for i, t in enumerate(lines))
    if prompt.startswith("You are asked to come up with a set of"):
        blocks = [
            ("Give a synonym for the given word.", "happy", "joyful"),
            ("Draw a map of your town.", "<noinput>", "I cannot draw."),  # blacklisted
            ("Name the largest ocean on Earth.", "<noinput>", "The Pacific Ocean."),
            ("Repeat this very word back to me now.", "echo", "echo"),  # input == output
            ("Give three tips for staying very healthy.", "<noinput>", "Sleep."),  # near-dup of a seed
        ] + [(t, "<noinput>", f"answer {i}") for i, t in enumerate(fresh_tasks(key, 2))]
        body = "".join(f"###\n{i}. Instruction: {a}\n{i}. Input:\n{b}\n{i}. Output:\n{c}\n" for i, (a, b, c) in enumerate(blocks, start=4))
        return body + "###\n11. Instruction: Explain the theory\n11. Input:"  # no output: unparsed
    task = prompt.rstrip().splitlines()[-2][len("Task: "):] if "Is it classification?" in prompt else _last_task(prompt)
    if "Is it classification?" in prompt:
        if "ambiguous" in task:
            return "Hmm, hard to say."
        return "Yes" if task.startswith("Classify") else "No"
    if "Class label" in prompt.splitlines()[-1]:
        return "Class label: Positive\nInput: I loved every minute of it.\nClass label: Negative\nInput: A dull, slow film."
    if "echo" in task:
        return "Example 1\nInput: hello\nOutput: hello\nExample 2\nInput: world\nOutput: WORLD!"
    if "conflict" in task:
        return "Example 1\nInput: A is true. B is false.\nOutput: A wins.\nExample 2\nInput: A is true. B is false.\nOutput: B wins.\nExample 3\nInput: X and Y.\nOutput: Both hold."
    if "blank" in task:
        return "Example 1\nInput: something\nOutput:\nExample 2\nInput: other\nOutput:"
    return f"Example 1\nInput: sample input {key[:6]}\nOutput: sample output {key[6:12]}\nExample 2\nInput: second {key[:4]}\nOutput: another {key[4:8]} " + "word " * 500


def _last_task(prompt: str) -> str:
    tasks = re.findall(r"^Task: (.*)$", prompt, re.M)
    return tasks[-1] if tasks else ""


PARAMS = GenParams(max_tokens=300, temperature=0.7, seed=0)


def make(llm, mode="bootstrap", num=12, **kw) -> SelfInstruct:
    settings = Settings(num=num, mode=mode, requests_per_round=2, **kw)
    return SelfInstruct(llm, PARAMS, load_seed_tasks(SEEDS), settings)


def read_jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# -- text helpers ------------------------------------------------------------------------------
def test_text_helpers():
    assert is_cjk("秋") and is_cjk("か") and is_cjk("한") and not is_cjk("a") and not is_cjk("，")
    assert tokens("Write a poem about 秋天, in 3 lines!") == ["write", "a", "poem", "about", "秋", "天", "in", "3", "lines"]
    assert tokens("Ça va, Zoë? Привет мир") == ["ça", "va", "zoë", "привет", "мир"]
    assert count_words_or_chars("写一首诗") == 4 and count_words_or_chars("Write a short poem.") == 4
    assert detect_language("写一首关于秋天的诗") == "zh"
    assert detect_language("秋の詩を書いてください") == "ja"
    assert detect_language("가을에 관한 시를 써 주세요") == "ko"
    assert detect_language("Write a poem about 秋天 in English please") == "latin"
    assert detect_language("1234 !!") == ""


def test_instruction_filters():
    assert check_instruction("Draw a picture of a cat.") == ("blacklisted", {"word": "draw"})
    assert check_instruction("Please go  to the shop and buy milk.")[0] == "blacklisted"
    assert check_instruction("Explain the profile of a typical user.") is None  # 'file' only as a whole word
    assert check_instruction("请生成一张猫的图片。") == ("blacklisted", {"word": "图片"})
    assert check_instruction("Hi there.")[0] == "too_short"
    assert check_instruction("写一首关于秋天的诗。") is None  # 9 characters, not "one word"
    assert check_instruction("秋天") == ("too_short", {"words": 2, "min": 3})
    assert check_instruction(" ".join(["word"] * 151))[0] == "too_long"
    assert check_instruction("「引号」开头的任务不好。")[0] == "starts_with_punctuation"
    assert check_instruction("Write a program to add two numbers.")[0] == "write_a_program"


# -- ROUGE-L and the novelty index --------------------------------------------------------------
def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat on a mat") = "the cat on mat" = 4; F = 2*4/(6+5)
    assert rouge_l("The cat sat on the mat.", "the cat on a mat") == pytest.approx(8 / 11)
    assert lcs_length("ABCBDAB", "BDCABA") == 4
    assert rouge_l("identical text here", "Identical text, here!") == 1.0
    assert rouge_l("abc", "") == 0.0
    # Chinese: characters are tokens. LCS("写一首关于秋天的诗", "写一首关于春天的诗") = 8 of 9
    assert rouge_l("写一首关于秋天的诗", "写一首关于春天的诗") == pytest.approx(16 / 18)
    # an [a-z0-9]-only tokenizer would see two empty strings here
    assert rouge_l("今天天气很好", "我喜欢编程") == 0.0
    rng = random.Random(1)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == lcs_length_dp(a, b)


def test_novelty_chinese():
    idx = NoveltyIndex(0.7)
    idx.add("a", "写一首关于秋天的诗。")
    idx.add("b", "把下面的句子翻译成英文。")
    m = idx.check("写一首关于春天的诗")
    assert m and m.id == "a" and m.score > 0.7
    m = idx.check("请把下面的句子翻译成英文")
    assert m and m.id == "b" and m.score > 0.7
    assert idx.check("解释量子计算的基本原理。") is None
    assert idx.check("列出三种常见的水果") is None


def _pool_sentence(rng: random.Random) -> str:
    base = rng.choice([
        "write a short poem about the sea",
        "translate the sentence into french",
        "list three tips for better sleep",
        "写一首关于秋天的诗",
        "把下面的句子翻译成英文",
    ]).split(" ") if rng.random() < 0.5 else [rng.choice("abcdefgh") for _ in range(rng.randint(1, 12))]
    toks = list(base) if len(base) > 1 else list(base[0])
    for _ in range(rng.randint(0, 3)):  # small random edits make near-duplicates of varying degree
        op = rng.random()
        if op < 0.4 and toks:
            toks[rng.randrange(len(toks))] = rng.choice(["the", "a", "very", "秋", "春", "x"])
        elif op < 0.7:
            toks.insert(rng.randrange(len(toks) + 1), rng.choice(["please", "now", "the", "诗", "y"]))
        elif toks:
            toks.pop(rng.randrange(len(toks)))
    return " ".join(toks)


@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.9])
def test_novelty_index_equals_bruteforce(threshold):
    rng = random.Random(threshold)
    idx = NoveltyIndex(threshold)
    pool: list[tuple[str, str]] = []
    for i in range(400):  # crosses several re-index points (64, 128, 256)
        text = _pool_sentence(rng)
        q = _pool_sentence(rng)
        expected = best_match_bruteforce(pool, q, threshold)
        got = idx.best_match(q)
        if expected is None:
            assert got is None, (q, got)
        else:
            assert got is not None and got[1] == pytest.approx(expected[1]), (q, got, expected)
            assert rouge_l_tokens(tokens(q), tokens(idx.text_of(got[0]))) == pytest.approx(expected[1])
            assert got[0] == expected[0]  # ties go to the earliest added in both
        idx.add(f"t{i}", text)
        pool.append((f"t{i}", text))
    assert idx.stats["lcs_computed"] < idx.stats["probes"] * len(pool)  # it did prune


# -- parsing ------------------------------------------------------------------------------------
def test_parse_tasks():
    text = "Sure! Here are more:\nTask 9: Write a haiku about autumn.\n**Task 10:** Summarize the paragraph\nin one sentence.\n\nTask 11: \"Name three fruits.\"\n\nI hope this helps!"
    assert parse_tasks(text) == ["Write a haiku about autumn.", "Summarize the paragraph in one sentence.", "Name three fruits."]
    assert parse_tasks("9. Do this thing now\n10) Do that thing now") == ["Do this thing now", "Do that thing now"]
    assert parse_tasks("I am a language model and I like tasks.") == []
    assert parse_tasks("任务 9：写一首诗。") == ["写一首诗。"]


def test_parse_instances_and_yes_no():
    assert parse_instances("Example 1\nInput: hi\nOutput: salut\nExample 2\nInput: <noinput>\nOutput: bonjour\ntout le monde", False) == [
        {"input": "hi", "output": "salut"}, {"input": "", "output": "bonjour\ntout le monde"},
    ]
    assert parse_instances("Just the answer.", False) == [{"input": "", "output": "Just the answer."}]
    assert parse_instances("Just the answer.", True) == []
    assert parse_instances("Input: great\nClass label: Positive\nInput: awful\nClass label: Negative", True) == [
        {"input": "great", "output": "Positive"}, {"input": "awful", "output": "Negative"},
    ]
    assert parse_instances("Input: a\nOutput: b\nTask: Something else\nInput: c\nOutput: d", False) == [{"input": "a", "output": "b"}]
    assert [parse_yes_no(x) for x in ("Yes.", "no, it is not", "Sure thing", "是", "不是")] == [True, False, None, True, False]
    blocks = parse_alpaca_tasks("###\n4. Instruction: Give a synonym.\n4. Input:\nhappy\n4. Output:\njoyful\n###\n5. Instruction: Broken")
    assert blocks == [{"instruction": "Give a synonym.", "input": "happy", "output": "joyful"}, "5. Instruction: Broken"]


def test_clean_instances():
    kept, dropped = clean_instances([
        {"input": "a", "output": "x"},
        {"input": "same", "output": "Same"},
        {"input": "b", "output": " "},
        {"input": "a", "output": "x"},
        {"input": "c", "output": "1"},
        {"input": "c", "output": "2"},
    ])
    assert kept == [{"input": "a", "output": "x"}]
    assert sorted(r for _, r, _ in dropped) == ["conflicting_outputs", "conflicting_outputs", "duplicate_instance", "empty_output", "input_equals_output"]


# -- seeds --------------------------------------------------------------------------------------
def test_load_seeds_and_errors(tmp_path):
    seeds = load_seed_tasks(SEEDS, limit=3)
    assert [s["id"] for s in seeds] == ["seed_task_0", "seed_task_1", "seed_task_2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "ok task here", "instances": [{"input": "", "output": "x"}]}) + "\n"
                   + json.dumps({"instruction": "second", "instances": [{"input": "", "outptu": "x"}]}) + "\n")
    with pytest.raises(InputError) as e:
        load_seed_tasks(bad)
    assert e.value.line == 2 and e.value.field == "instances[0].outptu" and str(bad) in str(e.value)
    bad.write_text('{"instruction": "x", "instances": [{"output": "y"}], "is_classification": "no"}\n')
    with pytest.raises(InputError, match="is_classification"):
        load_seed_tasks(bad)


def test_bundled_seeds_resolve_from_any_cwd(tmp_path, monkeypatch):
    from datagen.core.assets import resolve_seed_file

    monkeypatch.chdir(tmp_path)
    path = resolve_seed_file("seeds/175.jsonl")
    if not path.exists():
        pytest.skip("seeds/175.jsonl not bundled yet")
    assert len(load_seed_tasks(path)) == 175


# -- the loop -----------------------------------------------------------------------------------
def run_loop(tmp_path, name, llm, mode="bootstrap", num=12, **kw):
    gen = make(llm, mode, num, **kw)
    run = RunDir(tmp_path / name, "self-instruct", {"test": name})
    return gen.run(run, {}), tmp_path / name


def test_bootstrap_loop(tmp_path):
    llm = ScriptedLLM(scripted_answer)
    res, out = run_loop(tmp_path, "run", llm)
    assert res.stop_reason == "done" and res.accepted == 12
    records = [Record.model_validate(r) for r in read_jsonl(out / "records.jsonl")]
    rejected = read_jsonl(out / "rejected.jsonl")
    by_reason: dict[str, list] = {}
    for r in rejected:
        by_reason.setdefault(r["reason"], []).append(r)

    task_ids = {r.meta["task_id"] for r in records}
    assert len(task_ids) == 12
    instructions = {r.meta["fields"]["instruction"] for r in records}
    assert "Summarize the main idea of the following paragraph in two sentences." in instructions
    assert not any(r.meta["fields"]["instruction"].startswith(("Find the antonym", "Give three tips")) for r in records)  # no seeds

    assert by_reason["blacklisted"][0]["evidence"]["word"] == "draw"
    assert by_reason["too_short"][0]["record"]["messages"][0]["content"] == "Hi there."
    assert by_reason["starts_with_punctuation"] and by_reason["write_a_program"]
    dup = [r for r in by_reason["near_duplicate"] if r["evidence"]["closest_id"] == "seed_task_1"][0]
    assert dup["evidence"]["closest_instruction"] == "Give three tips for staying healthy."
    assert dup["evidence"]["rouge_l"] > 0.7 and dup["evidence"]["same_round"] is False
    assert any(r["evidence"]["same_round"] for r in by_reason["near_duplicate"])  # repeated within the round
    assert all(r["record"]["messages"][0]["content"].startswith("Explain in detail why") for r in by_reason["truncated"] if r["stage"] == "self-instruct")
    assert by_reason["surplus"]  # round 2 proposes more than the 1 task still needed

    # classification: output-first instances; labels become outputs
    cls = [r for r in records if r.meta["is_classification"]]
    assert {r.response for r in cls} == {"Positive", "Negative"}
    assert all(r.flags["is_classification_parsed"] for r in cls)
    amb = [r for r in records if "ambiguous" in r.instruction]
    assert amb and amb[0].meta["is_classification"] is False and amb[0].flags["is_classification_parsed"] is False
    # instance post-processing
    echo = [r for r in records if "echo" in r.meta["fields"]["instruction"]]
    assert [r.meta["fields"]["input"] for r in echo] == ["world"]
    assert by_reason["input_equals_output"][0]["stage"] == "self-instruct.instances"
    conflict = [r for r in records if "conflict" in r.meta["fields"]["instruction"]]
    assert [r.meta["fields"]["input"] for r in conflict] == ["X and Y."]
    assert len(by_reason["conflicting_outputs"]) == 2
    assert by_reason["no_valid_instance"][0]["evidence"]["dropped"] == {"empty_output": 2}
    assert len(by_reason["empty_output"]) == 2
    inst_trunc = [r for r in by_reason["truncated"] if r["stage"] == "self-instruct.instances"]
    assert inst_trunc and all(r["record"]["messages"][-1]["content"].startswith("another") for r in inst_trunc)

    # record shape and alpaca export
    r = next(x for x in records if x.meta["fields"]["input"])
    assert r.source == "self-instruct" and r.messages[0].content == f"{r.meta['fields']['instruction']}\n\n{r.meta['fields']['input']}"
    assert set(r.meta["prompt_templates"]) == {"self_instruct/tasks", "self_instruct/is_classification", "self_instruct/instances_input_first"}
    assert r.meta["generator_model"] == "scripted" and r.meta["round"] in (1, 2)
    row = to_alpaca(r)
    assert row["instruction"] == r.meta["fields"]["instruction"] and row["input"] == r.meta["fields"]["input"]

    stats = json.loads((out / "stats.json").read_text())
    st = stats["stages"]["self-instruct"]
    assert st["out"] == 12 and st["in"] == st["out"] + st["rejected_total"]
    assert st["rejected"]["near_duplicate"] >= 1 and stats["extra"]["rounds"] == 2
    assert stats["extra"]["llm"]["requests"] == len(llm.calls)
    si = stats["stages"]["self-instruct.instances"]
    assert si["in"] == si["out"] + si["rejected_total"] and si["out"] == len(records)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stop_reason"] == "done" and "self_instruct/tasks" in manifest["prompt_templates"]


def test_examples_include_machine_tasks_and_are_seeded(tmp_path):
    llm = ScriptedLLM(scripted_answer)
    gen = make(llm, num=40)
    first = gen.task_request(1, 0)
    assert first == make(ScriptedLLM(scripted_answer), num=40).task_request(1, 0)  # deterministic
    assert len(re.findall(r"^Task \d+:", first.messages[0][1], re.M)) == 8  # 8 seeds: pool empty
    gen.machine = [("m1", "Machine task number one here."), ("m2", "Machine task number two here.")]
    second = gen.task_request(2, 0).messages[0][1]
    assert "Machine task number one here." in second and "Machine task number two here." in second
    assert len(re.findall(r"^Task \d+:", second, re.M)) == 8  # 6 seeds + 2 machine


def test_alpaca_mode(tmp_path):
    res, out = run_loop(tmp_path, "alp", ScriptedLLM(scripted_answer), mode="alpaca", num=6)
    assert res.accepted == 6
    records = [Record.model_validate(r) for r in read_jsonl(out / "records.jsonl")]
    reasons = [r["reason"] for r in read_jsonl(out / "rejected.jsonl")]
    assert {"blacklisted", "near_duplicate", "unparsed_task", "no_valid_instance", "input_equals_output"} <= set(reasons)
    syn = next(r for r in records if r.meta["fields"]["instruction"] == "Give a synonym for the given word.")
    assert syn.messages[0].content == "Give a synonym for the given word.\n\nhappy" and syn.response == "joyful"
    assert syn.meta["prompt_templates"].keys() == {"self_instruct/alpaca"} and syn.meta["is_classification"] is None
    ocean = next(r for r in records if r.meta["fields"]["instruction"].startswith("Name the largest ocean"))
    assert ocean.meta["fields"]["input"] == ""


def test_weak_model_run_ends(tmp_path):
    llm = ScriptedLLM(lambda req, params: "I am sorry, I can not help with that.")
    res, out = run_loop(tmp_path, "weak", llm, num=5, patience=3)
    assert res.stop_reason == "stalled" and res.accepted == 0 and res.rounds == 3
    assert (out / "records.jsonl").read_text() == ""
    assert {r["reason"] for r in read_jsonl(out / "rejected.jsonl")} == {"no_tasks_parsed"}
    res, _ = run_loop(tmp_path, "weak2", ScriptedLLM(lambda r, p: "Task 9: Hi."), num=5, max_rounds=2, patience=9)
    assert res.stop_reason == "max_rounds" and res.rounds == 2


class Interrupt(KeyboardInterrupt):
    pass


def test_resume_matches_uninterrupted_run(tmp_path):
    # reference: one uninterrupted run
    ref, ref_out = run_loop(tmp_path, "ref", ScriptedLLM(scripted_answer), num=20)
    assert ref.rounds >= 3

    cache = RequestCache(tmp_path / "cache.sqlite")
    sealed = tmp_path / "res" / ".parts" / "part-000001.done"  # round 1 (no part 0: nothing is read)
    state = {"round1_calls": None, "classify": 0}

    def flaky(req, params):  # interrupts the second classification request of round 2
        if sealed.exists():
            if state["round1_calls"] is None:
                state["round1_calls"] = len(first.calls) - 1
            if "Is it classification?" in req.messages[-1][1]:
                state["classify"] += 1
                if state["classify"] == 2:
                    raise Interrupt()
        return scripted_answer(req, params)

    first = ScriptedLLM(flaky)
    with pytest.raises(Interrupt):
        run_loop(tmp_path, "res", CachedLLM(first, cache), num=20)
    assert (tmp_path / "res" / ".parts" / "part-000001.done").exists()
    assert not (tmp_path / "res" / ".parts" / "part-000002.done").exists()
    assert not (tmp_path / "res" / ".parts" / "part-000000.done").exists()

    second = ScriptedLLM(scripted_answer)
    res, out = run_loop(tmp_path, "res", CachedLLM(second, cache), num=20)
    assert res.accepted == ref.accepted and res.rounds == ref.rounds
    assert (out / "records.jsonl").read_text() == (ref_out / "records.jsonl").read_text()
    assert (out / "rejected.jsonl").read_text() == (ref_out / "rejected.jsonl").read_text()
    # round 1 (a sealed part) was not re-sent; round 2's task requests, finished before the
    # interrupt, were cache hits. Only the interrupted classification batch is sent again.
    ref_calls = json.loads((ref_out / "stats.json").read_text())["extra"]["llm"]["requests"]
    done_before = state["round1_calls"] + 2  # round 1, and round 2's two task requests
    assert not set(first.calls[:done_before]) & set(second.calls)
    assert len(second.calls) == ref_calls - done_before


def test_an_unfinished_run_with_rounds_numbered_from_zero_is_refused_not_misread(tmp_path):
    """Runs written before the runner numbered rounds from part 0; their part 0 would be read as
    a read stage and every round shifted by one."""
    from datagen.core.errors import UserError
    from datagen.core.stats import Stats

    run = RunDir(tmp_path / "old", "self-instruct", {"test": "old"})
    run.write_part(0, [], [], Stats())
    gen = make(ScriptedLLM(scripted_answer), "bootstrap", 12)
    with pytest.raises(UserError, match="older version.*--force"):
        gen.run(run, {})
    run.release()


def test_cli_end_to_end_with_bad_seed(tmp_path, monkeypatch):
    """cli() wiring with a scripted backend, and a located error for a bad seed file."""
    from datagen.commands import self_instruct
    from datagen.core.cli import run_command

    p = argparse.ArgumentParser()
    self_instruct.add_arguments(p)
    p.set_defaults(func="datagen.commands.self_instruct:cli")
    monkeypatch.setattr("datagen.llm.make_llm", lambda cfg: ScriptedLLM(scripted_answer))
    args = p.parse_args(["--seeds", str(SEEDS), "--out", str(tmp_path / "o"), "--num", "3", "--no-cache", "--requests-per-round", "1", "--max-new-tokens", "300"])
    assert run_command(args) == 0
    assert len({json.loads(x)["meta"]["task_id"] for x in (tmp_path / "o" / "records.jsonl").read_text().splitlines()}) == 3
    assert run_command(args) == 0  # already complete

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "instances": "nope"}\n')
    args = p.parse_args(["--seeds", str(bad), "--out", str(tmp_path / "o2"), "--num", "3", "--no-cache"])
    assert run_command(args) == 2
    assert not (tmp_path / "o2").exists()
