"""Language identification on the labelled texts of ``tests/data/langid.jsonl``: per-language
precision and recall, overall accuracy (by kind of text: short, long, mixed, code with comments)
and texts per second, for

* ``script``: :func:`datagen.core.text.detect_language`, the writing-system guess (it names zh, ja
  and ko, and only "latin" or "other" for the rest: every other language counts as missed);
* ``lid176``: fastText's lid.176 model alone (:func:`datagen.core.langid.by_model`);
* ``identify``: :func:`datagen.core.langid.identify`, the script where it decides, else lid.176;
* ``lingua``: lingua-language-detector, restricted to the labelled languages and with all its
  languages, when it is importable (a peer, not a dependency: ``pip install
  lingua-language-detector``), with its load time and memory.

Then the heuristics stage's records per second on ``--records`` records made of those texts, with
the language checks (``language_mismatch`` and a ``languages`` keep-list) and with token lengths
(``length_unit: tokens``, SmolLM2's tokenizer), against the same stage with the language checks off,
in the same process. Timings are medians of ``--repeat`` runs.

    .venv/bin/python bench/langid.py --repeat 5 --records 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from timing import timed  # noqa: E402

from datagen.core import langid  # noqa: E402
from datagen.core.text import detect_language  # noqa: E402

DATA = ROOT / "tests" / "data" / "langid.jsonl"


def load() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores(rows: list[dict], predicted: list[str]) -> dict:
    """Per-language precision/recall over the labels, accuracy overall and per kind."""
    labels = sorted({r["lang"] for r in rows})
    tp, fp, fn = Counter(), Counter(), Counter()
    by_kind: dict[str, list[bool]] = {}
    for r, p in zip(rows, predicted):
        ok = p == r["lang"]
        by_kind.setdefault(r["kind"], []).append(ok)
        if ok:
            tp[p] += 1
        else:
            fn[r["lang"]] += 1
            fp[p] += 1
    per = {lang: (tp[lang] / (tp[lang] + fp[lang]) if tp[lang] + fp[lang] else 0.0,
                  tp[lang] / (tp[lang] + fn[lang]) if tp[lang] + fn[lang] else 0.0) for lang in labels}
    acc = sum(tp.values()) / len(rows)
    return {"per": per, "accuracy": acc, "kinds": {k: sum(v) / len(v) for k, v in by_kind.items()}}


def lingua_method(codes: list[str] | None = None):
    """lingua over all its languages, or only ``codes``; None when it is not installed."""
    try:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    except ImportError:
        return None
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    builder = (LanguageDetectorBuilder.from_languages(*[Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in codes])
               if codes else LanguageDetectorBuilder.from_all_languages())
    det = builder.with_preloaded_language_models().build()
    load_s = time.perf_counter() - t0
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024

    def predict(text: str) -> str:
        lang = det.detect_language_of(text)
        return lang.iso_code_639_1.name.lower() if lang is not None else ""

    which = f"the {len(codes)} labelled languages" if codes else "all languages"
    return predict, f"lingua ({which}; load {load_s:.1f} s, peak RSS +{grown:.0f} MB)"


def report_accuracy(rows: list[dict], repeat: int) -> None:
    texts = [r["text"] for r in rows]
    methods = [("script (detect_language)", detect_language),
               ("lid176 (model alone)", lambda t: langid.by_model(t).code),
               ("identify (script + lid176)", lambda t: langid.identify(t).code)]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    langid.identify("warm up the model")
    print(f"lid.176 model: {langid.model_path().stat().st_size / 1e6:.2f} MB file, peak RSS +"
          f"{(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024:.0f} MB")
    labels = sorted({r["lang"] for r in rows})
    for codes in (labels, None):  # the restricted set first: peak RSS only grows
        peer = lingua_method(codes)
        if peer is not None:
            methods.append((peer[1], peer[0]))
    kinds = sorted({r["kind"] for r in rows})
    print(f"{len(rows)} texts: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['lang'] for r in rows).items())))
    print("| method | accuracy | " + " | ".join(kinds) + " | texts/s |")
    print("|---|---|" + "---|" * len(kinds) + "---|")
    results = []
    for name, fn in methods:
        secs, predicted = timed(lambda: [fn(t) for t in texts], repeat)
        s = scores(rows, predicted)
        results.append((name, s))
        print(f"| {name} | {s['accuracy']:.3f} | " + " | ".join(f"{s['kinds'][k]:.3f}" for k in kinds) + f" | {len(texts) / secs:,.0f} |")
    print("\nprecision / recall per language")
    print("| method | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name, s in results:
        print(f"| {name} | " + " | ".join(f"{s['per'][lang][0]:.2f} / {s['per'][lang][1]:.2f}" for lang in labels) + " |")


def report_stage(rows: list[dict], n: int, repeat: int) -> None:
    """The heuristics stage over ``n`` records, instructions and answers drawn from the labelled
    texts (same-language pairs), language checks on against off."""
    import random

    from datagen.core.record import Record
    from datagen.curate.config import HeuristicsConfig
    from datagen.curate.stages.heuristics import Heuristics

    rng = random.Random(0)
    by_lang: dict[str, list[str]] = {}
    for r in rows:
        by_lang.setdefault(r["lang"], []).append(r["text"])
    langs = sorted(by_lang)
    pairs = []
    for i in range(n):
        lang = langs[i % len(langs)]
        pairs.append((rng.choice(by_lang[lang]), " ".join(rng.sample(by_lang[lang], 3))))

    def run(cfg: HeuristicsConfig) -> float:
        stage = Heuristics(cfg)
        recs = [Record.from_turns(ins, resp) for ins, resp in pairs]
        t0 = time.perf_counter()
        stage.annotate(recs, None)
        return time.perf_counter() - t0

    arms = {"language checks off": HeuristicsConfig(language_mismatch=False),
            "language_mismatch + languages: [en, zh]": HeuristicsConfig(languages=["en", "zh"]),
            "language checks off, length_unit: tokens": HeuristicsConfig(language_mismatch=False, length_unit="tokens")}
    Heuristics(arms["language checks off, length_unit: tokens"])  # the tokenizer's one load, outside the timings
    times = {name: [] for name in arms}
    for _ in range(repeat):  # interleaved, so that a slower moment of a shared machine hits every arm
        for name, cfg in arms.items():
            times[name].append(run(cfg))
    base = statistics.median(times["language checks off"])
    print(f"\nheuristics stage, {n} records, one process (median of {repeat}):")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name} | {n / t:,.0f} records/s | {t / base:.2f}x the time |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--records", type=int, default=20000)
    args = ap.parse_args()
    rows = load()
    report_accuracy(rows, args.repeat)
    report_stage(rows, args.records, args.repeat)


if __name__ == "__main__":
    main()
