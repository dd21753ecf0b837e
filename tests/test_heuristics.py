"""Each heuristic reason code fires on its fixture, and none fires on clean records."""

import pytest

from datagen.filters.config import HeuristicsConfig
from datagen.filters.heuristics import CODES, Heuristics
from datagen.record import Record

LONG_EN = " ".join(["The function walks the list once and keeps a running total of the values it has seen."] * 4)

CLEAN = [
    Record.from_turns("What is the capital of France?", "The capital of France is Paris."),
    Record.from_turns("请介绍一下长城。", "长城是中国古代修建的军事防御工程，绵延数千公里，是世界上最著名的建筑之一。"),
    Record.from_turns("Translate into English: 我爱你", "I love you."),
    Record.from_turns("用Python写一个函数，返回列表的和。", "```python\ndef total(xs):\n    return sum(xs)\n```"),
    Record.from_turns("List three primary colours.", "Here they are:\n- red\n- yellow\n- blue"),
    Record.from_turns("Explain what a hash map is.", LONG_EN),
]

FIXTURES = {
    "empty_response": Record.from_turns("Say something.", "   "),
    "response_too_short": Record.from_turns("Describe the water cycle.", "Rain."),
    "response_too_long": Record.from_turns("Describe the water cycle.", "water " * 120 + "."),
    "refusal": Record.from_turns("Tell me how to pick a lock.", "I'm sorry, but I can't help with that request."),
    "echoes_instruction": Record.from_turns("Name a large animal that lives in the sea", "Name a large animal that lives in the sea"),
    "truncated": Record.from_turns("Write a long explanation.", LONG_EN, meta={"finish_reason": "length"}),
    "language_mismatch": Record.from_turns("请介绍一下长城的历史。", "The Great Wall was built over many centuries to protect the northern borders of China."),
    "blacklisted_task": Record.from_turns("Draw a picture of a cat sitting on a mat.", "Here is a description of a cat sitting on a mat."),
}

CFG = HeuristicsConfig(min_response_words=2, max_response_words=100, blacklisted_task=True)


def codes(rec: Record, cfg: HeuristicsConfig = CFG) -> list[str]:
    stage = Heuristics(cfg)
    return list(stage.flag(rec))


@pytest.mark.parametrize("code", CODES)
def test_each_code_fires_on_its_fixture(code):
    rec = FIXTURES[code].model_copy(deep=True)
    found = codes(rec)
    assert found and found[0] == code, found
    stage = Heuristics(CFG)
    stage.annotate([rec], ctx=None)  # type: ignore[arg-type]
    reason, evidence = stage.verdict(rec)
    assert reason == code and isinstance(evidence, dict)


@pytest.mark.parametrize("rec", CLEAN, ids=lambda r: r.instruction[:20])
def test_clean_records_pass(rec):
    assert codes(rec.model_copy(deep=True), HeuristicsConfig(max_response_words=100)) == []


def test_evidence_and_scores():
    rec = FIXTURES["refusal"].model_copy(deep=True)
    stage = Heuristics(CFG)
    stage.annotate([rec], ctx=None)  # type: ignore[arg-type]
    assert rec.flags["heuristics"] == ["refusal"]
    assert rec.flags["heuristics_evidence"]["refusal"]["phrase"].lower() == "i'm sorry"
    assert rec.scores["response_words"] == 11  # "I'm" and "can't" are two tokens each
    reason, ev = stage.verdict(rec)
    assert ev["phrase"].lower() == "i'm sorry"


@pytest.mark.parametrize("text,expected", [
    ("抱歉，我无法回答这个问题。", "refusal"),
    ("作为一个AI，我没有个人观点。", "refusal"),
])
def test_chinese_refusals(text, expected):
    assert codes(Record.from_turns("你怎么看这件事？", text)) == [expected]


def test_refusal_phrase_deep_in_a_long_answer_is_not_a_refusal():
    answer = LONG_EN + " I cannot stress this enough: test the edge cases."
    assert "refusal" not in codes(Record.from_turns("Explain testing.", answer), HeuristicsConfig(refusal_max_words=20))


@pytest.mark.parametrize("answer,how", [
    ("Some text here.\n```python\nprint(1)\n", "unbalanced_code_fence"),
    (LONG_EN + " and then the loop continues with the next", "ends_mid_sentence"),
])
def test_truncation_kinds(answer, how):
    rec = Record.from_turns("Explain.", answer)
    stage = Heuristics(HeuristicsConfig())
    assert stage.flag(rec)["truncated"]["how"] == how


def test_blacklist_is_opt_in():
    """Self-Instruct's list ("map", "file", "graph"...) would drop "hash map" and "graph" tasks."""
    assert codes(FIXTURES["blacklisted_task"], HeuristicsConfig()) == []


def test_checks_can_be_switched_off():
    off = HeuristicsConfig(min_response_words=None, max_response_words=None, refusal=False, echo=False, truncated=False,
                           language_mismatch=False, blacklisted_task=False, empty_response=False)
    for code, rec in FIXTURES.items():
        assert codes(rec.model_copy(deep=True), off) == [], code
