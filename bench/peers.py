"""Near-duplicate removal side by side: our MinHash stage, rensa, datatrove and SemHash on the
same documents in one run, each in its own subprocess: its time (the tool's work, not its imports)
and its peak RSS (the summed RSS of the subprocess and any workers it starts, sampled every 50 ms).

**Corpus and truth** as in ``bench/dedup.py``: ``--docs`` real passages (seed tasks and
standard-library docstrings), ``--variants`` of them with a near-duplicate at a drawn Jaccard level;
the truth is the exact shingle Jaccard (word 5-grams) of every pair. The documents a perfect
detector would drop are those the survivor rule drops when given every true pair at J >=
``--threshold`` (0.7).

**Tools**, each as its own documentation shows it used, at its defaults where it has them:

* ``ours``: ``datagen``'s MinHash stage (128 permutations, LSH tuned for 0.7, every candidate
  verified by exact Jaccard, survivors never chained);
* ``rensa``: ``RMinHashDeduplicator`` (128 permutations, LSH 16 bands, threshold 0.7) over the
  same word 5-grams, documents in order, a document dropped when ``add`` finds it a duplicate of one
  kept; its pairs are (dropped, the kept documents it matched);
* ``datatrove``: its four-step MinHash pipeline (signatures, buckets, clusters, filter) on
  ``LocalPipelineExecutor``, ``MinhashConfig`` defaults (14 buckets x 8 hashes, 5-grams of its own
  normalised words) but its sha1 hash (its default xxhash path hands ``str`` to xxhash, which
  xxhash 4 refuses), one task per step (14 for the buckets); its pairs are the bucket matches it
  writes (``.dups``), unverified, and a cluster keeps one document;
* ``semhash``: ``SemHash.from_records(...).self_deduplicate()`` (cosine >= 0.9) over a static model
  distilled from all-MiniLM-L6-v2 (:mod:`datagen.score.static`): a semantic criterion, so its
  agreement with a Jaccard truth is a different question; reported for time and memory.

Pair precision/recall: a tool's declared pairs against the true pairs at J >= threshold.
Documents: how many each drops (which member of a group survives is each tool's own rule, so the
sets are not compared), and how many were dropped with no true near-duplicate left in the output.

    .venv/bin/python bench/peers.py                 # 8,000 documents
    .venv/bin/python bench/peers.py --docs 30000 --variants 5000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOOLS = ("ours", "rensa", "datatrove", "semhash")


def shingles(text: str, n: int = 5) -> list[str]:
    from dedup import tokens

    toks = tokens(text)
    return [" ".join(toks[k:k + n]) for k in range(max(1, len(toks) - n + 1))]


def tool_ours(docs: list[str], threshold: float, work: Path) -> tuple[set[int], set[tuple[int, int]]]:
    from dedup import Recording

    from datagen.core.record import Record
    from datagen.core.stats import Stats
    from datagen.curate.base import FilterContext
    from datagen.curate.config import MinHashConfig

    records = [Record.from_turns("q", d) for d in docs]
    stage = Recording(MinHashConfig(text="response", threshold=threshold, score_key=None))
    stage.annotate(records, FilterContext(stats=Stats(), cache_dir=work, progress=False))
    dropped = {i for i, r in enumerate(records) if stage.verdict(r)}
    return dropped, {(i, j) for i, j, v in stage.checked if v >= threshold}


def tool_rensa(docs: list[str], threshold: float, work: Path) -> tuple[set[int], set[tuple[int, int]]]:
    from rensa import RMinHash, RMinHashDeduplicator

    dedup = RMinHashDeduplicator(threshold=threshold, num_perm=128, use_lsh=True, num_bands=16)
    dropped: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    for i, d in enumerate(docs):
        m = RMinHash(num_perm=128, seed=42)
        m.update(shingles(d))
        if not dedup.add(str(i), m):
            dropped.add(i)
            pairs.update((min(i, int(k)), max(i, int(k))) for k in dedup.get_duplicates(m))
    return dropped, pairs


def tool_datatrove(docs: list[str], threshold: float, work: Path) -> tuple[set[int], set[tuple[int, int]]]:
    import struct

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.readers import JsonlReader

    src = work / "input"
    src.mkdir()
    (src / "docs.jsonl").write_text("".join(json.dumps({"text": d, "id": str(i)}) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    from datatrove.utils.hashing import HashConfig

    cfg = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))  # its xxhash path passes str, which xxhash 4 refuses
    sig, buckets, remove = work / "signatures", work / "buckets", work / "remove"
    steps = [
        ([JsonlReader(str(src)), MinhashDedupSignature(output_folder=str(sig), config=cfg)], 1),
        ([MinhashDedupBuckets(input_folder=str(sig), output_folder=str(buckets), config=cfg)], cfg.num_buckets),
        ([MinhashDedupCluster(input_folder=str(buckets), output_folder=str(remove), config=cfg)], 1),
        ([JsonlReader(str(src)), MinhashDedupFilter(input_folder=str(remove))], 1),
    ]
    for k, (pipeline, tasks) in enumerate(steps):  # each step its own logs: they hold its completion marks
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, logging_dir=str(work / f"logs-{k}")).run()
    dropped: set[int] = set()
    for f in remove.glob("*.remove"):
        data = f.read_bytes()
        dropped.update(x for (x,) in struct.iter_unpack("<I", data))
    pairs: set[tuple[int, int]] = set()
    sentinel = (1 << 32) - 1
    for f in buckets.glob("*.dups"):
        for _, a, _, b in struct.iter_unpack("<4I", f.read_bytes()):
            if a != sentinel and b != sentinel:
                pairs.add((min(a, b), max(a, b)))
    return dropped, pairs


def static_folder(cache: Path) -> Path:
    """The static model distilled from all-MiniLM-L6-v2 under ``cache`` (distilled if absent)."""
    from datagen.score.embeddings import EmbeddingStore
    from datagen.score.static import static_model

    store = EmbeddingStore(cache)
    return static_model(cache, store.model_path(), store.model_id, progress=False).folder


def tool_semhash(docs: list[str], threshold: float, work: Path) -> tuple[set[int], set[tuple[int, int]]]:
    from model2vec import StaticModel
    from semhash import SemHash

    from datagen.score.static import StaticEncoder

    ours = StaticEncoder(static_folder(work.parent))  # distilled by the parent, not timed here
    model = StaticModel(vectors=ours.vectors, tokenizer=ours.tokenizer, normalize=True)
    result = SemHash.from_records(records=docs, model=model).self_deduplicate()
    index = {d: i for i, d in enumerate(docs)}
    dropped = {index[f.record] for f in result.filtered}
    pairs = {tuple(sorted((index[f.record], index[d]))) for f in result.filtered for d, _ in f.duplicates}
    return dropped, pairs


def child(args: argparse.Namespace) -> None:
    docs = json.loads(Path(args.docs_file).read_text(encoding="utf-8"))
    work = Path(args.docs_file).parent / f"work-{args.tool}"
    work.mkdir()
    t0 = time.perf_counter()
    dropped, pairs = globals()[f"tool_{args.tool}"](docs, args.threshold, work)
    seconds = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps({"seconds": seconds, "dropped": sorted(dropped), "pairs": sorted(pairs)}), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=8000)
    ap.add_argument("--variants", type=int, default=1500)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--tool", help=argparse.SUPPRESS)
    ap.add_argument("--docs-file", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["DATAGEN_PROGRESS"] = "0"
    if args.tool:
        return child(args)

    from dedup import build_corpus, expected_drops, orphans, true_pairs
    from filter_scale import sampled

    from datagen.core.record import Record

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    docs = build_corpus(args.docs, args.variants, args.seed)
    records = [Record.from_turns("q", d) for d in docs]
    truth = true_pairs(docs, args.threshold)
    true = {p for p, v in truth.items() if v >= args.threshold}
    expected = expected_drops(records, truth, args.threshold)
    print(f"corpus: {len(docs)} documents, {len(true)} true pairs at J >= {args.threshold}, a perfect detector drops {len(expected)}")
    work = Path(tempfile.mkdtemp(prefix="peers-"))
    docs_file = work / "docs.json"
    docs_file.write_text(json.dumps(docs), encoding="utf-8")
    if "semhash" in args.tools:
        static_folder(work)
    print("| tool | seconds | peak RSS MiB | pairs declared | pair precision | pair recall | dropped | dropped with no near-duplicate left |")
    print("|---|---|---|---|---|---|---|---|")
    for tool in args.tools.split(","):
        out = work / f"{tool}.json"
        _, peak, rc, err = sampled([sys.executable, __file__, "--tool", tool, "--docs-file", str(docs_file), "--out", str(out),
                                    "--threshold", str(args.threshold)])
        if rc != 0:
            print(f"| {tool} | failed: {err.strip().splitlines()[-1] if err.strip() else rc} |")
            continue
        res = json.loads(out.read_text(encoding="utf-8"))
        pairs = {tuple(p) for p in res["pairs"]}
        dropped = set(res["dropped"])
        prec = len(pairs & true) / max(1, len(pairs))
        rec = len(pairs & true) / max(1, len(true))
        ids = {records[i].id for i in dropped}
        print(f"| {tool} | {res['seconds']:.1f} | {peak / 2**20:.0f} | {len(pairs)} | {prec:.4f} | {rec:.4f} | {len(dropped)} | "
              f"{orphans(records, truth, args.threshold, ids)} |")


if __name__ == "__main__":
    main()
