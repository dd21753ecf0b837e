"""Peak memory of the model stages of ``datagen filter`` (semantic, quality) against another tree.

**Data**: N records with long answers (``--words`` words each, real sentences of the bundled seed
tasks and standard-library docstrings recombined, as ``bench/dedup.py`` makes them, ~5% exact and
~5% near copies), written once to a temporary folder.

**Runs**: ``datagen filter --stages semantic,quality`` (quality with its model-free scorer,
``complexity_features``, so that what is measured is what the stages hold, not a judge model) of
this tree and of ``--baseline`` (a checkout of another commit, e.g. ``git archive <commit> | tar
-x -C /tmp/before``), in subprocesses, ``--repeat`` times, interleaved, against one embedding
cache filled by a first run (so the encoder is not loaded and the peak is the data's). The peak
is the process's maximum resident set size (``wait4``); the outputs (``records.jsonl``,
``rejected.jsonl``) of every run are compared by sha256.

    .venv/bin/python bench/model_stage_memory.py --baseline /tmp/before --n 4000 --words 2500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def make_data(path: Path, n: int, words: int, seed: int) -> None:
    from dedup import scale_rows  # short answers; lengthened here with more of the same sentences

    rng = random.Random(seed)
    base = scale_rows(n, seed)
    pool = [r["output"] for r in base]
    with open(path, "w", encoding="utf-8") as f:
        for row in base:
            body = [row["output"]]
            while sum(len(b.split()) for b in body) < words:
                body.append(pool[rng.randrange(len(pool))])
            f.write(json.dumps({**row, "output": " ".join(body)}, ensure_ascii=False) + "\n")


def run(tree: Path, data: Path, out: Path, cache: Path) -> tuple[float, float, str]:
    """(peak RSS in MB, seconds, sha256 of the outputs) of one filter run of ``tree``."""
    import time

    env = {**os.environ, "PYTHONPATH": str(tree), "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "datagen.cli", "filter", "--input", str(data), "--out", str(out), "--stages", "semantic,quality",
           "--set", "quality.scorers=[complexity_features]", "--workers", "1", "--cache-dir", str(cache)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{tree}: exit {status}: {proc.stderr.read().decode()[-2000:]}")
    h = hashlib.sha256()
    for name in ("records.jsonl", "rejected.jsonl"):
        h.update((out / name).read_bytes())
    return usage.ru_maxrss / 1024, secs, h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of the tree to compare with")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--words", type=int, default=2500, help="words per answer, at least")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        data = t / "pool.jsonl"
        make_data(data, args.n, args.words, args.seed)
        cache = t / "cache"
        print(f"{args.n} records, {data.stat().st_size / 1e6:.1f} MB; filling the embedding cache", file=sys.stderr)
        run(ROOT, data, t / "warm", cache)
        peaks: dict[str, list[float]] = {"baseline": [], "this tree": []}
        hashes: set[str] = set()
        for k in range(args.repeat):
            for name, tree in (("baseline", args.baseline.resolve()), ("this tree", ROOT)):
                peak, secs, digest = run(tree, data, t / f"{name.replace(' ', '_')}{k}", cache)
                peaks[name].append(peak)
                hashes.add(digest)
                print(f"  {name}: {peak:.0f} MB peak, {secs:.1f} s, outputs {digest}", file=sys.stderr)
        med = {name: statistics.median(v) for name, v in peaks.items()}
        print(json.dumps({"n": args.n, "input_mb": round(data.stat().st_size / 1e6, 1), "peak_rss_mb_median": {k: round(v) for k, v in med.items()},
                          "ratio_this_over_baseline": round(med["this tree"] / med["baseline"], 3), "same_outputs": len(hashes) == 1}))


if __name__ == "__main__":
    main()
