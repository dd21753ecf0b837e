"""Novelty check (ROUGE-L > 0.7 against a task pool): the inverted index vs the all-pairs loop.

The pool holds synthetic instructions: a verb, then 5-19 tokens, 40% function words ("the",
"a", "of"... Zipf-distributed) and 60% content words drawn Zipf-like from 20,000 made-up words;
about 10% are Chinese (8-20 characters); the candidates are half near-duplicates of pool items (a few words edited) and half
fresh sentences. We time, in this process:

* the index: build over the whole pool (``--pool``, 50,000), then check ``--candidates`` (1,000);
* the naive loop: ROUGE-L of each candidate against every pool item, on a smaller pool
  (``--naive-pool``, 2,000) because the full one would take too long; its cost is linear in the
  pool size, so we also extrapolate it to the full pool. The naive loop uses the same fast
  bit-parallel LCS as the index, so the ratio measures the pruning alone.

Both answer the same question exactly; the script checks that they agree on the small pool.
Timings are the median of ``--repeat`` runs.

    .venv/bin/python bench/novelty.py
    .venv/bin/python bench/novelty.py --pool 100000 --candidates 2000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.generate.novelty import NoveltyIndex, best_match_bruteforce  # noqa: E402

VERBS = "write describe explain summarize compare list classify translate rewrite generate suggest evaluate outline analyze identify find create design propose convert calculate estimate predict rank sort extract paraphrase critique draft plan".split()
AUDIENCE = "children students beginners experts managers tourists parents engineers doctors teenagers".split()
ZH = list("写一首关于秋天的诗把下面句子翻译成英文解释量子计算基本原理列出三种常见水果总结这篇文章主要内容给出健康生活建议描述城市夜晚景色分析市场趋势比较两种方法优缺点"
          "春夏冬天气温度山水河流湖海森林草原沙漠城市乡村学校医院公司工厂银行商店餐厅电影音乐历史地理数学物理化学生物经济政治文化艺术体育")
FUNCTION = "the a of to and in for that is on with as it this be by from or an at are which your its".split()


def _vocabulary(n: int, rng: random.Random) -> list[str]:
    """n distinct made-up content words (a real instruction pool has tens of thousands)."""
    syll = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))))
    return sorted(words)


_RNG0 = random.Random(12345)
CONTENT = _vocabulary(20_000, _RNG0)
_CUM = list(__import__("itertools").accumulate(1.0 / (r + 1) for r in range(len(CONTENT))))  # Zipf


_FCUM = list(__import__("itertools").accumulate(1.0 / (r + 1) for r in range(len(FUNCTION))))


def _word(rng: random.Random) -> str:
    return rng.choices(CONTENT, cum_weights=_CUM)[0]


def sentence(rng: random.Random) -> str:
    """A verb, then 5-19 tokens: function words (40%, Zipf over 24) and content words."""
    if rng.random() < 0.1:
        return "".join(rng.choice(ZH) for _ in range(rng.randint(8, 20)))
    words = [rng.choice(VERBS).capitalize()]
    for _ in range(rng.randint(5, 19)):
        words.append(rng.choices(FUNCTION, cum_weights=_FCUM)[0] if rng.random() < 0.4 else _word(rng))
    if rng.random() < 0.3:
        words.insert(rng.randrange(1, len(words)), f"for {rng.choice(AUDIENCE)}")
    return " ".join(words) + rng.choice(".?")


def near_duplicate(rng: random.Random, text: str) -> str:
    if not text.isascii():
        chars = list(text)
        for _ in range(rng.randint(1, 2)):
            chars[rng.randrange(len(chars))] = rng.choice(ZH)
        return "".join(chars)
    words = text.split()
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            words[i] = _word(rng)
        else:
            words.insert(i, rng.choice(["very", "really", "the", "please", "quickly"]))
    return " ".join(words)


def make_data(pool_size: int, n_candidates: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[str]]:
    rng = random.Random(seed)
    pool = [(f"t{i}", sentence(rng)) for i in range(pool_size)]
    cands = [near_duplicate(rng, rng.choice(pool)[1]) if i % 2 == 0 else sentence(rng) for i in range(n_candidates)]
    return pool, cands


def run_index(pool: list[tuple[str, str]], cands: list[str], threshold: float) -> tuple[float, float, list, NoveltyIndex]:
    t0 = time.perf_counter()
    idx = NoveltyIndex(threshold)
    for i, t in pool:
        idx.add(i, t)
    t1 = time.perf_counter()
    answers = [idx.best_match(c) for c in cands]
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, answers, idx


def run_naive(pool: list[tuple[str, str]], cands: list[str], threshold: float) -> tuple[float, list]:
    t0 = time.perf_counter()
    answers = [best_match_bruteforce(pool, c, threshold) for c in cands]
    return time.perf_counter() - t0, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--candidates", type=int, default=1_000)
    ap.add_argument("--naive-pool", type=int, default=2_000)
    ap.add_argument("--naive-candidates", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    pool, cands = make_data(args.pool, args.candidates)
    builds, checks = [], []
    for _ in range(args.repeat):
        b, c, answers, idx = run_index(pool, cands, args.threshold)
        builds.append(b)
        checks.append(c)
    dups = sum(a is not None for a in answers)
    st = idx.stats
    print(f"index, pool {args.pool:,}: build {statistics.median(builds):.2f} s, check {args.candidates:,} candidates "
          f"{statistics.median(checks):.2f} s ({statistics.median(checks) / args.candidates * 1e3:.3f} ms each); "
          f"{dups} near-duplicates found")
    probes = st["probes"] or 1
    print(f"  per candidate (last repeat): {st['reached'] / probes:.1f} pool items reached through the index, "
          f"{st['candidates'] / probes:.1f} left after the positional filter, "
          f"{st['bound_pruned'] / probes:.1f} pruned by the overlap bound, {st['lcs_computed'] / probes:.1f} exact LCS "
          f"(of {args.pool:,} for the naive loop)")

    small_pool, _ = pool[: args.naive_pool], None
    small_cands = cands[: args.naive_candidates]
    naive_t, idx_t = [], []
    for _ in range(args.repeat):
        t, naive_answers = run_naive(small_pool, small_cands, args.threshold)
        naive_t.append(t)
        _, c, idx_answers, _ = run_index(small_pool, small_cands, args.threshold)
        idx_t.append(c)
    agree = all(
        (a is None and b is None) or (a is not None and b is not None and abs(a[1] - b[1]) < 1e-12)
        for a, b in zip(naive_answers, idx_answers)
    )
    per_pair = statistics.median(naive_t) / (args.naive_pool * args.naive_candidates)
    print(f"naive loop, pool {args.naive_pool:,}: check {args.naive_candidates} candidates {statistics.median(naive_t):.2f} s "
          f"({statistics.median(naive_t) / args.naive_candidates * 1e3:.2f} ms each); index on the same pool "
          f"{statistics.median(idx_t):.3f} s; ratio {statistics.median(naive_t) / statistics.median(idx_t):.0f}x; "
          f"same answers: {agree}")
    naive_full = per_pair * args.pool * args.candidates
    print(f"naive loop extrapolated to pool {args.pool:,} x {args.candidates:,} candidates: {naive_full:.0f} s "
          f"vs index {statistics.median(checks):.2f} s: ratio {naive_full / statistics.median(checks):.0f}x")
    if not agree:
        sys.exit("index and naive loop disagree")


if __name__ == "__main__":
    main()
