"""MinHash near-duplicate detection: accuracy against exact all-pairs Jaccard, speed against a
plain datasketch loop, and a 100K-record run of ``datagen filter``.

**Corpus** (real text, offline): the instructions and outputs of ``seeds/175.jsonl`` and the
docstrings of ~100 standard-library modules, whitespace-collapsed and cut into ~50-word passages
(identical passages removed). ``--variants`` passages get a near-duplicate made by replacing
random words one at a time until the shingle Jaccard with the original falls to a target level
drawn from 0.95 ... 0.5; the achieved level is what counts.

**Ground truth**: exact Jaccard of the shingle sets (word 5-grams, character 5-grams in CJK) of
every pair of documents, via a sparse product (pairs sharing no shingle have Jaccard 0).

**Accuracy** at ``--threshold`` (0.7): a pair is *found* when the stage verified it (an LSH
candidate whose exact Jaccard is >= the threshold). Precision = found pairs that truly are >=
threshold (1.0 by construction, since every candidate is verified); recall overall and for pairs
with Jaccard >= 0.8. Documents: the set the stage drops vs. the set dropped by grouping the true
pairs with the same survivor rule.

**Speed** (documents/s; ``--repeat`` interleaved rounds, the speed-up is the median of the per-round
ratios, so a change in the machine's load hits both sides): the stage (shingles, signatures, LSH, exact
verification) with each engine vs. the plain loop of the datasketch README: ``MinHash()`` per
document, ``update`` per shingle (string 5-grams, sha1), ``MinHashLSH`` insert then query. Both in
this process, on the same documents. The plain loop does no verification; it is the baseline
cost of "just use datasketch".

**Scale** (``--scale N``, 0 to skip): N synthetic-but-varied records (sentences of the corpus
recombined; ~5% exact and ~5% near duplicates) through ``datagen filter --stages
heuristics,exact,minhash`` in a subprocess: wall time and the child's peak RSS
(``resource.getrusage(RUSAGE_CHILDREN)``).

    .venv/bin/python bench/dedup.py                       # accuracy + speed + 100K scale run
    .venv/bin/python bench/dedup.py --scale 0 --repeat 1  # quick
    .venv/bin/python bench/dedup.py --natural .venv/lib/python3.11/site-packages /usr/share/doc   # near-copies as found
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import warnings

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.curate.base import FilterContext  # noqa: E402
from datagen.curate.config import MinHashConfig  # noqa: E402
from datagen.curate.dedup.minhash import MinHashDedup  # noqa: E402
from datagen.curate.dedup.shingles import Shingler, jaccard  # noqa: E402
from datagen.curate.dedup.signatures import rensa_available  # noqa: E402
from datagen.core.record import Record  # noqa: E402
from datagen.core.stats import Stats  # noqa: E402
from datagen.core.text import tokens  # noqa: E402

MODULES = """os re json collections itertools functools pathlib typing argparse logging subprocess threading
asyncio email http.client urllib.request urllib.parse xml.etree.ElementTree datetime decimal fractions statistics
random string textwrap unittest doctest inspect ast dis pickle shelve sqlite3 csv zipfile tarfile gzip bz2 lzma
hashlib hmac secrets socket ssl selectors shutil tempfile glob fnmatch heapq bisect array enum dataclasses
contextlib abc numbers math cmath operator copy pprint reprlib io codecs locale gettext calendar time sched queue
multiprocessing concurrent.futures configparser tomllib plistlib base64 binascii struct weakref types importlib
pkgutil zipimport runpy traceback warnings tracemalloc timeit cProfile pstats difflib html html.parser mimetypes
mailbox smtplib imaplib ftplib poplib uuid ipaddress wsgiref.simple_server xmlrpc.client sysconfig platform
getpass tokenize token keyword linecache filecmp stat codeop code pdb bdb graphlib zoneinfo signal mmap
""".split()
LEVELS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5)


# -- corpus --------------------------------------------------------------------------------------
def docstrings() -> list[str]:
    warnings.simplefilter("ignore", DeprecationWarning)  # typing.io and friends
    out: list[str] = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        objs = [mod] + [getattr(mod, a, None) for a in dir(mod)]
        for obj in list(objs):
            if isinstance(obj, type):
                objs += [getattr(obj, a, None) for a in vars(obj)]
        for obj in objs:
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str) and len(doc) > 80:
                out.append(doc)
    return out


def seed_texts() -> list[str]:
    out = []
    for line in (ROOT / "seeds" / "175.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out.append(row["instruction"])
        out += [inst["output"] for inst in row["instances"]]
    return out


def passages(words_per: int = 50) -> list[str]:
    seen: set[str] = set()
    out = []
    for text in seed_texts() + docstrings():
        words = text.split()
        for i in range(0, len(words), words_per):
            chunk = " ".join(words[i:i + words_per])
            if len(chunk.split()) >= 12 and chunk not in seen:
                seen.add(chunk)
                out.append(chunk)
    return out


def near_duplicate(text: str, target: float, rng: random.Random, vocab: list[str], sh: Shingler) -> str:
    """Replace random words until the shingle Jaccard with ``text`` is <= ``target``."""
    base = sh(text)
    words = text.split()
    for _ in range(len(words)):
        words[rng.randrange(len(words))] = rng.choice(vocab)
        if jaccard(base, sh(" ".join(words))) <= target:
            break
    return " ".join(words)


def build_corpus(n_docs: int, n_variants: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    base = passages()
    rng.shuffle(base)
    base = base[:n_docs - n_variants]
    vocab = sorted({w for p in base[:2000] for w in p.split()})
    sh = Shingler(5)
    variants = [near_duplicate(base[i], rng.choice(LEVELS), rng, vocab, sh) for i in rng.sample(range(len(base)), n_variants)]
    docs = base + variants
    rng.shuffle(docs)
    return docs


# -- ground truth --------------------------------------------------------------------------------
def true_pairs(docs: list[str], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair with exact shingle Jaccard >= ``threshold - 0.2`` (sparse A @ A.T)."""
    from scipy import sparse

    sh = Shingler(5)
    sets = [sh(d) for d in docs]
    vocab: dict[int, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for h in s.tolist():
            rows.append(i)
            cols.append(vocab.setdefault(h, len(vocab)))
    a = sparse.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(docs), len(vocab)))
    inter = sparse.triu(a @ a.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets])
    jac = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    keep = jac >= threshold - 0.2
    return {(int(i), int(j)): float(v) for i, j, v in zip(inter.row[keep], inter.col[keep], jac[keep])}


def expected_drops(records: list[Record], pairs: dict[tuple[int, int], float], threshold: float) -> set[str]:
    """The records the stage's survivor rule drops when it is given every true pair (what a
    perfect LSH would find)."""
    from datagen.curate.dedup.groups import rank_keys

    stage = MinHashDedup(MinHashConfig(text="response", threshold=threshold, score_key=None))
    flags = stage.mark(rank_keys(records, None), [(i, j, v) for (i, j), v in pairs.items()], {})
    return {records[i].id for i, f in flags.items() if "duplicate_of" in f}


def union_find_drops(records: list[Record], pairs: dict[tuple[int, int], float], threshold: float) -> set[str]:
    """What grouping the same pairs with union-find (one survivor per connected group, the rule
    before this one) would drop: the side-by-side for the chaining count."""
    parent = list(range(len(records)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (i, j), v in pairs.items():
        if v >= threshold:
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(records)):
        groups.setdefault(find(i), []).append(i)
    drops = set()
    for members in groups.values():
        keep = min(members, key=lambda i: records[i].id)
        drops.update(records[i].id for i in members if i != keep)
    return drops


def orphans(records: list[Record], pairs: dict[tuple[int, int], float], threshold: float, dropped: set[str]) -> int:
    """Dropped records with no true near-duplicate (J >= threshold) left in the output."""
    kept_near = set()
    for (i, j), v in pairs.items():
        if v >= threshold:
            a, b = records[i].id, records[j].id
            if b not in dropped:
                kept_near.add(a)
            if a not in dropped:
                kept_near.add(b)
    return len(dropped - kept_near)


# -- runs ----------------------------------------------------------------------------------------
class Recording(MinHashDedup):
    """The stage, remembering its verified pairs for the accuracy count."""

    def verify(self, sets, pairs, ctx=None):  # type: ignore[no-untyped-def]
        self.checked = super().verify(sets, pairs, ctx)
        return self.checked


BANDING: dict = {}  # --banding B,R: the stage's bands and rows instead of the computed ones


def run_stage(records: list[Record], engine: str, threshold: float) -> tuple[float, Recording, dict, list]:
    stage = Recording(MinHashConfig(text="response", engine=engine, threshold=threshold, score_key=None, **BANDING))
    recs = [r.model_copy(deep=True) for r in records]
    ctx = FilterContext(stats=Stats(), cache_dir=Path(tempfile.gettempdir()), progress=False)
    t0 = time.perf_counter()
    stage.annotate(recs, ctx)
    return time.perf_counter() - t0, stage, ctx.stats.extra["minhash"], recs


def plain_datasketch(docs: list[str], threshold: float, num_perm: int = 128) -> tuple[float, int]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs = []
    for i, d in enumerate(docs):
        toks = tokens(d)
        m = MinHash(num_perm=num_perm)
        for k in range(max(1, len(toks) - 4)):
            m.update(" ".join(toks[k:k + 5]).encode("utf-8"))
        lsh.insert(i, m)
        sigs.append(m)
    n_pairs = sum(sum(1 for j in lsh.query(m) if j > i) for i, m in enumerate(sigs))
    return time.perf_counter() - t0, n_pairs


def accuracy(args: argparse.Namespace, docs: list[str], records: list[Record]) -> list[str]:
    """Precision and recall of each engine against the exact all-pairs truth; returns the engines."""
    t0 = time.perf_counter()
    truth = true_pairs(docs, args.threshold)
    print(f"ground truth: {len(truth)} pairs with Jaccard >= {args.threshold - 0.2:.1f} among {len(docs)} docs "
          f"(sparse all-pairs, {time.perf_counter() - t0:.1f}s)")
    true = {p for p, v in truth.items() if v >= args.threshold}
    high = {p for p, v in truth.items() if v >= 0.8}
    band = true - high
    exp = expected_drops(records, truth, args.threshold)
    engines = ["datasketch"] + (["rensa"] if rensa_available() else [])
    decisions: dict = {}
    flags: dict = {}
    for engine in engines:
        _, stage, extra, recs = run_stage(records, engine, args.threshold)
        flags[engine] = {r.id: r.flags.get("minhash") for r in recs}
        decisions[engine] = {r.id: (r.flags.get("minhash") or {}).get("duplicate_of") for r in recs}
        found = {(i, j) for i, j, v in stage.checked if v >= args.threshold}
        prec = len(found & true) / len(found) if found else 1.0
        dropped = {r.id for r in recs if stage.verdict(r)}
        print(f"[{engine}] bands x rows = {stage.params.bands} x {stage.params.rows}; candidates {extra['candidate_pairs']}, "
              f"verified {extra['verified_pairs']}, rejected by verification {extra['candidates_rejected']}")
        print(f"[{engine}] pairs: precision {prec:.4f}  recall {len(found & true) / max(1, len(true)):.4f} (J>={args.threshold}, n={len(true)})  "
              f"recall {len(found & high) / max(1, len(high)):.4f} (J>=0.8, n={len(high)})  recall {len(found & band) / max(1, len(band)):.4f} "
              f"({args.threshold}<=J<0.8, n={len(band)})")
        print(f"[{engine}] documents dropped {len(dropped)}, expected {len(exp)}, agree {len(dropped & exp)}, "
              f"missed {len(exp - dropped)}, extra {len(dropped - exp)}; dropped with no near-duplicate left in the output: "
              f"{orphans(records, truth, args.threshold, dropped)}")
    chained = union_find_drops(records, truth, args.threshold)
    print(f"[union-find over the true pairs, for comparison] documents dropped {len(chained)}, with no near-duplicate left "
          f"in the output: {orphans(records, truth, args.threshold, chained)}")
    if len(engines) == 2:
        n_diff = sum(1 for k in decisions["datasketch"] if decisions["datasketch"][k] != decisions["rensa"][k])
        f_diff = sum(1 for k in flags["datasketch"] if flags["datasketch"][k] != flags["rensa"][k])
        print(f"engines: {n_diff} records decided differently (dropped/kept or duplicate_of), {f_diff} with different flags")
    return engines


def speed(args: argparse.Namespace, docs: list[str], records: list[Record], engines: list[str]) -> None:
    """Rounds of (each engine, plain loop), interleaved so that a change in the machine's load
    hits all of them; the ratio is taken within each round, and its median reported."""
    times: dict[str, list[float]] = {e: [] for e in engines + ["plain"]}
    for _ in range(args.repeat):
        for e in engines:
            times[e].append(run_stage(records, e, args.threshold)[0])
        secs, n_pairs = plain_datasketch(docs, args.threshold)
        times["plain"].append(secs)
    for e, ts in times.items():
        label = "plain datasketch loop" if e == "plain" else f"{e} stage"
        print(f"[{label}] median {statistics.median(ts):.2f}s = {len(docs) / statistics.median(ts):,.0f} docs/s "
              f"(runs: {', '.join(f'{t:.2f}' for t in ts)})")
    for e in engines:
        ratios = [p / t for p, t in zip(times["plain"], times[e])]
        print(f"speed-up of the {e} stage vs the plain datasketch loop: median {statistics.median(ratios):.1f}x "
              f"(per round: {', '.join(f'{r:.1f}' for r in ratios)})")


# -- scale ---------------------------------------------------------------------------------------
def scale_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    sentences = [s.strip() + "." for p in passages() for s in p.split(". ") if len(s.split()) >= 5]
    rows: list[dict] = []
    while len(rows) < n:
        r = rng.random()
        if rows and r < 0.05:
            rows.append(dict(rng.choice(rows)))  # exact duplicate
        elif rows and r < 0.10:
            src = dict(rng.choice(rows))
            words = src["output"].split()
            words[rng.randrange(len(words))] = rng.choice(words)
            src["output"] = " ".join(words) + " Hope this helps."
            rows.append(src)  # near duplicate
        else:
            topic = " ".join(rng.choice(sentences).split()[:6])
            body = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 8)))
            rows.append({"instruction": f"Explain this in your own words: {topic}", "input": "", "output": body})
    return rows


def scale(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.jsonl"
        with open(src, "w", encoding="utf-8") as f:
            for row in scale_rows(args.scale, args.seed):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        cmd = [sys.executable, "-m", "datagen.cli", "filter", "--input", str(src), "--out", str(Path(tmp) / "run"),
               "--stages", "heuristics,exact,minhash"]
        env = {**os.environ, "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode:
            sys.exit(r.stderr)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        stats = json.loads((Path(tmp) / "run" / "stats.json").read_text())
        print(f"scale: {args.scale:,} records through heuristics, exact, minhash in {wall:.1f}s "
              f"({args.scale / wall:,.0f} records/s), peak RSS {rss:,.0f} MiB; kept {stats['records']:,}")
        print(r.stderr.strip().split("filter:", 1)[-1])
        print("stage seconds:", stats["extra"]["seconds"], "minhash:", stats["extra"]["minhash"])


def natural_corpus(roots: list[Path], min_words: int = 30, max_words: int = 3000) -> list[str]:
    """Documents nobody made near-duplicate on purpose: the licence, notice, readme, metadata and text files
    of the installed packages under ``roots`` (``site-packages``, ``/usr/share/doc``), each whitespace-collapsed
    and cut at ``max_words``; identical texts kept once. Near-copies occur as they do in the wild:
    the same licence with another name and year, a vendored file in two packages, two versions
    of one changelog."""
    names = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS", "README", "METADATA", "PKG-INFO", "COPYRIGHT")
    seen: set[str] = set()
    docs: list[str] = []
    for path in sorted(p for root in roots for p in root.rglob("*")):
        name = path.name.upper()
        if not path.is_file() or not (name.startswith(names) or path.suffix.lower() in (".md", ".rst", ".txt")):
            continue
        try:
            if not 200 <= path.stat().st_size <= 200_000:
                continue
            words = path.read_text(encoding="utf-8").split()
        except (UnicodeDecodeError, OSError):
            continue
        text = " ".join(words[:max_words])
        if len(words) >= min_words and text not in seen:
            seen.add(text)
            docs.append(text)
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=8000)
    ap.add_argument("--variants", type=int, default=1500)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--natural", metavar="DIR", nargs="+", help="instead of the made corpus: the text files of the packages under "
                    "these folders (site-packages, /usr/share/doc), with the near-duplicates they hold by nature (accuracy only)")
    ap.add_argument("--banding", metavar="B,R", help="bands and rows for the stage (default: computed from the threshold and weights)")
    args = ap.parse_args()
    if args.banding:
        BANDING.update(zip(("bands", "rows"), map(int, args.banding.split(","))))
    os.environ["DATAGEN_PROGRESS"] = "0"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if args.natural:
        docs = natural_corpus([Path(d) for d in args.natural])
        print(f"corpus: {len(docs)} distinct text files of the packages under {', '.join(args.natural)}")
        args.repeat, args.scale = 0, 0
    else:
        docs = build_corpus(args.docs, args.variants, args.seed)
        print(f"corpus: {len(docs)} passages ({args.variants} near-duplicate variants)")
    records = [Record.from_turns("q", d) for d in docs]
    engines = accuracy(args, docs, records)
    if args.repeat:
        speed(args, docs, records, engines)
    if args.scale:
        scale(args)


if __name__ == "__main__":
    main()
