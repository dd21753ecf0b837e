"""Each heuristic reason code fires on its fixture, and none fires on clean records."""

import pytest

from datagen.curate.config import HeuristicsConfig
from datagen.curate.stages.heuristics import CODES, Heuristics
from datagen.core.record import Record

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
    "language_not_allowed": Record.from_turns("Расскажи о Москве.", "Москва — столица России и крупнейший город страны, основанный в двенадцатом веке."),
    "blacklisted_task": Record.from_turns("Draw a picture of a cat sitting on a mat.", "Here is a description of a cat sitting on a mat."),
}

CFG = HeuristicsConfig(min_response_words=2, max_response_words=100, blacklisted_task=True, languages=["en", "zh"])


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
    assert rec.flags["heuristics_evidence"]["refusal"]["phrase"].lower() == "i'm sorry, but"
    assert rec.scores["response_words"] == 11  # "I'm" and "can't" are two tokens each
    reason, ev = stage.verdict(rec)
    assert ev["phrase"].lower() == "i'm sorry, but"


@pytest.mark.parametrize("text,expected", [
    ("抱歉，我无法回答这个问题。", "refusal"),
    ("作为一个AI，我没有个人观点。", "refusal"),
])
def test_chinese_refusals(text, expected):
    assert codes(Record.from_turns("你怎么看这件事？", text)) == [expected]


@pytest.mark.parametrize("answer", [
    "I'm sorry, I don't know.",
    "I can't help you with that.",
    "As an AI language model, I do not have opinions. However, many people think otherwise.",
    "Thanks for asking. I'm unable to provide medical advice; please see a doctor.",
    "对不起，我不能帮你做这件事。",
])
def test_refusals_caught(answer):
    assert codes(Record.from_turns("Please help.", answer)) == ["refusal"]


@pytest.mark.parametrize("instruction,answer", [
    # the answer the task asked for, with a weak phrase inside: not a refusal
    ("Write a short, friendly email declining the meeting invitation and proposing another time.",
     ("Hi Dana,\n\nThanks for the invite. Unfortunately I have a client call at 10:30 on Thursday, so I can't join the "
      "full review. Would Thursday afternoon or Friday morning work instead?\n\nBest,\nAlex")),
    ("顾客投诉外卖送达晚了一个小时。请以商家的身份写一段道歉回复。",
     "亲爱的顾客，您好！非常抱歉让您等了这么久，还吃到了凉掉的饭菜，我们深表歉意。我们已为您申请全额退款。"),
    ("My dog is sick. What should I do?", "Take her to a vet today; I'm sorry to say that waiting rarely helps with a sick dog."),
])
def test_weak_phrases_inside_a_real_answer_are_not_refusals(instruction, answer):
    assert "refusal" not in codes(Record.from_turns(instruction, answer))


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


@pytest.mark.parametrize("tail", [
    "\n\nThank you for considering my request.\n\nWarmly,\nSam",  # sign-off and name
    "\n\nBest regards,\nJordan Ellis\nHIST 240, Section 2",
    "\n\n3. Which treaty ended the war?\n   Answer: A) Treaty of Paris",  # a short label
    "\n\n恳请批准，谢谢！\n\n张伟",
])
def test_a_short_closing_line_is_not_a_truncation(tail):
    assert "truncated" not in codes(Record.from_turns("Write a letter.", LONG_EN + tail))


@pytest.mark.parametrize("tail", [" As a rough rule of", "\nThe", " and the next step is to measure the", "\nFirst, then,"])
def test_cut_prose_is_a_truncation(tail):
    assert codes(Record.from_turns("Explain.", LONG_EN + tail)) == ["truncated"]


def test_blacklist_is_opt_in():
    """Self-Instruct's list ("map", "file", "graph"...) would drop "hash map" and "graph" tasks."""
    assert codes(FIXTURES["blacklisted_task"], HeuristicsConfig()) == []


def test_checks_can_be_switched_off():
    off = HeuristicsConfig(min_response_words=None, max_response_words=None, refusal=False, echo=False, truncated=False,
                           language_mismatch=False, blacklisted_task=False, empty_response=False)
    for code, rec in FIXTURES.items():
        assert codes(rec.model_copy(deep=True), off) == [], code


# -- languages ------------------------------------------------------------------------------------
def test_language_mismatch_tells_languages_of_one_script_apart():
    ev = Heuristics(HeuristicsConfig()).flag(Record.from_turns(
        "Describe the city of Paris in a few sentences.",
        "Paris est la capitale de la France. Elle est célèbre pour la tour Eiffel et le musée du Louvre."))["language_mismatch"]
    assert ev["instruction"] == "en" and ev["response"] == "fr" and min(ev["confidence"]) >= 0.5
    # a translation request, an answer that is code, a short answer: not judged
    for ins, resp in [("Translate into French: the cat sleeps.", "Le chat dort sur le canapé depuis ce matin, comme toujours."),
                      ("Écris une fonction Python qui additionne une liste.", "```python\ndef total(values):\n    return sum(values)\n```"),
                      ("Quelle est la capitale de la France ?", "Paris."),
                      ("请介绍一下东京。", "東京は日本の首都で、世界でも有数の大都市です。"),
                      # the instruction asks in its first paragraph, in English; the text it quotes is French
                      ("Summarize the following review in one sentence.\n\nLe restaurant était bruyant, mais les plats étaient "
                       "délicieux et le service très attentionné. Nous reviendrons avec plaisir.",
                       "The restaurant was noisy, but the food was delicious and the service attentive.")]:
        assert "language_mismatch" not in Heuristics(HeuristicsConfig()).flag(Record.from_turns(ins, resp)), ins


def test_language_keep_list_evidence_and_flag():
    stage = Heuristics(HeuristicsConfig(languages="en, ZH"))  # a comma-separated string, any case
    assert stage.config.languages == ["en", "zh"]
    ru = FIXTURES["language_not_allowed"].model_copy(deep=True)
    stage.annotate([ru], ctx=None)  # type: ignore[arg-type]
    reason, ev = stage.verdict(ru)
    assert reason == "language_not_allowed"
    assert ev["field"] == "instruction" and ev["language"] == "ru" and ev["confidence"] >= 0.5 and ev["allowed"] == ["en", "zh"]
    assert ru.flags["language"] == "ru"
    # kept: both languages allowed; a code-only answer is judged by its instruction only
    recs = [Record.from_turns("介绍一下长城。", "长城是中国古代修建的军事防御工程，绵延数千公里，是世界上最著名的建筑之一。"),
            Record.from_turns("Write a function that sums a list.", "```python\ndef total(xs):\n    return sum(xs)\n```"),
            Record.from_turns("Say something.", " ")]
    stage.annotate(recs, ctx=None)  # type: ignore[arg-type]
    assert [r.flags["language"] for r in recs] == ["zh", "en", "en"]
    assert [stage.verdict(r) and stage.verdict(r)[0] for r in recs] == [None, None, "empty_response"]
    # an English instruction that quotes a Portuguese text to classify is English
    quoted = Record.from_turns("Identify the language of the text. Choose from: English, Spanish, French, German, Italian, "
                               "Portuguese.\n\nObrigado pela ajuda, vejo você amanhã.", "Portuguese")
    assert stage.flag(quoted) == {} and quoted.flags["language"] == "en"


@pytest.mark.parametrize("bad", ["english", "e1", "", []])
def test_language_codes_are_checked(bad):
    from datagen.core.errors import UserError
    from datagen.curate.config import validate_section

    with pytest.raises(UserError, match="heuristics.languages"):
        validate_section(HeuristicsConfig, {"languages": bad}, "filter.yaml", "heuristics")
