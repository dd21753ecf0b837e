"""Speed of the model-based curation stages on this machine, with an extrapolation to 100K records.

* embeddings: all-MiniLM-L6-v2 texts/s at ``--embed-batch`` over ``--n`` synthetic records
  (instruction + answer, 40-120 words), cold cache, then a warm rerun (cache lookups only);
* semantic dedup without the model: k-means partition + greedy in-cluster comparison over
  ``--dedup-n`` random unit vectors (384-d, 5% planted near-duplicates), against the baseline of
  one cluster (all pairs), in the same process;
* quality (``--quality N``, default 16): judge and IFD records/s with the embedded SmolLM2-135M.

    .venv/bin/python bench/curation_models.py                       # 2,000 embeddings, 100K dedup
    .venv/bin/python bench/curation_models.py --n 500 --dedup-n 20000 --quality 8
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DATAGEN_PROGRESS", "0")

from datagen.curate.base import FilterContext  # noqa: E402
from datagen.score.embeddings import EmbeddingStore, embed_text  # noqa: E402
from datagen.curate.stages.quality import QualityStage  # noqa: E402
from datagen.curate.dedup.neighbors import similar_pairs  # noqa: E402
from datagen.curate.dedup.groups import survivor_walk  # noqa: E402
from datagen.core.record import Record  # noqa: E402
from datagen.core.stats import Stats  # noqa: E402

WORDS = ("data model answer question river city code list number history music science table "
         "write explain compare summarize translate improve describe analyse poem story recipe").split()


def synthetic_records(n: int, seed: int = 0) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + f" #{i}?"
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 90))) + "."
        out.append(Record.from_turns(q, a))
    return out


def bench_embeddings(n: int, batch: int) -> float:
    texts = [embed_text(r) for r in synthetic_records(n)]
    with tempfile.TemporaryDirectory() as d:
        store = EmbeddingStore(Path(d), batch_size=batch)
        store._load()
        t = time.perf_counter()
        store.embed(texts, progress=False)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        EmbeddingStore(Path(d)).embed(texts, progress=False)
        warm = time.perf_counter() - t
    print(f"embeddings: {n} texts, batch {batch}: {cold:.1f} s = {n / cold:.0f} texts/s; warm cache {warm:.2f} s = {n / warm:.0f} texts/s")
    return n / cold


def bench_dedup(n: int, cluster_size: int) -> float:
    """The semantic stage's pair search and survivor walk on ``n`` planted vectors: the exact
    search (up to 50K rows) against the IVF index at ``n / cluster_size`` cells."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, 384)).astype(np.float32)
    planted = rng.choice(n, n // 20, replace=False)
    base[planted] = base[(planted + 1) % n] + 0.05 * rng.standard_normal((len(planted), 384)).astype(np.float32)
    vecs = base / np.linalg.norm(base, axis=1, keepdims=True)
    times = {}
    for search in ("exact", "ivf"):
        t = time.perf_counter()
        a, b, cos = similar_pairs(vecs, 0.95, search, lists=max(1, n // cluster_size), progress=False)
        found = len(survivor_walk(np.arange(n), a, b, cos))
        times[search] = time.perf_counter() - t
        print(f"semantic dedup of {n} vectors, {search} search: {times[search]:.1f} s, {found} duplicates (planted {len(planted)})")
    return times["ivf"]


def bench_quality(n: int) -> tuple[float, float]:
    from datagen.llm.local import LocalLLM

    recs = synthetic_records(n, seed=1)
    llm = LocalLLM("smollm2", batch_size=8)
    llm._load()
    rates = []
    for scorer in ("judge", "ifd"):
        with tempfile.TemporaryDirectory() as d:
            ctx = FilterContext(stats=Stats(), cache_dir=Path(d), llm_factory=lambda: llm, progress=False)
            t = time.perf_counter()
            QualityStage(scorers=[scorer]).annotate([r.model_copy(deep=True) for r in recs], ctx)
            rates.append(n / (time.perf_counter() - t))
            print(f"quality {scorer}: {n} records, batch 8: {rates[-1]:.2f} records/s")
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--embed-batch", type=int, default=64)
    ap.add_argument("--dedup-n", type=int, default=100_000)
    ap.add_argument("--cluster-size", type=int, default=1000)
    ap.add_argument("--quality", type=int, default=16)
    args = ap.parse_args()
    per_s = bench_embeddings(args.n, args.embed_batch)
    dedup_s = bench_dedup(args.dedup_n, args.cluster_size) * (100_000 / args.dedup_n)
    print(f"extrapolated semantic dedup of 100K records: {100_000 / per_s / 60:.0f} min embedding + {dedup_s:.0f} s pair search (IVF)")
    if args.quality:
        judge, ifd = bench_quality(args.quality)
        print(f"extrapolated 100K records: judge {100_000 / judge / 3600:.1f} h, IFD {100_000 / ifd / 3600:.1f} h")


if __name__ == "__main__":
    main()
