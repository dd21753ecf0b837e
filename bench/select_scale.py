"""``datagen select`` at scale: wall time and peak memory of two trees of the code, and whether
they select the same records.

A pool of N scored records (short synthetic texts: judge 1-5, complexity 1-5) and, in the
embedding cache, a **synthetic** unit vector (384 dimensions) for each: records in clusters of
about 20 around random centres, at cosines of 0.7-0.96 to their centre, so that the DEITA greedy
skips many as too similar. Every embedding is cached, so no model is loaded: what is timed is
reading the pool, the cache look-up, the screen, the greedy and writing the run directory. Each
tree runs ``datagen select`` in its own process (``PYTHONPATH`` = that tree), one after the
other, ``--repeat`` rounds; wall and CPU seconds (user + system: less moved by other work on a
shared machine) and peak memory (maximum RSS) come from ``wait4``.

    .venv/bin/python bench/select_scale.py --n 100000 --budget 1000 --code before=/tmp/before --code after=. --repeat 3
    .venv/bin/python bench/select_scale.py --n 1000000 --budget 10000 --code exact=. --code "hnsw=.|--search hnsw"

``/tmp/before``: an older tree (``git archive <commit> datagen | tar -x -C /tmp/before``); a tree
may carry its own flags after ``|``. Each output is also checked for the rule itself: the most
similar pair of selected records (``max_pair_cosine``, from the cached vectors) and how many
pairs are above tau.
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
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 384
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def make_pool(n: int, path: Path, cache: Path, seed: int = 0) -> None:
    """``path``: N records; ``cache``: their synthetic embeddings, keyed as the embedding store keys them."""
    sys.path.insert(0, str(ROOT))
    from datagen.core.kvcache import KVCache, sha_key
    from datagen.core.record import Record
    from datagen.score.embeddings import embed_text

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 20), DIM)).astype(np.float32)
    store = KVCache(cache / "embeddings" / "all-MiniLM-L6-v2" / "embeddings.sqlite")
    step = 20_000
    with open(path, "w", encoding="utf-8") as f:
        for a in range(0, n, step):
            m = min(step, n - a)
            c = rng.integers(len(centres), size=m)
            spread = rng.uniform(0.2, 0.65, size=(m, 1)).astype(np.float32)
            v = centres[c] / np.linalg.norm(centres[c], axis=1, keepdims=True) + spread * rng.normal(size=(m, DIM)).astype(np.float32) / np.sqrt(DIM)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            judge, cx = rng.integers(1, 6, size=m), rng.integers(1, 6, size=m)
            rows = []
            for k in range(m):
                words = " ".join(WORDS[j] for j in rng.integers(len(WORDS), size=12))
                rec = Record.from_turns(f"Task {a + k}: explain {words}.", f"Answer {a + k}: {words}, in order.",
                                        scores={"judge": float(judge[k]), "complexity": float(cx[k])})
                f.write(rec.to_json() + "\n")
                rows.append((sha_key(embed_text(rec)), v[k].astype(np.float32).tobytes()))
            store.put_many(rows)
    store.close()


def run(code: str, pool: Path, cache: Path, out: Path, budget: int, tau: float, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(code).resolve()), "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "datagen.cli", "select", "--input", str(pool), "--out", str(out), "--cache-dir", str(cache),
           "--budget", str(budget), "--tau", str(tau), "--no-embed", "--force", *extra]
    t0 = time.time()
    # cwd: the pool's folder, since ``python -m`` puts the working directory before PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd=pool.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({status}):\n{stderr[-3000:]}")
    return {"seconds": round(time.time() - t0, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_mib": round(usage.ru_maxrss / 1024)}


def digest(out: Path) -> dict:
    """What the run selected and rejected, and the bytes of its files."""
    kept = [json.loads(x) for x in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    rej = [json.loads(x) for x in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    sha = hashlib.sha256((out / "records.jsonl").read_bytes() + (out / "rejected.jsonl").read_bytes()).hexdigest()[:16]
    return {"sha": sha, "kept": [r["id"] for r in kept], "rejected": [(r["record"]["id"], r["reason"], r["evidence"].get("most_similar_id")) for r in rej],
            "cosines": [r["evidence"].get("cosine") for r in rej] + [r["flags"]["select"]["max_sim_to_selected"] for r in kept]}


def rule_check(out: Path, cache: Path, tau: float) -> dict:
    """The selected records' most similar pair, and the pairs above ``tau``, under the cached vectors."""
    sys.path.insert(0, str(ROOT))
    from datagen.core.kvcache import KVCache, sha_key
    from datagen.core.record import Record
    from datagen.score.embeddings import embed_text

    store = KVCache(cache / "embeddings" / "all-MiniLM-L6-v2" / "embeddings.sqlite")
    keys = [sha_key(embed_text(Record.model_validate_json(x))) for x in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    found = store.get_many(keys)
    v = np.stack([np.frombuffer(found[k], dtype=np.float32) for k in keys])
    worst, above = -1.0, 0
    for a in range(0, len(v), 4096):
        sims = v[a:a + 4096] @ v.T
        for r in range(len(sims)):
            sims[r, a + r] = -1.0  # not itself
        worst = max(worst, float(sims.max()))
        above += int((sims > tau).sum())
    return {"max_pair_cosine": round(worst, 6), "pairs_above_tau": above // 2}


def compare(a: dict, b: dict) -> str:
    if a["sha"] == b["sha"]:
        return "the same bytes"
    same = a["kept"] == b["kept"]
    differ = sum(x != y for x, y in zip(a["rejected"], b["rejected"])) + abs(len(a["rejected"]) - len(b["rejected"]))
    diff = max((abs(x - y) for x, y in zip(a["cosines"], b["cosines"]) if x is not None and y is not None), default=0.0)
    ka, kb = set(a["kept"]), set(b["kept"])
    jac = len(ka & kb) / max(1, len(ka | kb))
    return (f"{'the same' if same else 'a DIFFERENT'} selection and order (kept sets: Jaccard {jac:.4f}); "
            f"{differ} of {len(a['rejected'])} rejections differ "
            f"in (id, reason, nearest selected id); cosines within {diff:.1e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--tau", type=float, default=0.9)
    p.add_argument("--code", action="append", required=True, metavar="NAME=DIR", help="a tree to run (repeatable)")
    p.add_argument("--repeat", type=int, default=1, help="rounds; 0: only compare the outputs of an earlier run in --work")
    p.add_argument("--work", default=None, help="where the pool and its cache go (kept and reused); default a temp dir")
    p.add_argument("--extra", default="", help="more select flags, for every tree")
    p.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="select-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    pool, cache = work / f"pool-{a.n}.jsonl", work / f"cache-{a.n}"
    if a.make:
        make_pool(a.n, pool, cache)
        return 0
    if not pool.exists():  # in a child: a process's peak RSS counts what it held before exec, so this one stays small
        t0 = time.time()
        subprocess.run([sys.executable, __file__, "--make", "--n", str(a.n), "--work", str(work), "--code", "x=."], check=True)
        print(f"pool: {a.n} records, {pool.stat().st_size / 2**20:.0f} MiB, made in {time.time() - t0:.0f} s", file=sys.stderr)
    trees = dict(x.split("=", 1) for x in a.code)
    flags = {name: code.partition("|")[2].split() for name, code in trees.items()}
    trees = {name: code.partition("|")[0] for name, code in trees.items()}
    times: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(a.repeat):
        for name, code in trees.items():
            res = run(code, pool, cache, work / f"out-{name}", a.budget, a.tau, a.extra.split() + flags[name])
            times[name].append(res)
            print(f"round {r + 1} {name}: {res}", file=sys.stderr)
    digests = {name: digest(work / f"out-{name}") for name in trees}
    base = next(iter(trees))
    if not a.repeat:  # the outputs already there, compared
        for name in trees:
            print(json.dumps({"tree": name, "output_sha": digests[name]["sha"], "vs_" + base: compare(digests[base], digests[name])}))
        return 0
    for name in trees:
        secs = [t["seconds"] for t in times[name]]
        cpu = [t["cpu_s"] for t in times[name]]
        peak = max(t["peak_mib"] for t in times[name])
        ratio = statistics.median(t["seconds"] for t in times[base]) / statistics.median(secs)
        print(json.dumps({"tree": name, "n": a.n, "budget": a.budget, "tau": a.tau, "seconds": secs, "median_s": statistics.median(secs),
                          "cpu_s": cpu, "median_cpu_s": statistics.median(cpu),
                          "peak_mib": peak, "speedup_vs_" + base: round(ratio, 2), "kept": len(digests[name]["kept"]),
                          "output_sha": digests[name]["sha"], **rule_check(work / f"out-{name}", cache, a.tau),
                          "vs_" + base: compare(digests[base], digests[name])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
