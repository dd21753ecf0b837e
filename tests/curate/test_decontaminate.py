"""The decontamination stage: benchmark loading, n-gram overlap, paraphrases, evidence, the CLI, resumption."""

import json

import pytest

from datagen.core import shards as core_shards
from datagen.core.errors import InputError, UserError
from datagen.core.record import Record
from datagen.core.rundir import RunDir
from datagen.core.stats import Stats
from datagen.curate import registry
from datagen.curate.base import FilterContext
from datagen.curate.config import FilterConfig, load_config
from datagen.core.source import InputSpec
from datagen.curate.pipeline import FilterPipeline, run_filter, run_stage
from datagen.curate.stages.benchmarks import load_items
from datagen.curate.stages.decontaminate import Decontaminate, DecontaminateConfig

GSM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
       "How many clips did Natalia sell altogether in April and May?")
WENG = "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?"
CAPITAL = "What is the capital city of Australia, and why was it chosen?"  # 11 tokens: shorter than 13, matched whole
ANSWER = "Regular exercise strengthens the heart and lungs, improves mood and sleep, and lowers the risk of disease."


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def bench(tmp_path):
    return write_jsonl(tmp_path / "gsm.jsonl", [{"question": GSM, "answer": "72"}, {"question": WENG, "answer": "10"},
                                                {"question": CAPITAL, "answer": "Canberra"}])


def stage(files, **cfg):
    return Decontaminate(DecontaminateConfig(files=[str(f) for f in files], **{"embedding": False, **cfg}))


def decide(st, records, cache_dir=None):
    ctx = FilterContext(stats=Stats(), cache_dir=cache_dir or "/nonexistent", progress=False)
    kept, rejected = run_stage(st, records, ctx)
    return kept, {r.record.messages[0].content: r for r in rejected}


# -- the loader --------------------------------------------------------------------------------
def test_the_prompt_field_is_found_in_each_shape(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "prompt": "def add(a, b):"}, {"id": 2, "prompt": "def sub(a, b):"}])
    (tmp_path / "b.json").write_text(json.dumps([{"problem": "Find x.", "solution": "2"}, "A bare string item."]))
    (tmp_path / "c.txt").write_text("first line\n\nsecond line\n")
    write_jsonl(tmp_path / "mt.jsonl", [{"question_id": 81, "turns": ["Write a blog post.", "Rewrite it as a limerick."]}])
    write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                                                        {"role": "assistant", "content": "Hello."}]},
                                          {"conversations": [{"from": "human", "value": "Q2"}]}])
    write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Summarise.", "input": "A long text.", "output": "x"}])
    write_jsonl(tmp_path / "nested.jsonl", [{"question": {"stem": "Which gas?", "choices": []}}])
    items = load_items([tmp_path / n for n in ("a.jsonl", "b.json", "c.txt", "mt.jsonl", "alpaca.jsonl")])
    got = [(it.id.replace(str(tmp_path) + "/", ""), it.text) for it in items]
    assert got == [("a.jsonl:1", "def add(a, b):"), ("a.jsonl:2", "def sub(a, b):"), ("b.json:1 (item 1)", "Find x."),
                   ("b.json:1 (item 2)", "A bare string item."), ("c.txt:1", "first line"), ("c.txt:3", "second line"),
                   ("mt.jsonl:1 turn 1", "Write a blog post."), ("mt.jsonl:1 turn 2", "Rewrite it as a limerick."),
                   ("alpaca.jsonl:1", "Summarise.\nA long text.")]
    with pytest.raises(InputError, match=r"chat.jsonl:2: field 'messages': missing"):  # the first row chose 'messages'
        load_items([tmp_path / "chat.jsonl"])
    assert [it.text for it in load_items([tmp_path / "nested.jsonl"], field="question.stem")] == ["Which gas?"]


@pytest.mark.parametrize("content, needle", [
    ('{"question": "ok"}\n{"question": "ok", \n', r"b.jsonl:2: malformed JSON"),
    ('{"question": "ok"}\n{"answer": "no question"}\n', r"b.jsonl:2: field 'question': missing"),
    ('{"id": 3, "label": "x"}\n', r"b.jsonl:1: no prompt field found \(keys: id, label\)"),
    ('{"question": "ok"}\n[1, 2]\n', r"b.jsonl:2: expected an object or a string, got list"),
    ('{"turns": [{"role": "user", "content": 5}]}\n', r"b.jsonl:1: field 'turns': turn 1: expected a string"),
    ("\n\n", r"b.jsonl: holds no benchmark prompt"),
])
def test_a_bad_benchmark_file_is_a_located_error(tmp_path, content, needle):
    p = tmp_path / "b.jsonl"
    p.write_text(content)
    with pytest.raises(UserError, match=needle):
        load_items([p])


def test_missing_files_and_an_empty_file_list_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_items([tmp_path / "none.jsonl"])
    with pytest.raises(UserError, match="no benchmark files"):
        Decontaminate(DecontaminateConfig())


# -- n-gram overlap ----------------------------------------------------------------------------
def test_verbatim_prefix_and_suffix_plants_are_dropped_clean_records_kept(bench):
    recs = [Record.from_turns(GSM, "72"), Record.from_turns("Answer the following question. " + WENG, "She earned $10."),
            Record.from_turns(GSM + " Explain your reasoning step by step.", "72 clips."),
            Record.from_turns("Quick one: " + CAPITAL.upper() + " Thanks!", "Canberra, a compromise."),
            Record.from_turns("Why is exercise good for you?", ANSWER),
            Record.from_turns("Tell me about Australia.", "Its capital city is Canberra, chosen as a compromise.")]
    kept, rejected = decide(stage([bench]), recs)
    assert [r.instruction for r in kept] == ["Why is exercise good for you?", "Tell me about Australia."]
    assert {r.reason for r in rejected.values()} == {"benchmark_overlap"}
    ev = rejected[GSM].evidence
    assert ev["benchmark"] == str(bench) and ev["item"] == f"{bench}:1" and ev["item_text"] == GSM
    assert ev["ngram"] == "natalia sold clips to 48 of her friends in april and then she"  # the first shared 13-gram
    assert ev["field"] == "instruction" and ev["overlap"] == 1.0 and ev["rule"] == "any" and ev["ngram_size"] == 13
    assert rejected["Quick one: " + CAPITAL.upper() + " Thanks!"].evidence["item"] == f"{bench}:3"


def test_the_answer_is_checked_as_the_fields_setting_says(bench):
    def rec():
        return Record.from_turns("Tell me a word problem.", "Here is one: " + WENG)

    _, rejected = decide(stage([bench]), [rec()])
    assert rejected["Tell me a word problem."].evidence["field"] == "answer"
    kept, _ = decide(stage([bench], fields="instruction"), [rec()])
    assert len(kept) == 1


def test_the_ratio_rule_needs_a_share_of_the_items_ngrams(bench):
    half = " ".join(GSM.split()[:16])  # 16 words: 4 of the item's 19 13-grams
    recs = [Record.from_turns(half, "x"), Record.from_turns(GSM, "72")]
    kept, rejected = decide(stage([bench], rule="ratio", ratio=0.5), recs)
    assert [r.instruction for r in kept] == [half] and rejected[GSM].evidence["overlap"] == 1.0
    assert kept[0].flags["decontaminate"]["ngram"]["shared"] == 4  # found, but under the ratio: kept with the evidence
    kept, rejected = decide(stage([bench], rule="any"), [Record.from_turns(half, "x")])
    assert not kept and rejected[half].evidence["overlap"] == round(4 / 19, 4)


def test_short_items_match_whole_and_very_short_ones_not_at_all(tmp_path):
    b = (tmp_path / "b.txt")
    b.write_text("Name the largest planet in our solar system.\nTell me a joke.\n")  # 8 tokens; 4 tokens
    st = stage([b])
    assert st.index().indexed == 1
    kept, rejected = decide(st, [Record.from_turns("Quiz: name the largest planet in our solar system!", "Jupiter."),
                                 Record.from_turns("Tell me a joke.", "Why did the chicken cross the road?"),
                                 Record.from_turns("Name the largest planet.", "Jupiter.")])
    assert list(rejected) == ["Quiz: name the largest planet in our solar system!"]
    assert len(kept) == 2


def test_a_rerun_replaces_the_flags_of_an_earlier_one(bench, tmp_path):
    rec = Record.from_turns(GSM, "72")
    decide(stage([bench]), [rec])
    other = write_jsonl(tmp_path / "other.jsonl", [{"question": "Something else entirely, with at least eight words in it."}])
    kept, _ = decide(stage([other]), [rec])
    assert kept == [rec] and "decontaminate" not in rec.flags


# -- paraphrases -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("engine", ["cascade", "encoder"])
def test_paraphrases_are_found_by_embedding(tmp_path, cache_dir, engine):
    b = write_jsonl(tmp_path / "b.jsonl", [{"question": WENG}, {"question": "What is the main cause of the seasons on Earth?"},
                                           {"question": "Write a haiku about autumn leaves."}])
    para = "Weng makes twelve dollars per hour babysitting. Yesterday she babysat for only 50 minutes. How much money did she make?"
    recs = [Record.from_turns(para, "She made 10 dollars."), Record.from_turns("What mainly causes Earth's seasons?", "The axial tilt."),
            Record.from_turns("Why is exercise good for you?", ANSWER),
            Record.from_turns("Give me a recipe for banana bread.", "Mash three ripe bananas and mix them with flour.")]
    # the terse paraphrase's static cosine is 0.63: under the default candidate threshold (0.7), over this one
    st = stage([b], embedding=True, embedding_engine=engine, candidate_threshold=0.6)
    kept, rejected = decide(st, recs, cache_dir)
    assert sorted(rejected) == sorted([para, "What mainly causes Earth's seasons?"])
    ev = rejected[para].evidence
    assert ev["item"] == f"{b}:1" and ev["benchmark"] == str(b) and ev["item_text"] == WENG
    assert ev["cosine"] >= ev["threshold"] == 0.85
    assert {r.instruction for r in kept} == {"Why is exercise good for you?", "Give me a recipe for banana bread."}
    # the verdict reads the stored cosine: a stricter threshold keeps it without embedding again
    strict = stage([b], embedding=True, embedding_engine=engine, embedding_threshold=0.999)
    assert strict.verdict(rejected[para].record) is None


def test_workers_and_shards_give_the_same_run_with_the_embedding_check(tmp_path, cache_dir, monkeypatch):
    b = write_jsonl(tmp_path / "b.jsonl", [{"question": GSM}, {"question": WENG}])
    para = "Weng makes twelve dollars per hour babysitting. Yesterday she babysat for only 50 minutes. How much money did she make?"
    rows = [{"instruction": f"Tell me fact number {k} about the number {k * 7}.", "input": "", "output": f"{k * 7} is a number."} for k in range(60)]
    rows[10] = {"instruction": para, "input": "", "output": "$10."}
    rows[40] = {"instruction": "Solve: " + GSM, "input": "", "output": "72"}
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    runs = {}
    for name, workers, shard_bytes in (("one", 1, None), ("two", 2, 800)):
        if shard_bytes:
            monkeypatch.setattr(core_shards, "SHARD_BYTES", shard_bytes)  # several shards, in worker processes
        run_filter(InputSpec(str(src)), tmp_path / name, stages="decontaminate", decontaminate=[str(b)], workers=workers, cache_dir=cache_dir)
        runs[name] = [(tmp_path / name / f).read_text() for f in ("records.jsonl", "rejected.jsonl")]
    assert runs["one"] == runs["two"]
    assert [json.loads(x)["reason"] for x in runs["one"][1].splitlines()] == ["benchmark_paraphrase", "benchmark_overlap"]


# -- the command -------------------------------------------------------------------------------
def test_the_flag_adds_the_stage_end_to_end(tmp_path, cli, bench):
    rows = [{"instruction": GSM, "input": "", "output": "72"}, {"instruction": "Why is exercise good for you?", "input": "", "output": ANSWER},
            {"instruction": "Solve this: " + WENG, "input": "", "output": "$10."}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    r = cli("filter", "--input", src, "--out", out, "--stages", "heuristics,exact", "--decontaminate", bench,
            "--set", "decontaminate.embedding=false")
    assert r.returncode == 0, r.stderr
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(x["stage"], x["reason"]) for x in rejected] == [("decontaminate", "benchmark_overlap")] * 2
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["stages"]) == ["read", "heuristics", "decontaminate", "exact"]
    assert stats["stages"]["decontaminate"]["rejected"] == {"benchmark_overlap": 2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["decontaminate"]["files"] == [str(bench)]


def test_a_bad_benchmark_file_stops_the_command_before_any_output(tmp_path, cli):
    src = write_jsonl(tmp_path / "in.jsonl", [{"instruction": "Hi", "input": "", "output": "Hello there."}])
    bad = tmp_path / "bench.jsonl"
    bad.write_text('{"question": "fine"}\n{"question": 7}\n')
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--decontaminate", bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{bad}:2: field 'question': expected a string or a list of turns, got int" in r.stderr
    assert not (tmp_path / "run").exists()


def test_stage_selection_and_config_section(tmp_path, bench):
    assert "decontaminate" not in registry.parse_stages(None)
    assert registry.parse_stages("exact,decontaminate,heuristics") == ["heuristics", "decontaminate", "exact"]
    cfg = tmp_path / "f.yaml"
    cfg.write_text(f"decontaminate:\n  files: [{bench}]\n  ngram: 8\n")
    st = registry.build_stage("decontaminate", load_config(cfg), str(cfg))
    assert st.config.ngram == 8 and st.describe()["benchmarks"][0]["items"] == 3
    cfg.write_text(f"decontaminate:\n  files: [{bench}]\n  ngrams: 8\n")
    with pytest.raises(UserError, match="decontaminate.ngrams: unknown key \\(did you mean 'ngram'\\?\\)"):
        registry.build_stage("decontaminate", load_config(cfg), str(cfg))


def test_an_interrupted_run_resumes_without_running_the_stage_again(tmp_path, bench):
    from tests.stages import Interrupt, KeepAll

    cfg = FilterConfig(decontaminate={"files": [str(bench)], "embedding": False})
    recs = [Record.from_turns(GSM, "72"), Record.from_turns("Why is exercise good for you?", ANSWER)]

    def pipeline(last):
        return FilterPipeline(registry.build_stages(["heuristics", "decontaminate"], cfg) + [last], tmp_path / "cache", progress=False, config=cfg)

    pipeline(KeepAll()).run(RunDir(tmp_path / "clean", "filter", {"x": 1}), recs)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        pipeline(Interrupt()).run(RunDir(out, "filter", {"x": 1}), recs)
    assert RunDir(out, "filter", {"x": 1}).done_parts() == [0, 1, 2]
    again = pipeline(KeepAll())
    again.stages[1].annotate = lambda *a: pytest.fail("the finished decontaminate stage ran again")
    again.run(RunDir(out, "filter", {"x": 1}), recs)
    for name in ("records.jsonl", "rejected.jsonl"):
        assert (out / name).read_text() == (tmp_path / "clean" / name).read_text(), name
    assert json.loads((out / "rejected.jsonl").read_text().splitlines()[0])["reason"] == "benchmark_overlap"


def test_the_index_counts_shared_ngrams_as_sets_of_word_tuples_do():
    import random

    from datagen.curate.stages.ngram_index import NgramIndex

    rng = random.Random(7)
    vocab = "a b c d e f g h".split()  # a small vocabulary: many shared n-grams, several items per n-gram
    items = [" ".join(rng.choices(vocab, k=rng.randint(2, 12))) for _ in range(60)]
    texts = [" ".join(rng.choices(vocab, k=rng.randint(0, 30))) for _ in range(200)] + [items[3], "x " + items[9] + " y"]
    n, min_tokens = 4, 3
    index = NgramIndex(items, n, min_tokens)

    def grams(words, k):
        return {tuple(words[i:i + k]) for i in range(len(words) - k + 1)}

    for text, got in zip(texts, index.match(texts)):
        words = text.split()
        best = None
        for j, item in enumerate(items):
            iw = item.split()
            if len(iw) < min_tokens:
                continue
            mine = grams(iw, min(n, len(iw)))
            shared = len(mine & grams(words, min(n, len(iw))))
            key = (shared / len(mine), shared, -j)
            if shared and (best is None or key > best[0]):
                best = (key, j, shared, len(mine))
        if best is None:
            assert got is None, text
        else:
            assert (got.item, got.shared, got.item_ngrams) == best[1:], text
            assert got.ngram in text and len(got.ngram.split()) == min(n, len(items[got.item].split()))
