"""How `datagen report` copes with a large run: build time, file size, time to first render.

    .venv/bin/python bench/report_scale.py [--n 100000] [--out /tmp/report_scale]

Writes a synthetic ``filter`` run directory of N records (random words, 60-300 per record, with
scores, heuristic/exact/MinHash/semantic/quality rejections in realistic proportions) and, with
``--embeddings``, a synthetic embedding cache (random 384-d vectors) so the PCA map is exercised.
Then it times ``datagen report`` and opens the page in headless Chromium (tests/browser.py):
navigation start to the first rendered page of the record browser, and one full-text search
(which parses the lazily loaded record texts).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

WORDS = ["data", "model", "token", "train", "loss", "batch", "sort", "list", "apple", "river", "mountain", "explain", "write", "poem", "code", "python", "function", "value", "index", "search", "network", "cache", "layer", "vector", "matrix", "graph", "node", "edge", "query", "answer", "question", "story", "science", "history"]


def make_run(out: Path, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """A finished ``filter`` run of ``n`` records; returns (id, embed text) of those with answers."""
    from datagen.core.record import Record, Rejection
    from datagen.core.rundir import RunDir
    from datagen.core.stats import Stats

    rng = random.Random(seed)
    run = RunDir(out, "filter", {"bench": n}, force=True)
    kept, rejected, texts = [], [], []
    st = Stats()
    stages = ["heuristics", "exact", "minhash", "semantic", "quality"]
    for s in stages:
        st.seen(s, 0)
    prev_id = None
    for i in range(n):
        words = rng.randint(60, 300)
        body = " ".join(rng.choice(WORDS) for _ in range(words))
        user, answer = f"Task {i}: " + body[: len(body) // 3], body[len(body) // 3 :]
        scores = {"judge": round(rng.uniform(1, 5), 3), "ifd": round(rng.uniform(0.1, 1.3), 3), "complexity": round(rng.uniform(1, 6), 3)}
        rec = Record.from_turns(user, answer, source=rng.choice(["distill:m", "self-instruct", "evol:deepening"]), scores=scores,
                                meta={"operation": "deepening", "round": 1} if i % 3 == 2 else {})
        texts.append((rec.id, rec.instruction + "\n\n" + rec.response))
        u = rng.random()
        if u < 0.10:
            stage, reason, ev = "heuristics", "truncated", {"how": "finish_reason_length"}
        elif u < 0.13 and prev_id:
            stage, reason, ev = "exact", "exact_duplicate", {"duplicate_of": prev_id}
        elif u < 0.20 and prev_id:
            stage, reason, ev = "minhash", "near_duplicate", {"duplicate_of": prev_id, "jaccard": round(rng.uniform(0.7, 1), 3)}
        elif u < 0.25 and prev_id:
            stage, reason, ev = "semantic", "semantic_duplicate", {"duplicate_of": prev_id, "cosine": round(rng.uniform(0.95, 1), 3)}
        elif scores["ifd"] > 1.0:
            stage, reason, ev = "quality", "ifd_above_max", {"ifd": scores["ifd"], "max": 1.0}
        else:
            kept.append(rec)
            prev_id = rec.id
            continue
        rejected.append(Rejection(stage=stage, reason=reason, evidence=ev, record=rec))
    # the funnel: each stage sees what the earlier ones kept
    left = n
    for s in stages:
        drops = [r for r in rejected if r.stage == s]
        st.seen(s, left)
        for r in drops:
            st.rejected(s, r.reason)
        left -= len(drops)
        st.kept(s, left)
    run.write_read_part(n, [])
    run.write_part(1, kept, rejected, st)
    describe = [{"name": "minhash", "bands": 18, "rows": 7, "threshold": 0.7},
                {"name": "quality", "scorers": ["judge", "ifd", "complexity"], "max_ifd": 1.0}]
    run.finalize({"stages": describe}, n_parts=2, records_from=1)
    return texts


def fake_embeddings(cache: Path, texts: list[tuple[str, str]], dim: int = 384) -> None:
    import numpy as np

    from datagen.core.kvcache import KVCache, sha_key

    rng = np.random.default_rng(0)
    kv = KVCache(cache / "embeddings" / "all-MiniLM-L6-v2" / "embeddings.sqlite")
    for lo in range(0, len(texts), 10000):
        chunk = texts[lo : lo + 10000]
        vecs = rng.normal(size=(len(chunk), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        kv.put_many((sha_key(t), v.tobytes()) for (_, t), v in zip(chunk, vecs))
    kv.close()


def time_browser(page: Path, word: str) -> dict[str, float]:
    import browser

    d = browser.chrome()
    try:
        t0 = time.time()
        d.get(browser.file_url(page))
        while not d.execute_script("return window.__reportReady"):
            time.sleep(0.02)
        wall = time.time() - t0
        ready_ms = d.execute_script("return window.__reportReady")
        fcp = d.execute_script("var e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null")
        t1 = time.time()
        d.execute_script("var q = document.getElementById('q'); q.value = arguments[0]; q.dispatchEvent(new Event('input'));", word)
        while not d.find_element("id", "count").text.startswith("1 of"):  # the word matches one record
            time.sleep(0.02)
        search = time.time() - t1
        return {"first_contentful_paint_ms": fcp or -1, "browser_ready_ms": ready_ms, "load_wall_s": round(wall, 2), "first_search_s": round(search, 2)}
    finally:
        browser.quit(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/report_scale"))
    ap.add_argument("--embeddings", action="store_true", help="write a synthetic embedding cache so the map is drawn")
    a = ap.parse_args()
    t = time.time()
    texts = make_run(a.out / "filter", a.n)
    if a.embeddings:
        fake_embeddings(a.out / "cache", texts)
    print(f"wrote {a.n} records in {time.time() - t:.1f}s", file=sys.stderr)
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "datagen.cli", "report", str(a.out / "filter"), "--cache-dir", str(a.out / "cache")],
                       capture_output=True, text=True, check=False)
    build_s = time.time() - t
    if r.returncode:
        sys.exit(r.stderr)
    page = a.out / "filter" / "report.html"
    result = {"records": a.n, "report_build_s": round(build_s, 1), "html_mb": round(page.stat().st_size / 1e6, 1),
              "embeddings": a.embeddings, **time_browser(page, "task 99999:")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
