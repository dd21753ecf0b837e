"""The embedded transformers backend against llama.cpp's server on the same model, and the judge
with and without logprobs.

Part 1, throughput: the same distill prompts (the first ``--prompts`` seed instructions, the
distill system prompt, ``--max-tokens`` new tokens, temperature 0) answered by

* the embedded backend (transformers, fp32, at batch 1 and at ``--batch``);
* llama.cpp's server over the GGUF the embedded model is converted from (one thread), with the
  client at concurrency 1 and 4. The backend learns that llama-cpp-python's server serves one
  request at a time; the concurrency-4 row forces 4 in flight (``probe=False``) to show what that
  buys: nothing but a queue.

Each row is the median over ``--repeats`` runs (no request cache); tokens/s counts generated
tokens, s/record is wall time per prompt.

Part 2, the judge: the same best-of-3 candidates (answers to ``--judge-prompts`` prompts, drawn
once) are rated by the distill judge three ways: logprobs without structured output (the expected
rating from the digit probabilities), logprobs with the ``{"rating": k}`` schema, and the schema
on a server without logprobs (``--logits_all false``). Reported: the methods the ratings came
from, how many prompts had a rated winner, and for each pair of ways how often they picked the
same winner.

    .venv/bin/python bench/servers.py                  # 20 prompts, 64 tokens; needs make llama
    .venv/bin/python bench/servers.py --prompts 8 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.core import prompts as templates  # noqa: E402
from datagen.generate.distill import Teacher, load_system_prompt  # noqa: E402
from datagen.score.judge import JudgeSelector  # noqa: E402
from datagen.core.io import read_records  # noqa: E402
from datagen.llm import GenParams  # noqa: E402
from datagen.llm.llama_server import LlamaServer, embedded_gguf  # noqa: E402
from datagen.llm.local import LocalLLM  # noqa: E402
from datagen.llm.openai_compat import OpenAICompatLLM  # noqa: E402


def timed(llm, requests, params, repeats: int) -> dict:
    seconds, tokens = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = llm.generate(requests, params)
        seconds.append(time.perf_counter() - t0)
        tokens.append(sum(c.completion_tokens for c in out))
    s = statistics.median(seconds)
    return {"seconds": round(s, 1), "tokens": int(statistics.median(tokens)), "tokens_per_s": round(statistics.median(tokens) / s, 1),
            "s_per_record": round(s / len(requests), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--judge-prompts", type=int, default=20)
    ap.add_argument("--judge-only", action="store_true", help="part 2 only")
    args = ap.parse_args()

    seeds = list(read_records(ROOT / "seeds" / "175.jsonl", require_answer=False))
    system, _ = load_system_prompt("distill/system")
    params = GenParams(max_tokens=args.max_tokens, temperature=0.0, top_p=1.0, seed=0)
    rows = {}

    local = LocalLLM("smollm2", batch_size=1)
    teacher = Teacher(local, params, system)
    requests = [r for rec in seeds[: args.prompts] for r in teacher.requests(rec)]
    if not args.judge_only:
        local.generate(requests[:2], params)  # load and warm up
    for batch in () if args.judge_only else (1, args.batch):
        local.batch_size = batch
        rows[f"embedded transformers, batch {batch}"] = timed(local, requests, params, args.repeats)
        print(rows, file=sys.stderr)
    del local

    with LlamaServer(embedded_gguf(), alias="smollm2", logprobs=True) as srv:
        for conc, probe in () if args.judge_only else ((1, True), (4, False)):
            llm = OpenAICompatLLM("smollm2", base_url=srv.url, concurrency=conc, probe=probe, timeout=600)
            llm.generate(requests[:1], params)  # warm up
            rows[f"llama.cpp server, concurrency {conc}"] = timed(llm, requests, params, args.repeats)
            llm.close()
            print(rows, file=sys.stderr)

        # part 2: candidates drawn once, from the server with logprobs
        sampler = OpenAICompatLLM("smollm2", base_url=srv.url, timeout=600)
        draw = Teacher(sampler, GenParams(max_tokens=args.max_tokens, temperature=0.7, top_p=0.95, seed=0), system)
        recs = seeds[: args.judge_prompts]
        reqs = [r for rec in recs for r in draw.requests(rec, samples=3)]
        comps = sampler.generate(reqs, draw.params)
        items = [(rec, [c.text.strip() or "(empty)" for c in comps[3 * i: 3 * i + 3]]) for i, rec in enumerate(recs)]
        judge_template = templates.load("distill/judge")
        ways = {}
        plain = JudgeSelector(sampler, judge_template)
        ways["logprobs"] = JudgeSelector(sampler, judge_template, replace(plain.params, json_schema=None)).pick_best_many(items)
        ways["logprobs + schema"] = plain.pick_best_many(items)
        sampler.close()
    with LlamaServer(embedded_gguf(), alias="smollm2", logprobs=False) as srv:
        blind = OpenAICompatLLM("smollm2", base_url=srv.url, timeout=600)
        ways["schema, no logprobs"] = JudgeSelector(blind, judge_template).pick_best_many(items)
        caps = blind.describe()["capabilities"]
        blind.close()

    judge = {name: {"methods": dict(Counter(s.method for _, scores in picks for s in scores)),
                    "prompts_with_a_rated_winner": sum(scores[w].value is not None for w, scores in picks if w is not None)}
             for name, picks in ways.items()}
    # candidate by candidate: the digit the constrained judge wrote (json, greedy) against the
    # most likely digit of the distribution the expected rating averages
    pairs = [(a.value, max(b.evidence["probs"].items(), key=lambda kv: kv[1])[0], b.value)
             for (_, sa), (_, sb) in zip(ways["schema, no logprobs"], ways["logprobs + schema"])
             for a, b in zip(sa, sb) if a.value is not None and b.value is not None and b.evidence.get("probs")]
    if pairs:
        judge["json digit == most likely digit (logprobs + schema)"] = f"{sum(int(float(m)) == int(j) for j, m, _ in pairs)}/{len(pairs)}"
        judge["mean |json - expected|"] = round(statistics.mean(abs(j - e) for j, _, e in pairs), 3)
    names = list(ways)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            same = sum(x == y for (x, _), (y, _) in zip(ways[a], ways[b]))
            judge[f"same winner: {a} vs {b}"] = f"{same}/{len(items)}"
    print(json.dumps({"throughput": rows, "judge": judge, "no_logprobs_server": caps}, indent=1))


if __name__ == "__main__":
    main()
