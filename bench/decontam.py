"""Decontamination: recall and precision per plant kind, and speed, on a pool with planted benchmark prompts.

The benchmark (``bench.jsonl``, ``{"question": ...}`` rows, as GSM8K or MMLU ship) holds real
prompts: the even-numbered bundled seed tasks (instruction and input) and the gold set's
questions (``bench/data/gold.jsonl``), 128 items, padded to ``--bench-items`` with sentences of
sympy's and networkx's docstrings (8 to 80 words; the filler makes the index the size of a real
evaluation suite and gives false matches a chance). A sentence that shares a 13-word run with a
standard-library docstring, or is found whole in one (sympy quotes some), is left out: the pool's clean records are built from
those, and text copied into both would be a real overlap, not a false one.

The pool (``pool.jsonl``, ``--n`` records) holds:

* clean records: the odd-numbered seed tasks with their answers (real prompts of the same style as
  the benchmark's, written apart from them), and records built from passages of the standard
  library's docstrings (an instruction quoting a passage's opening words, an answer of two or
  three passages);
* planted records (``--plants`` of each kind), a real benchmark prompt with a pool answer:
  ``verbatim`` (the prompt as it is), ``prefix`` (an instruction before it: "Answer the following
  question."...), ``suffix`` (one after it: "Explain your reasoning step by step."...),
  ``paraphrase_rule`` (rewritten by rule: word-for-word synonym swaps from a fixed table, then the
  sentences reversed when there are several, else a "Please" or "Quick question:" opener) and
  ``paraphrase_hand`` (17 paraphrases written by hand, each planted ``--plants // 17`` times).

Each configuration runs ``datagen filter --stages decontaminate`` on the pool in a subprocess;
recall is the share of each kind's plants dropped, precision the share of dropped records that
are plants. Speed: records/s and the peak RSS of the largest process (the parent, or a worker).
Every run gets a fresh embedding cache (the distilled static model is shared), so the encoder's
work is counted in full each time.

    python bench/decontam.py --n 100000 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dedup import docstrings  # noqa: E402

from datagen.core.record import Record  # noqa: E402
from datagen.core.text import tokens  # noqa: E402
from datagen.curate.dedup.shingles import Shingler  # noqa: E402

PREFIXES = ("Answer the following question.", "Here is a task for you:", "Please help me with this.", "Question:",
            "I need help with my homework.", "Solve this, please:")
SUFFIXES = ("Explain your reasoning step by step.", "Keep the answer short.", "Thanks in advance!",
            "Answer in a friendly tone.", "Please be concise.", "Think carefully before answering.")
SYNONYMS = {
    "write": "compose", "explain": "describe", "describe": "explain", "list": "name", "give": "provide",
    "find": "determine", "calculate": "compute", "show": "present", "make": "create", "create": "produce",
    "use": "employ", "using": "employing", "short": "brief", "simple": "plain", "example": "instance",
    "examples": "instances", "following": "given", "answer": "response", "tell": "inform", "help": "assist",
    "big": "large", "small": "little", "total": "overall", "price": "cost", "buy": "purchase", "each": "every",
    "about": "regarding", "change": "modify", "convert": "transform", "improve": "enhance", "important": "key",
    "text": "passage", "word": "term", "words": "terms", "summarize": "sum up", "suggest": "propose",
    "choose": "pick", "check": "verify", "remove": "delete", "sort": "order", "main": "principal",
    "difference": "distinction", "between": "among", "why": "for what reason", "how": "in what way",
    "three": "3", "five": "5", "two": "2", "ten": "10", "tips": "pieces of advice", "steps": "stages",
    "mean": "signify", "means": "signifies", "rather than": "instead of", "sentence": "line",
    "identify": "pinpoint", "determine": "figure out", "good": "fine", "people": "persons",
}
HAND = {  # benchmark prompt -> a paraphrase written by hand
    "seed:0": "A coat is priced at 80 dollars. It's discounted by a quarter, then an 8% sales tax is applied to the reduced price. "
              "How much does it cost in the end? Show the steps.",
    "seed:24": "What is the main way a Roth IRA differs from a traditional IRA?",
    "seed:60": "Create 3 multiple choice quiz questions (include the answers) on the American Revolution, aimed at middle schoolers.",
    "seed:72": "Compose a roughly 60-word product blurb for a stainless steel insulated water bottle that keeps beverages cold for a full day.",
    "seed:84": "What are 5 useful ways to stop procrastinating while studying?",
    "seed:96": "Compose an acrostic poem whose lines spell out RAIN.",
    "seed:120": "Showing the formulas you use, convert 70°F into Celsius and 5 miles into km.",
    "seed:132": "How do I cook fluffy long-grain white rice on a stovetop? Give me the steps.",
    "seed:168": "In fewer than 100 words, describe inflation for a high schooler.",
    "gold:0": "At sea level, at what temperature does water boil, in both Fahrenheit and Celsius?",
    "gold:4": "How does climate differ from weather?",
    "gold:8": "What does a 404 HTTP status code signify?",
    "gold:12": "Write an SQL query to get the 10 latest orders from the `orders` table, using its `created_at` column.",
    "gold:16": "Explain to someone new to coding what a variable is.",
    "gold:20": "What mainly causes Earth's seasons?",
    "gold:28": "When was \"Pride and Prejudice\" published and who is its author?",
    "gold:32": "Why is washing your hands with soap better than using only water?",
}
TEMPLATES = ("Explain this in your own words: {}", "Describe, in plain terms, what this means: {}",
             "Summarise the idea behind: {}", "What is meant by the following? {}")
FILLER_PACKAGES = ("sympy", "networkx")
KINDS = ("verbatim", "prefix", "suffix", "paraphrase_rule", "paraphrase_hand")


def real_prompts() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(benchmark prompts by key, the clean seed tasks as (prompt, answer))."""
    bench: dict[str, str] = {}
    clean: list[tuple[str, str]] = []
    for i, line in enumerate((ROOT / "seeds" / "175.jsonl").read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        inst = row["instances"][0]
        prompt = row["instruction"] + ("\n" + inst["input"] if inst["input"].strip() else "")
        if i % 2 == 0:
            bench[f"seed:{i}"] = prompt
        else:
            clean.append((prompt, inst["output"]))
    for i, line in enumerate((ROOT / "bench" / "data" / "gold.jsonl").read_text(encoding="utf-8").splitlines()):
        bench[f"gold:{i}"] = json.loads(line)["messages"][0]["content"]
    return bench, clean


def paraphrase_rule(text: str, rng: random.Random) -> str:
    def swap(m: re.Match) -> str:
        word = m.group(0)
        new = SYNONYMS.get(word.lower())
        if new is None:
            return word
        return new.capitalize() if word[0].isupper() else new

    out = re.sub(r"\b(?:rather than|[A-Za-z]+)\b", swap, text)
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", out) if s]
    if len(sentences) > 1:
        return " ".join(reversed(sentences))
    opener = rng.choice(("Please", "Quick question:"))
    return f"{opener} {out[0].lower()}{out[1:]}"


def package_docstrings(packages: tuple[str, ...] = FILLER_PACKAGES) -> list[str]:
    """The docstrings (over 80 characters) of the modules, classes and functions of ``packages``
    and their submodules."""
    import pkgutil

    out: list[str] = []
    for name in packages:
        root = _try_import(name)
        mods = [root] + [m for m in (_try_import(i.name) for i in pkgutil.walk_packages(root.__path__, name + ".")
                                     if ".tests" not in i.name and not i.name.endswith(".this")) if m is not None]
        for mod in mods:
            for obj in [mod] + [getattr(mod, a, None) for a in dir(mod)]:
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and len(doc) > 80:
                    out.append(doc)
    return out


def _try_import(name: str):
    import importlib
    import warnings

    with warnings.catch_warnings():  # sympy turns its deprecation warnings back on as it imports
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:
            return None


def corpus(bench_items: int, seed: int) -> tuple[list[str], list[str]]:
    """(sentences of sympy's and networkx's docstrings for the benchmark filler, passages of the
    standard library's docstrings for the pool): text from unrelated projects, so that a clean
    record shares words with the benchmark only as independent text does."""
    passages = []
    for d in sorted(set(docstrings())):
        words = d.split()
        passages += [" ".join(words[i:i + 50]) for i in range(0, len(words), 50) if len(words[i:i + 50]) >= 12]
    sh = Shingler(13)
    copied = {int(h) for p in passages for h in sh(p)}  # sympy quotes some standard-library docstrings
    joined = " " + " | ".join(" ".join(tokens(p)) for p in passages) + " "

    def quoted(s: str) -> bool:  # a 13-word run, or a whole shorter sentence, found in a passage
        toks = tokens(s)
        return f" {' '.join(toks)} " in joined if len(toks) < 13 else any(int(h) in copied for h in sh(s))
    docs = sorted(set(package_docstrings()))
    random.Random(seed).shuffle(docs)
    sentences: list[str] = []
    seen: set[str] = set()
    for d in docs:
        for s in re.split(r"(?<=[.?!])\s+", " ".join(d.split())):
            if 8 <= len(s.split()) <= 80 and s not in seen and ">>>" not in s and not quoted(s):
                seen.add(s)
                sentences.append(s)
        if len(sentences) >= bench_items:
            break
    return sentences[:bench_items], passages


def build(out: Path, n: int, plants: int, bench_items: int, seed: int) -> dict[str, str]:
    """Write ``bench.jsonl`` and ``pool.jsonl`` into ``out``; returns record id -> kind."""
    rng = random.Random(seed)
    bench, clean_seeds = real_prompts()
    filler, passages = corpus(bench_items - len(bench), seed)
    with open(out / "bench.jsonl", "w", encoding="utf-8") as f:
        for text in list(bench.values()) + filler:
            f.write(json.dumps({"question": text}, ensure_ascii=False) + "\n")
    keys = list(bench)
    rows: list[tuple[str, str, str]] = []
    for kind in KINDS:
        for j in range(plants):
            answer = " ".join(rng.sample(passages, 2))
            if kind == "paraphrase_hand":
                if j >= (plants // len(HAND)) * len(HAND):
                    break
                rows.append((HAND[list(HAND)[j % len(HAND)]], answer, kind))
                continue
            text = bench[rng.choice(keys)]
            if kind == "prefix":
                text = rng.choice(PREFIXES) + " " + text
            elif kind == "suffix":
                text = text + " " + rng.choice(SUFFIXES)
            elif kind == "paraphrase_rule":
                text = paraphrase_rule(text, rng)
            rows.append((text, answer, kind))
    for prompt, answer in clean_seeds:
        rows.append((prompt, answer, "clean_seed"))
    while len(rows) < n:
        p = rng.choice(passages)
        opening = " ".join(p.split()[: rng.randint(8, 20)])
        rows.append((rng.choice(TEMPLATES).format(opening), " ".join(rng.sample(passages, rng.choice((2, 3)))), "clean"))
    rng.shuffle(rows)
    kinds: dict[str, str] = {}
    with open(out / "pool.jsonl", "w", encoding="utf-8") as f:
        for prompt, answer, kind in rows[:n] if len(rows) > n else rows:
            rec = Record.from_turns(prompt, answer)
            kinds.setdefault(rec.id, kind)
            f.write(json.dumps({"instruction": prompt, "input": "", "output": answer}, ensure_ascii=False) + "\n")
    return kinds


def run(out: Path, name: str, workers: int, sets: list[str], static_cache: Path) -> dict:
    """``datagen filter --stages decontaminate`` in a subprocess; wall seconds, peak RSS, drops."""
    cache = out / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    (cache / "models").mkdir(parents=True)
    for m in static_cache.glob("static-*"):
        os.symlink(m.resolve(), cache / "models" / m.name)
    run_dir = out / f"run-{name}"
    cmd = [sys.executable, "-m", "datagen.cli", "filter", "--input", str(out / "pool.jsonl"), "--out", str(run_dir), "--force",
           "--stages", "decontaminate", "--decontaminate", str(out / "bench.jsonl"), "--workers", str(workers), "--cache-dir", str(cache)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "DATAGEN_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    # a wrapper process per run, so that its children's peak RSS is this run's alone
    wrap = ("import resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode; "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", wrap] + cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    secs_s, rss_kib = proc.stderr.strip().splitlines()[-1].split()
    secs, rss = float(secs_s), int(rss_kib) / 1024  # MiB, the largest process of the run
    dropped = {}
    with open(run_dir / "rejected.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            dropped[r["record"]["id"]] = r["reason"]
    stage_secs = json.loads((run_dir / "stats.json").read_text())["extra"]["seconds"]["decontaminate"]
    return {"seconds": secs, "stage_seconds": stage_secs, "peak_rss_mib": rss, "dropped": dropped}


def score(kinds: dict[str, str], dropped: dict[str, str]) -> dict:
    total: dict[str, int] = {}
    hit: dict[str, dict[str, int]] = {}
    for rid, kind in kinds.items():
        total[kind] = total.get(kind, 0) + 1
        if rid in dropped:
            hit.setdefault(kind, {}).setdefault(dropped[rid], 0)
            hit[kind][dropped[rid]] += 1
    planted = [k for k in total if k in KINDS]
    tp = sum(sum(hit.get(k, {}).values()) for k in planted)
    fp = sum(sum(v.values()) for k, v in hit.items() if k not in KINDS)
    return {"recall": {k: (sum(hit.get(k, {}).values()), total[k], hit.get(k, {})) for k in KINDS if k in total},
            "false_drops": {k: (sum(v.values()), total[k]) for k, v in hit.items() if k not in KINDS},
            "precision": tp / (tp + fp) if tp + fp else float("nan"), "tp": tp, "fp": fp}


CONFIGS = {
    "ngram13": ["decontaminate.embedding=false"],
    "default": [],  # 13-gram, any; cascade embedding check
    "tulu8": ["decontaminate.ngram=8", "decontaminate.rule=ratio", "decontaminate.ratio=0.5"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="pool records")
    ap.add_argument("--plants", type=int, default=200, help="plants of each kind")
    ap.add_argument("--bench-items", type=int, default=20000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--set", action="append", default=[], dest="sets", help="extra --set for every run")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench-decontam"))
    ap.add_argument("--static-cache", default=str(Path(os.environ.get("DATAGEN_CACHE_DIR", Path.home() / ".cache" / "datagen")) / "models"),
                    help="folder holding the distilled static model (static-*), distilled there first if missing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = build(out, args.n, args.plants, args.bench_items, args.seed)
    static_cache = Path(args.static_cache)
    if not list(static_cache.glob("static-*")):
        from datagen.score.embeddings import EmbeddingStore
        from datagen.score.static import static_model

        store = EmbeddingStore(static_cache.parent)
        static_model(static_cache.parent, store.model_path(), store.model_id)
    n = sum(1 for _ in open(out / "pool.jsonl", encoding="utf-8"))
    print(f"pool {n} records, benchmark {args.bench_items} items, plants {sum(k in KINDS for k in kinds.values())}")
    for name in args.configs:
        for w in args.workers:
            r = run(out, f"{name}-w{w}", w, CONFIGS[name] + args.sets, static_cache)
            s = score(kinds, r["dropped"])
            print(f"\n== {name} workers={w}: {r['seconds']:.1f}s, {n / r['seconds']:.0f} records/s (the stage: {r['stage_seconds']:.1f}s, "
                  f"{n / r['stage_seconds']:.0f} records/s), peak RSS {r['peak_rss_mib']:.0f} MiB")
            print(f"precision {s['precision']:.4f} ({s['tp']} plants, {s['fp']} clean records dropped)")
            for k, (h, t, why) in s["recall"].items():
                print(f"  recall {k:<16} {h:>4}/{t:<4} = {h / t:.3f}  {why}")
            for k, (h, t) in s["false_drops"].items():
                print(f"  false drops {k:<11} {h:>4}/{t}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
