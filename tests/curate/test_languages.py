"""Language identification on labelled texts, the ``--languages`` keep-list through the CLI (with
its evidence and the report's breakdown), and token-aware lengths."""

import json
from collections import Counter

import pytest

from datagen.core import langid
from datagen.core.record import Record
from datagen.core.text import count_words_or_chars, detect_language
from datagen.curate.config import HeuristicsConfig
from datagen.curate.stages.heuristics import Heuristics
from datagen.curate.stages.tokens import count

from conftest import DATA

LABELLED = [json.loads(line) for line in (DATA / "langid.jsonl").read_text(encoding="utf-8").splitlines()]
ZH = "长城是中国古代修建的军事防御工程，东起山海关，西至嘉峪关，绵延数千公里，是世界上最著名的建筑之一。"
EN = "Regular exercise strengthens the heart and lungs, improves mood and sleep, and lowers the risk of many chronic diseases."


def test_identification_on_labelled_texts():
    """11 languages (Chinese simplified and traditional), short and long texts, mixed text and
    code with comments: at least 97% right overall (99.5% when written), 90% of each language."""
    assert len({r["lang"] for r in LABELLED}) >= 8 and len(LABELLED) >= 300
    hits = Counter(r["lang"] for r in LABELLED if langid.identify(r["text"]).code == r["lang"])
    totals = Counter(r["lang"] for r in LABELLED)
    assert sum(hits.values()) / len(LABELLED) >= 0.97
    assert {lang: hits[lang] / n for lang, n in totals.items() if hits[lang] / n < 0.9} == {}
    # the writing-system guess names only zh, ja and ko
    assert sum(detect_language(r["text"]) == r["lang"] for r in LABELLED) / len(LABELLED) < 0.5


def test_identify_decides_by_script_where_it_is_exact_and_is_sure_of_it():
    assert langid.identify("請解釋進程和線程之間的區別。") == langid.Language("zh", 1.0, "script")
    assert langid.identify("请解释一下 Python 中的 list comprehension 是什么。").code == "zh"
    assert langid.identify("In Chinese cooking, 火候 refers to the control of heat and timing.").code == "en"
    assert langid.identify("1234 + 5678 = ?") == langid.NONE
    assert langid.identify("WHY IS THE SKY BLUE DURING THE DAY?").code == "en"  # capitals alone read as another language


def rows():
    return [
        {"instruction": "Why is exercise good for you?", "output": EN},
        {"instruction": "介绍一下长城。", "output": ZH},
        {"instruction": "Почему небо голубое днём?", "output": "Небо голубое, потому что атмосфера рассеивает синий свет сильнее, чем красный."},
        {"instruction": "Explain why the sky is blue during the day.",
         "output": "Le ciel est bleu parce que l'atmosphère diffuse davantage la lumière bleue que la lumière rouge."},
        {"instruction": "Write a function that adds two numbers.", "output": "```python\ndef add(a, b):\n    return a + b\n```"},
    ]


def test_keep_list_end_to_end_with_evidence_and_report_breakdown(tmp_path, cli):
    from datagen.report import data

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()), encoding="utf-8")
    out = tmp_path / "run"
    r = cli("filter", "--input", src, "--out", out, "--stages", "heuristics", "--languages", "en,zh",
            "--set", "heuristics.language_mismatch=false")
    assert r.returncode == 0, r.stderr
    kept = [json.loads(x) for x in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [k["flags"]["language"] for k in kept] == ["en", "zh", "en"]  # the code answer: its instruction's
    assert [(x["reason"], x["evidence"]["field"], x["evidence"]["language"]) for x in rejected] == [
        ("language_not_allowed", "instruction", "ru"), ("language_not_allowed", "response", "fr")]
    assert all(x["evidence"]["confidence"] >= 0.5 and x["evidence"]["allowed"] == ["en", "zh"] for x in rejected)
    # the report breaks the records down by the identified language: kept and dropped per language
    groups = {g.key: (g.total, g.curated, dict(g.reasons)) for g in data.breakdowns(data.build_index(data.load_runs([out])))["language"]}
    assert groups == {"en": (2, 2, {}), "zh": (1, 1, {}), "ru": (1, 0, {"heuristics: language_not_allowed": 1}),
                      "fr": (1, 0, {"heuristics: language_not_allowed": 1})}
    assert [h.score for h in data.build([out], embeddings=False).histograms] == ["response_words"]  # the lengths' distribution
    # with the mismatch check on (the default), the French answer to an English question is a mismatch first
    out2 = tmp_path / "run2"
    assert cli("filter", "--input", src, "--out", out2, "--stages", "heuristics").returncode == 0
    reasons = [json.loads(x)["reason"] for x in (out2 / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert reasons == ["language_mismatch"]


@pytest.mark.parametrize("flags,message", [
    (["--languages", "english"], "heuristics.languages: Value error, 'english' is not a language code"),
    (["--set", "heuristics.length_unit=tokens", "--set", "heuristics.tokenizer=/no/such/model"], "heuristics.tokenizer: model '/no/such/model'"),
    (["--set", "heuristics.length_unit=letters"], "heuristics.length_unit"),
    (["--languages", "en", "--stages", "exact"], "--languages: the keep-list is a check of the heuristics stage"),
])
def test_config_errors_exit_2_before_any_output(tmp_path, cli, flags, message):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(rows()[0]) + "\n", encoding="utf-8")
    r = cli("filter", "--input", src, "--out", tmp_path / "run", *(flags if "--stages" in flags else ["--stages", "heuristics", *flags]))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_token_lengths_count_a_cjk_text_by_the_students_tokenizer():
    words = HeuristicsConfig(max_response_words=60)
    tokens = HeuristicsConfig(max_response_words=60, length_unit="tokens")
    zh, en = Record.from_turns("介绍一下长城。", ZH), Record.from_turns("Why is exercise good for you?", EN)
    assert count_words_or_chars(ZH) == 44 and count_words_or_chars(EN) == 19
    stage = Heuristics(tokens)
    stage.annotate([zh, en], ctx=None)  # type: ignore[arg-type]
    # SmolLM2's byte-level BPE spends about two tokens on a Chinese character, about one on an English word
    assert zh.scores["response_tokens"] > 80 and 19 <= en.scores["response_tokens"] < 30
    assert stage.verdict(zh) == ("response_too_long", {"tokens": zh.scores["response_tokens"], "max": 60})
    assert stage.verdict(en) is None
    assert "response_tokens" in stage.score_names and stage.describe()["tokenizer"] == "smollm2-135m-instruct"
    kept = Heuristics(words)
    zh2 = Record.from_turns("介绍一下长城。", ZH)
    kept.annotate([zh2], ctx=None)  # type: ignore[arg-type]
    assert kept.verdict(zh2) is None and "response_tokens" not in zh2.scores
    # the Rust backend's counts are the tokenizer's own
    texts = [ZH, EN, "", "def f(x):\n    return x  # 注释"]
    assert count(stage.tokenizer, texts) == [len(ids) for ids in stage.tokenizer(texts, add_special_tokens=False)["input_ids"]]
    # flag() alone counts too (one record)
    assert Heuristics(tokens).flag(Record.from_turns("介绍一下长城。", ZH)) == {"response_too_long": {"tokens": int(zh.scores["response_tokens"]), "max": 60}}
