"""Distillation: prompts and multi-turn histories, the system prompt, best-of-n with a judge
(expected rating from logprobs, digits, unreadable replies), the ledger, resume and the CLI."""

import json
import math

import pytest

from datagen.core import prompts
from datagen.generate import distill as d
from datagen.score.judge import JudgeSelector
from datagen.core.io import iter_jsonl
from datagen.llm.base import GenParams, TokenLogprob
from datagen.llm.cache import CachedLLM, RequestCache
from datagen.core.rundir import RunDir
from datagen.core.record import Message, Record
from datagen.score import judge
from tests.scripted import Interrupting, ScriptedLLM

JUDGE_MARK = "We would like your feedback"
PARAMS = GenParams(max_tokens=64, seed=10)


def is_judge(req):
    return req.messages[-1][1].startswith(JUDGE_MARK)


def answered(req):
    """The answer a judge request shows."""
    return req.messages[-1][1].split("Answer:\n", 1)[1].split("\n\nRate the answer", 1)[0]


def teacher_answer(req, params):
    """Candidate j of a prompt (seed 10 + j) says so; prompts marked 'fail' fail for candidate 1."""
    last = req.messages[-1][1]
    if "fail" in last and req.seed == 11:
        return RuntimeError("server said 500")
    if "blank" in last:
        return "   "
    return f"candidate {(req.seed or PARAMS.seed) - PARAMS.seed} answers: {last}"


def lp(**probs):
    """One position of top logprobs from {token: probability}; the most likely one is chosen."""
    top = {tok.replace("_", " "): math.log(p) for tok, p in probs.items()}
    best = max(top, key=top.get)
    return [TokenLogprob(token=best, logprob=top[best], top=top)]


# expected ratings: candidate 0 -> 3.0; 1 -> 4.5; 2 -> 0.6*5 + 0.1*4 + 0.3*1 = 3.7 (its argmax digit is 5)
JUDGE_PROBS = {0: {"3": 1.0}, 1: {"4": 0.25, "_4": 0.25, "5": 0.5}, 2: {"5": 0.6, "4": 0.1, "1": 0.3}}


def judged(replies):
    """A teacher + judge: the judge replies ``replies[candidate]`` (text) to each candidate."""

    def answer(req, params):
        if is_judge(req):
            assert params.logprobs and params.top_logprobs == 20 and params.temperature == 0
            return replies[int(answered(req).split()[1])]
        return teacher_answer(req, params)

    return answer


def ev_logprobs(req, params, text):
    return lp(**JUDGE_PROBS[int(answered(req).split()[1])]) if is_judge(req) else None


def records(*convs):
    return [Record(messages=[Message(role=r, content=c) for r, c in conv]) for conv in convs]


def run(tmp_path, llm, recs, n=1, system="Be helpful.", name="run", chunk_size=2):
    teacher = d.Teacher(llm, PARAMS, system, {"name": "distill/system", "sha": "s"} if system else None)
    selector = JudgeSelector(llm, prompts.load(d.JUDGE_TEMPLATE)) if n > 1 else None
    out = tmp_path / name
    d.Distill(teacher, n=n, selector=selector, chunk_size=chunk_size, progress=False).run(RunDir(out, "distill", {"t": 1}), recs)
    kept = [Record.model_validate(r) for r in iter_jsonl(out / "records.jsonl")]
    return kept, list(iter_jsonl(out / "rejected.jsonl")), json.loads((out / "stats.json").read_text())


def check_ledger(stats, out_dir=None):
    for name, s in stats["stages"].items():
        assert s["in"] == s["out"] + s["rejected_total"], name
    if out_dir is not None:
        assert len((out_dir / "records.jsonl").read_text().splitlines()) == stats["records"]
        assert len((out_dir / "rejected.jsonl").read_text().splitlines()) == stats["rejected"]


def test_single_and_multi_turn_with_and_without_system_prompt(tmp_path):
    recs = records(
        [("user", "What is 2+2?")],
        [("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a fruit."), ("assistant", "old answer")],
        [("system", "You are a pirate."), ("user", "Greet me.")],
    )
    for system in ("Be helpful.", None):
        llm = ScriptedLLM(teacher_answer)
        kept, rejs, st = run(tmp_path, llm, recs, system=system, name=f"sys-{bool(system)}")
        assert not rejs and len(kept) == 3
        sent = [list(c.messages) for c in llm.calls]
        added = [("system", "Be helpful.")] if system else []
        assert sent[0] == added + [("user", "What is 2+2?")]
        # multi-turn: the history goes to the teacher; only the final assistant turn is regenerated
        assert sent[1] == added + [("user", "Hi"), ("assistant", "Hello!"), ("user", "Name a fruit.")]
        assert sent[2] == [("system", "You are a pirate."), ("user", "Greet me.")]  # its own system prompt wins
        for rec, new in zip(recs, kept):
            assert new.parent_id == rec.id and new.source == "distill:scripted"
            assert new.messages[:-1] == rec.prompt_messages()  # the teacher's system prompt is not written
            assert new.response == f"candidate 0 answers: {rec.instruction}"
            assert "best_of_n" not in new.meta and new.meta["usage"]["completion_tokens"] > 0
            assert ("teacher_prompt" in new.meta) == bool(system)
        assert st["stages"]["distill"] == {"in": 3, "out": 3, "rejected": {}, "rejected_total": 0}
        assert len(llm.calls) == 3  # n = 1: no judge


def test_best_of_n_by_expected_rating(tmp_path):
    # the judge's replies say 3, 5, 5: by the digits, candidates 1 and 2 would tie; the expected
    # ratings (3.0, 4.5, 3.7) rank them, and candidate 1 wins on merit
    llm = ScriptedLLM(judged(["3", "5", "5"]), logprobs=ev_logprobs)
    recs = records([("user", "Name a colour.")], [("user", "Hi"), ("assistant", "Hello!"), ("user", "Count to 3."), ("assistant", "1 2")])
    kept, rejs, st = run(tmp_path, llm, recs, n=3)
    assert [r.response.split(" answers")[0] for r in kept] == ["candidate 1", "candidate 1"]
    seeds = sorted({c.seed for c in llm.calls if not is_judge(c)})
    assert seeds == [10, 11, 12]  # distinct per-request seeds
    for rec, new in zip(recs, kept):
        b = new.meta["best_of_n"]
        assert new.parent_id == rec.id and new.meta["candidate"] == 1
        assert b["n"] == 3 and b["winner"] == 1 and b["scores"] == pytest.approx([3.0, 4.5, 3.7])
        assert [c["method"] for c in b["candidates"]] == ["expected"] * 3
        assert b["candidates"][1]["mass"] == pytest.approx(1.0) and b["candidates"][2]["parsed"] == 5
        tpl = prompts.load(d.JUDGE_TEMPLATE)
        assert b["judge"] == {"selector": "judge", "template": {"name": "distill/judge", "sha": tpl.sha}, "model": "scripted"}
        assert b["usage"]["answering"]["completion_tokens"] > 0 and b["usage"]["judging"]["prompt_tokens"] > 0
        assert b["usage"]["judging"]["completion_tokens"] == 3  # one token per rating
    # the judge saw the history of the multi-turn prompt
    judge_prompts = [c.messages[-1][1] for c in llm.calls if is_judge(c)]
    assert sum("[user]: Hi\n[assistant]: Hello!" in p for p in judge_prompts) == 3
    # the losers are kept in rejected.jsonl with their evidence
    assert len(rejs) == 4 and {r["reason"] for r in rejs} == {"not_best_of_n"}
    ev = sorted((r["evidence"]["candidate"], round(r["evidence"]["score"], 6)) for r in rejs)
    assert ev == [(0, 3.0), (0, 3.0), (2, 3.7), (2, 3.7)]
    assert all(r["evidence"]["winner_index"] == 1 and r["evidence"]["winner_score"] == 4.5 for r in rejs)
    assert all(r["record"]["messages"][-1]["content"].startswith("candidate ") for r in rejs)
    check_ledger(st, tmp_path / "run")
    assert st["stages"]["distill"] == {"in": 6, "out": 6, "rejected": {}, "rejected_total": 0}
    assert st["stages"]["distill.best_of_n"] == {"in": 6, "out": 2, "rejected": {"not_best_of_n": 4}, "rejected_total": 4}
    tokens = st["extra"]["tokens"]
    assert tokens["judge_completion_tokens"] == 6 and tokens["answer_completion_tokens"] == sum(
        r.meta["best_of_n"]["usage"]["answering"]["completion_tokens"] for r in kept)
    assert st["extra"]["judge_methods"] == {"expected": 6}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["prompt_templates"]["distill/judge"] == prompts.load(d.JUDGE_TEMPLATE).sha and manifest["n"] == 3


def test_digits_unreadable_replies_and_failed_candidates(tmp_path):
    # no logprobs: the digit in the reply counts; "great!" gets no score and is not a silent 0
    llm = ScriptedLLM(judged(["Great answer!", "Rating: 4/5", "4"]))
    recs = records([("user", "Name a colour.")], [("user", "Please fail once.")], [("user", "blank")])
    kept, rejs, st = run(tmp_path, llm, recs, n=3)
    # prompt 1: tie 4 vs 4 -> lowest index; prompt 2: candidate 1 failed; prompt 3: every answer blank
    assert [(r.instruction, r.meta["best_of_n"]["winner"]) for r in kept] == [("Name a colour.", 1), ("Please fail once.", 2)]
    b0, b1 = (r.meta["best_of_n"] for r in kept)
    assert b0["scores"] == [None, 4.0, 4.0]
    c0 = b0["candidates"][0]
    assert (c0["score"], c0["method"], c0["reply"]) == (None, "unparsed", "Great answer!")
    assert [c["method"] for c in b0["candidates"]] == ["unparsed", "digit", "digit"]
    assert b1["scores"] == [None, None, 4.0] and b1["candidates"][1] == {"index": 1, "score": None, "rejected": "llm_error"}
    by_reason = {}
    for r in rejs:
        by_reason.setdefault((r["stage"], r["reason"]), []).append(r["evidence"])
    assert sorted(by_reason) == [("distill", "empty_answer"), ("distill", "llm_error"), ("distill.best_of_n", "not_best_of_n")]
    assert len(by_reason[("distill", "empty_answer")]) == 3 and by_reason[("distill", "llm_error")][0]["candidate"] == 1
    nb = sorted((e["candidate"], e["score"], e["winner_score"], e["winner_index"]) for e in by_reason[("distill.best_of_n", "not_best_of_n")])
    assert nb == [(0, None, 4.0, 1), (0, None, 4.0, 2), (2, 4.0, 4.0, 1)]
    check_ledger(st, tmp_path / "run")
    assert st["stages"]["distill"] == {"in": 9, "out": 5, "rejected": {"empty_answer": 3, "llm_error": 1}, "rejected_total": 4}
    assert st["stages"]["distill.best_of_n"]["in"] == 5 and st["stages"]["distill.best_of_n"]["out"] == 2
    assert st["extra"]["judge_methods"] == {"unparsed": 2, "digit": 3}


def test_no_readable_score_keeps_the_first_valid_candidate_and_says_so(tmp_path):
    llm = ScriptedLLM(judged(["good", "fine", "ok"]))
    kept, rejs, st = run(tmp_path, llm, records([("user", "Name a colour.")]), n=3)
    assert len(kept) == 1
    best = kept[0].meta["best_of_n"]
    assert best["winner"] == 0 and best["winner_reason"].startswith("no_judge_score") and best["scores"] == [None, None, None]
    assert [(r["stage"], r["reason"], r["evidence"]["judge"]["reply"]) for r in rejs] == [
        ("distill.best_of_n", "not_best_of_n", "fine"), ("distill.best_of_n", "not_best_of_n", "ok")]
    assert st["extra"]["kept_unjudged"] == 1
    check_ledger(st, tmp_path / "run")


def test_best_index():
    assert judge.best_index([d.Score(None, "unparsed"), d.Score(3.0, "digit"), d.Score(3.0, "digit")]) == 1
    assert judge.best_index([d.Score(2.0, "expected"), d.Score(4.5, "expected"), d.Score(4.0, "digit")]) == 1
    assert judge.best_index([d.Score(None, "unparsed")]) is None


def test_selector_is_pluggable(tmp_path):
    class Longest(d.Selector):
        def pick_best(self, record, candidates):
            scores = [d.Score(float(len(c)), "length") for c in candidates]
            return judge.best_index(scores), scores

    llm = ScriptedLLM(lambda req, params: "x" * (req.seed - 9))
    teacher = d.Teacher(llm, PARAMS)
    out = tmp_path / "longest"
    d.Distill(teacher, n=3, selector=Longest(), progress=False).run(RunDir(out, "distill", {"t": 2}), records([("user", "Go.")]))
    (rec,) = [Record.model_validate(r) for r in iter_jsonl(out / "records.jsonl")]
    assert rec.response == "xxx" and rec.meta["best_of_n"]["judge"] == {"selector": "Longest"}
    with pytest.raises(ValueError):
        d.Distill(teacher, n=2)  # best-of-n needs a selector


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path):
    recs = records(*[[("user", f"Question {i}?")] for i in range(5)])
    script = dict(answer=judged(["3", "5", "5"]), logprobs=ev_logprobs)
    run(tmp_path, ScriptedLLM(**script), recs, n=3, name="ref")
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    # each chunk of 2 prompts makes two calls (answers, ratings): the 4th call is the second chunk's judge
    first = CachedLLM(Interrupting(ScriptedLLM(**script), 4), RequestCache(cache))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, first, recs, n=3)
    assert (out / ".parts" / "part-000001.done").exists() and not (out / ".parts" / "part-000002.done").exists()
    again = CachedLLM(ScriptedLLM(**script), RequestCache(cache))
    kept, _, st = run(tmp_path, again, recs, n=3)
    assert again.usage.cache_hits == 6  # the interrupted chunk's answers were paid for already
    for name in ("records.jsonl", "rejected.jsonl"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
    assert len(kept) == 5
    check_ledger(st, out)


def test_cli_best_of_n_against_a_server(tmp_path, cli):
    from openai_server import OpenAIServer

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"Say {w}."}) + "\n" for w in ("hi", "bye")))

    def reply(message):
        return "5" if message.startswith(JUDGE_MARK) and "bye" in message else "2" if message.startswith(JUDGE_MARK) else f"Sure: {message}"

    out = tmp_path / "out"
    with OpenAIServer(answer_fn=reply) as srv:
        r = cli("distill", "--input", src, "--out", out, "--llm", "openai", "--model", "m", "--base-url", srv.url,
                "--n", "2", "--no-cache", env={"OPENAI_API_KEY": "k", "DATAGEN_PROGRESS": "0"})
        assert r.returncode == 0, r.stderr
        judge_bodies = [x.body for x in srv.chat_requests if x.message.startswith(JUDGE_MARK)]
    assert len(judge_bodies) == 4 and all(b["logprobs"] and b["top_logprobs"] == 20 for b in judge_bodies)
    # the judge asks for a {"rating": k} reply, with room for the JSON (this server ignores it)
    schema = judge_bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["rating"]["enum"] == [1, 2, 3, 4, 5] and all(b["max_tokens"] == 24 for b in judge_bodies)
    st = json.loads((out / "stats.json").read_text())
    check_ledger(st, out)
    assert st["records"] == 2 and st["stages"]["distill.best_of_n"]["rejected"] == {"not_best_of_n": 2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["settings"]["n"] == 2 and "distill/judge" in manifest["prompt_templates"]
    r = cli("distill", "--input", src, "--out", tmp_path / "o2", "--num-samples", "2")
    assert r.returncode == 2 and "--num-samples" in r.stderr  # replaced by --n
