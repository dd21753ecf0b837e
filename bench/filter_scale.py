"""``datagen filter --stages heuristics,exact,minhash`` at scale: wall time, peak memory, and the
same output for any number of workers.

**Data**: N records made as in ``bench/dedup.py --scale``: real sentences (the bundled seed tasks
and standard-library docstrings) recombined into instruction/answer pairs, with ~5% exact copies
and ~5% near copies (one word changed, a sentence added) mixed in; written once to ``--data``
(JSONL) and reused.

**Runs**: each ``--executor`` (``local``; ``ray``: a local Ray cluster of that many CPUs, started
and stopped by the command, so its start-up is in the wall time) with each ``--workers`` setting,
in a subprocess, ``--repeat`` times, interleaved. Peak memory
is the highest sum of the resident set sizes of the command and all its worker processes, sampled
every 50 ms (``psutil``), since the workers run at the same time; the per-record figure is the
peak minus the baseline of the same setting (a run on the first 1,000 records: the
interpreters, the libraries, the pool), divided by N. A Ray cluster's own processes (GCS, raylet,
its workers) are children of the command, so they are counted.
The outputs (``records.jsonl``, ``rejected.jsonl``) of every run are compared by sha256.

    .venv/bin/python bench/filter_scale.py --n 1000000 --workers 1,2
    .venv/bin/python bench/filter_scale.py --n 100000 --workers 1,2 --repeat 3
    .venv/bin/python bench/filter_scale.py --n 100000 --workers 2 --executor local,ray --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def make_data(path: Path, n: int, seed: int) -> None:
    from dedup import scale_rows  # the generator of bench/dedup.py's scale run

    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in scale_rows(n, seed):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def sampled(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int, str]:
    """Run ``cmd``: (wall seconds, peak of the summed RSS of it and its children in bytes, sampled
    every 50 ms, return code, stderr)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        p = psutil.Process(child.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], tree_rss(p))
            except psutil.Error:
                pass
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = child.communicate()
    wall = time.perf_counter() - t0
    done.set()
    t.join()
    return wall, peak[0], child.returncode, err


def run(data: Path, out: Path, workers: int, executor: str = "local") -> dict:
    cmd = [sys.executable, "-m", "datagen.cli", "filter", "--input", str(data), "--out", str(out), "--force",
           "--stages", "heuristics,exact,minhash", "--workers", str(workers), "--executor", executor]
    env = {**os.environ, "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    wall, peak, rc, err = sampled(cmd, env)
    if rc:
        sys.exit(err)
    stats = json.loads((out / "stats.json").read_text())
    digest = hashlib.sha256()
    for name in ("records.jsonl", "rejected.jsonl"):
        digest.update((out / name).read_bytes())
    return {"wall": wall, "peak": peak, "kept": stats["records"], "rejected": stats["rejected"], "sha": digest.hexdigest()[:16],
            "seconds": stats["extra"].get("seconds", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--executor", default="local", help="comma-separated: local, ray")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="where the generated records are kept (default: runs/bench/scale-N.jsonl)")
    args = ap.parse_args()
    data = Path(args.data or ROOT / "runs" / "bench" / f"scale-{args.n}.jsonl")
    data.parent.mkdir(parents=True, exist_ok=True)
    if not data.exists():
        t0 = time.perf_counter()
        make_data(data, args.n, args.seed)
        print(f"data: {args.n:,} records -> {data} ({data.stat().st_size / 2**20:,.0f} MiB, {time.perf_counter() - t0:.0f}s)")
    settings = [(e, int(w)) for e in args.executor.split(",") for w in args.workers.split(",")]
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=data.parent) as tmp:
        small = Path(tmp) / "small.jsonl"
        with open(data, encoding="utf-8") as src, open(small, "w", encoding="utf-8") as dst:
            for _, line in zip(range(1000), src):
                dst.write(line)
        base = {s: run(small, Path(tmp) / f"base-{s[0]}{s[1]}", s[1], s[0]) for s in settings}
        print("baseline (1,000 records): " + ", ".join(f"{e} {w} worker(s) {b['wall']:.1f}s, peak {b['peak'] / 2**20:,.0f} MiB"
                                                       for (e, w), b in base.items()))
        results: dict[tuple[str, int], list[dict]] = {s: [] for s in settings}
        for _ in range(args.repeat):
            for e, w in settings:
                r = run(data, Path(tmp) / f"{e}{w}", w, e)
                results[e, w].append(r)
                print(f"  {e} workers {w}: {r['wall']:.1f}s, peak {r['peak'] / 2**20:,.0f} MiB, kept {r['kept']:,}, rejected {r['rejected']:,}, "
                      f"outputs {r['sha']}, stage seconds {r['seconds']}", flush=True)
    print(f"\n{'executor':>8}{'workers':>8}{'wall s (median)':>17}{'records/s':>11}{'peak MiB':>10}{'bytes/record':>14}{'10M extrapolated':>18}")
    walls = {}
    for (e, w), rs in results.items():
        wall = statistics.median(r["wall"] for r in rs)
        peak = max(r["peak"] for r in rs)
        per = (peak - base[e, w]["peak"]) / args.n
        walls[e, w] = wall
        print(f"{e:>8}{w:>8}{wall:>17.1f}{args.n / wall:>11,.0f}{peak / 2**20:>10,.0f}{per:>14,.0f}"
              f"{(base[e, w]['peak'] + per * 10_000_000) / 2**30:>15.1f} GiB")
    shas = {r["sha"] for rs in results.values() for r in rs}
    print(f"outputs identical across every run: {len(shas) == 1}")
    if ("local", 1) in walls:
        for s in walls:
            if s != ("local", 1):
                print(f"speed-up of {s[0]} with {s[1]} workers over local with 1: {walls['local', 1] / walls[s]:.2f}x")


if __name__ == "__main__":
    main()
