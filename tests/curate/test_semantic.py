"""Semantic dedup on the real all-MiniLM-L6-v2: paraphrases (English, near-identical Chinese) are
grouped, unrelated records are not, the survivor does not depend on input order, and embeddings
are cached across processes.

MiniLM is English-centric: the Chinese pairs here are near-identical rewordings (cosine ~0.96),
which it embeds close; unrelated Chinese records sit at 0.4-0.7, well below the threshold. Real
Chinese paraphrases with different wording would need a multilingual model (``model=`` a local
sentence-transformers folder).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from datagen.curate.base import FilterContext
from datagen.score.embeddings import EmbeddingStore, embed_text
from datagen.curate.dedup.neighbors import similar_pairs
from datagen.curate.dedup.groups import survivor_walk as _walk
from datagen.curate.dedup.semantic import SemanticConfig, SemanticDedup
from datagen.core.record import Record
from datagen.core.stats import Stats

PAIRS = [
    ("How do I reverse a list in Python?", "Use my_list[::-1] or my_list.reverse().",
     "What is the way to reverse a Python list?", "You can use my_list[::-1] or call my_list.reverse()."),
    ("如何在Python中反转列表？", "使用 my_list[::-1] 或 my_list.reverse()。",
     "怎样在Python中反转一个列表？", "可以使用 my_list[::-1] 或者 my_list.reverse()。"),
    ("请给我三个保持健康的建议。", "多吃蔬菜，每天锻炼，保证八小时睡眠。",
     "请给出三个保持健康的建议。", "多吃蔬菜，每天运动，保证八个小时的睡眠。"),
]
UNRELATED = [
    ("Write a poem about autumn.", "Leaves fall gold, the wind grows cold."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("写一首关于秋天的诗。", "秋风起，落叶飞，稻谷金黄满田野。"),
    ("法国的首都是哪里？", "法国的首都是巴黎。"),
]


def fixture_records() -> list[Record]:
    recs = []
    for qa, aa, qb, ab in PAIRS:
        recs += [Record.from_turns(qa, aa), Record.from_turns(qb, ab)]
    return recs + [Record.from_turns(q, a) for q, a in UNRELATED]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def annotate(recs: list[Record], cache_dir, **cfg) -> SemanticDedup:
    stage = SemanticDedup(**cfg)
    stage.annotate(recs, FilterContext(stats=Stats(), cache_dir=cache_dir, progress=False))
    return stage


def test_paraphrases_grouped_unrelated_kept(cache_dir):
    recs = fixture_records()
    stage = annotate(recs, cache_dir)
    dropped = [r for r in recs if stage.verdict(r) is not None]
    assert len(dropped) == len(PAIRS)
    for i in range(len(PAIRS)):
        a, b = recs[2 * i], recs[2 * i + 1]
        dup, kept = (a, b) if stage.verdict(a) else (b, a)
        assert stage.verdict(kept) is None
        reason, evidence = stage.verdict(dup)
        assert reason == "semantic_duplicate" and evidence["duplicate_of"] == kept.id
        assert evidence["cosine"] >= 0.95 and kept.flags["semantic_duplicates"] == 1
    assert all(stage.verdict(r) is None for r in recs[2 * len(PAIRS) :])


def test_survivor_is_deterministic_under_shuffling_and_prefers_quality(cache_dir):
    def survivors(seed: int, **cfg) -> set[str]:
        recs = fixture_records()
        random.Random(seed).shuffle(recs)
        stage = annotate(recs, cache_dir, **cfg)
        return {r.id for r in recs if stage.verdict(r) is None}

    first = survivors(0)
    assert all(survivors(seed) == first for seed in (1, 2, 3))

    def with_judge(seed: int) -> set[str]:
        recs = fixture_records()
        for r in recs:  # the record the first run dropped gets the better judge score
            r.scores["judge"] = 2.0 if r.id in first else 4.0
        random.Random(seed).shuffle(recs)
        stage = annotate(recs, cache_dir)
        return {r.id for r in recs if stage.verdict(r) is None}

    flipped = with_judge(0)
    assert flipped == with_judge(5) and len(flipped) == len(first) and flipped != first


def test_embeddings_are_cached_across_stores(cache_dir):
    texts = [embed_text(r) for r in fixture_records()]
    first = EmbeddingStore(cache_dir)
    a = first.embed(texts, progress=False)
    second = EmbeddingStore(cache_dir)
    b = second.embed(texts, progress=False)
    assert second.computed == 0 and second._encoder is None
    assert a.dtype == np.float32 and a.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(second.lookup(texts), a)
    assert second.lookup(texts + ["never embedded"]) is None


def test_a_chain_removes_only_records_matched_to_a_survivor():
    # a ~ b, b ~ c, a !~ c: b goes (duplicate of a), c stays because b was not kept; d ~ e.
    angles = np.radians([0.0, 15.0, 30.0, 90.0, 91.0])
    vecs = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    t = float(np.cos(np.radians(20)))
    a, b, cos = similar_pairs(vecs, t, progress=False)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (1, 2), (3, 4)]
    dups = _walk(np.arange(5), a, b, cos)
    assert set(dups) == {1, 4} and dups[1][0] == 0 and dups[4][0] == 3
    # walked in another order (c first): b goes as c's duplicate, a stays
    dups = _walk(np.array([1, 2, 0, 3, 4]), a, b, cos)
    assert set(dups) == {1, 4} and dups[1][0] == 2


def test_the_pair_searches_agree():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    vecs = np.concatenate([base, base[:100] + rng.normal(scale=0.15, size=(100, 16)).astype(np.float32)])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    exact = similar_pairs(vecs, 0.9, "exact", progress=False)
    full = (vecs @ vecs.T)[np.triu_indices(len(vecs), 1)]
    assert len(exact[0]) == int((full >= 0.9).sum()) > 90
    ivf = similar_pairs(vecs, 0.9, "ivf", lists=8, nprobe=8, progress=False)  # every cell probed: exact
    for x, y in zip(exact, ivf):
        np.testing.assert_allclose(x, y, rtol=1e-5)
    cheap = similar_pairs(vecs, 0.9, "ivf", lists=8, nprobe=1, progress=False)
    assert set(zip(*cheap[:2])) <= set(zip(*exact[:2]))


def test_the_index_search_decides_as_the_exact_one(cache_dir):
    recs = fixture_records()
    exact = annotate(recs, cache_dir, search="exact")
    want = {r.id: exact.verdict(r) for r in recs}
    recs = fixture_records()
    ivf = annotate(recs, cache_dir, search="ivf")  # faiss, through the stage's own settings
    assert {r.id: ivf.verdict(r) for r in recs} == want


def test_the_cascade_finds_the_encoders_duplicates(cache_dir):
    recs = fixture_records()
    encoder = annotate(recs, cache_dir)
    expected = {r.id: encoder.verdict(r) for r in recs}
    recs = fixture_records()
    stats = Stats()
    stage = SemanticDedup(engine="cascade")
    stage.annotate(recs, FilterContext(stats=stats, cache_dir=cache_dir, progress=False))
    assert {r.id: stage.verdict(r) for r in recs} == expected
    extra = stats.extra["semantic"]
    assert extra["engine"] == "cascade" and extra["duplicates"] == len(PAIRS)
    assert 2 * len(PAIRS) <= extra["candidate_records"] < len(recs)  # the unrelated records skip the encoder


def test_config_is_strict():
    with pytest.raises(ValueError):
        SemanticConfig(treshold=0.9)
    assert SemanticDedup(threshold=0.9).describe()["threshold"] == 0.9
    with pytest.raises(ValueError, match="needs engine: cascade"):
        SemanticConfig(relevance_screen=0.3)


OFF_TOPIC = (
    "Give three tips for sleeping better.",
    ("The French Revolution began in 1789 when financial crisis and food shortages pushed the Third Estate to "
     "declare itself a National Assembly, and the storming of the Bastille followed in July."),
)
ON_TOPIC = (
    "Give three tips for sleeping better.",
    "Keep a fixed bedtime and wake-up time, avoid caffeine after lunch, and keep your bedroom dark, cool and quiet.",
)


def test_an_answer_to_another_question_is_off_topic_and_never_a_survivor(cache_dir):
    off, on = Record.from_turns(*OFF_TOPIC), Record.from_turns(*ON_TOPIC)
    label = Record.from_turns("Sort the email into Work, Personal or Bills.\n\nYour electricity bill is due.", "Bills")
    # a near-copy of the off-topic record, which would otherwise be deduplicated against it
    off_copy = Record.from_turns(OFF_TOPIC[0], OFF_TOPIC[1] + " It ended in 1799.")
    recs = [off, on, label, off_copy]
    stage = annotate(recs, cache_dir)
    assert on.scores["relevance"] > 0.4 and off.scores["relevance"] < 0.1
    reason, evidence = stage.verdict(off)
    assert reason == "off_topic" and evidence == {"relevance": off.scores["relevance"], "min_relevance": 0.1}
    assert stage.verdict(off_copy)[0] == "off_topic"  # both off-topic: neither is a duplicate's survivor
    assert "semantic_cluster" not in off.flags and "semantic_duplicate_of" not in off_copy.flags
    # a one-word label is far from its question in embedding space, but short answers are not judged
    assert label.scores["relevance"] < 0.35 and stage.verdict(label) is None
    assert stage.verdict(on) is None
    # switched off: scores nothing, flags nothing, and clears what an earlier run wrote
    recs = [off]
    stage = annotate(recs, cache_dir, min_relevance=None)
    assert all(stage.verdict(r) is None and "relevance" not in r.scores and "off_topic" not in r.flags for r in recs)


def test_the_cascade_checks_the_least_relevant_share_of_answers(cache_dir):
    off, on = Record.from_turns(*OFF_TOPIC), Record.from_turns(*ON_TOPIC)
    label = Record.from_turns("Sort the email into Work, Personal or Bills.\n\nYour electricity bill is due.", "Bills")
    off_copy = Record.from_turns(OFF_TOPIC[0], OFF_TOPIC[1] + " It ended in 1799.")
    recs = [off, on, label, off_copy]
    stats = Stats()
    stage = SemanticDedup(engine="cascade", relevance_screen=0.6)
    stage.annotate(recs, FilterContext(stats=stats, cache_dir=cache_dir, progress=False))
    # three answers are long enough to judge; the encoder checks 2 of them, the static model's least relevant
    assert stats.extra["semantic"]["relevance_checked"] == 2
    assert stage.verdict(off)[0] == stage.verdict(off_copy)[0] == "off_topic"
    assert "relevance" not in on.scores and "relevance" not in label.scores
    assert stage.verdict(on) is None and stage.verdict(label) is None


def test_a_truncated_store_reads_only_its_first_word_pieces(cache_dir):
    head = "The mitochondria is the part of the cell that turns food into usable energy"
    texts = [head + ".", head + ", and it has its own small circular genome inherited from the mother."]
    cut = EmbeddingStore(cache_dir, max_tokens=12)
    a, b = cut.embed(texts, progress=False)
    np.testing.assert_array_equal(a, b)  # the same first 12 word pieces: the same vector
    full = EmbeddingStore(cache_dir).embed(texts, progress=False)
    assert float(full[0] @ full[1]) < 0.99  # read whole, the two differ
    assert cut.cache.path != EmbeddingStore(cache_dir).cache.path  # cut vectors never answer for whole ones
    assert cut.truncated(None).max_tokens is None and cut.truncated(12) is cut
    with pytest.raises(ValueError):
        EmbeddingStore(cache_dir, max_tokens=0)


def test_the_screen_can_rank_by_the_encoder_on_truncated_texts(cache_dir):
    off, on = Record.from_turns(*OFF_TOPIC), Record.from_turns(*ON_TOPIC)
    off_copy = Record.from_turns(OFF_TOPIC[0], OFF_TOPIC[1] + " It ended in 1799.")
    stats = Stats()
    stage = SemanticDedup(engine="cascade", relevance_screen=0.6, relevance_screen_tokens=16)
    stage.annotate([off, on, off_copy], FilterContext(stats=stats, cache_dir=cache_dir, progress=False))
    # the two off-topic answers rank lowest on their first 16 word pieces; only they are checked whole
    assert stats.extra["semantic"]["relevance_checked"] == 2
    assert stage.verdict(off)[0] == stage.verdict(off_copy)[0] == "off_topic" and "relevance" not in on.scores
    # the screen's texts (one instruction, three answers) are cut and cached apart, and counted
    assert (cache_dir / "embeddings" / "all-MiniLM-L6-v2@max16").is_dir()
    assert stats.extra["semantic"]["embedded"] == stage.embedded >= 4
    with pytest.raises(ValueError, match="relevance_screen_tokens"):
        SemanticConfig(engine="cascade", relevance_screen_tokens=16)


@pytest.mark.parametrize("setting", ["semantic.relevance_screen_tokens=0", "semantic.relevance_screen_tokens=16"])
def test_a_bad_encoder_setting_exits_2_naming_it(tmp_path, cli, setting):
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "Name a colour.", "input": "", "output": "Blue."}\n', encoding="utf-8")
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--stages", "semantic", "--set", setting)
    assert r.returncode == 2, r.stderr
    assert setting.split("=")[0].split(".")[1] in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "records.jsonl").exists()
