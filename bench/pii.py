"""PII detection: precision and recall per kind on labelled texts, and speed at filter scale,
beside datatrove's ``PIIFormatter``.

**Quality**: ``bench/data/pii.yaml``, texts in prose, code, logs and tables, each with every PII
value it holds labelled (kind, exact text), hard negatives among them. A detection is a true
positive when it overlaps a labelled value of its kind not matched before (so a span cut a little
short still counts), a false positive otherwise; a labelled value no detection overlaps is a
false negative. ``datagen.core.pii.find`` with the defaults (the pii stage's). The peer,
datatrove's ``PIIFormatter`` (e-mail addresses and IPv4 in public space only), is read through the
regexes and validators its ``format`` replaces with, so its spans are the ones it would replace;
it is scored on the kinds it covers.

**Speed**: ``--n`` records as ``bench/dedup.py --scale`` makes them (real sentences recombined
into instruction/answer pairs), one in 20 with a fixture text appended to its answer, parsed once.
In this process, on the same records, each timed as the median of ``--repeat`` runs: the
heuristics stage's ``annotate`` (the baseline: the other per-record stage), the pii stage's
``annotate`` with ``action: flag`` and with ``redact``, and datatrove's ``PIIFormatter.format``
over the same turns. Records per second and the ratio to the heuristics stage.

    .venv/bin/python bench/pii.py --n 100000 --repeat 3

datatrove is in the ``bench`` extra (``pip install -e '.[bench]'``); without it the peer's rows
are left out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from timing import timed  # noqa: E402

os.environ.setdefault("DATAGEN_PROGRESS", "0")

from datagen.core import pii  # noqa: E402

FIXTURES = ROOT / "bench" / "data" / "pii.yaml"


def load() -> list[dict]:
    docs = yaml.safe_load(FIXTURES.read_text(encoding="utf-8"))
    for d in docs:
        spans, pos = [], Counter()
        for kind, value in d["pii"]:
            at = d["text"].find(value, pos[value])
            if at < 0:
                raise SystemExit(f"{FIXTURES}: {value!r} is not in its text")
            pos[value] = at + 1
            spans.append((kind, at, at + len(value)))
        d["spans"] = spans
    return docs


def datatrove_finder():
    """``text -> [(kind, start, end)]``: the spans ``PIIFormatter().format`` replaces."""
    try:
        from datatrove.pipeline.formatters.pii import PIIFormatter
    except ImportError:
        return None
    f = PIIFormatter()

    def find(text: str) -> list[tuple[str, int, int]]:
        out = []
        for kind, rep in (("email", f.emails_replacer), ("ip_address", f.ip_replacer)):
            out += [(kind, m.start(), m.end()) for m in rep.regex.finditer(text) if rep.validator is None or rep.validator(m.group(0))]
        return out

    return f, find


def score(docs: list[dict], finder, kinds) -> dict[str, Counter]:
    """kind -> tp, fp, fn (and the setting of each miss and false alarm, for the notes)."""
    out: dict[str, Counter] = {k: Counter() for k in kinds}
    for d in docs:
        gold = [s for s in d["spans"] if s[0] in kinds]
        used: set[int] = set()
        for kind, a, b in finder(d["text"]):
            if kind not in kinds:
                continue
            hit = next((i for i, (k, x, y) in enumerate(gold) if k == kind and i not in used and a < y and x < b), None)
            if hit is None:
                out[kind]["fp"] += 1
                out[kind][f"fp:{d['text'][a:b]}"] += 1
            else:
                used.add(hit)
                out[kind]["tp"] += 1
        for i, (kind, x, y) in enumerate(gold):
            if i not in used:
                out[kind]["fn"] += 1
                out[kind][f"fn:{d['text'][x:y]}"] += 1
    return out


def quality(docs: list[dict]) -> None:
    ours = score(docs, lambda t: [(m.kind, m.start, m.end) for m in pii.find(t)], pii.KINDS)
    peer = datatrove_finder()
    theirs = score(docs, peer[1], ("email", "ip_address")) if peer else {}
    per_setting = Counter(d["setting"] for d in docs)
    labelled = Counter(k for d in docs for k, _, _ in d["spans"])
    print(f"{len(docs)} texts ({', '.join(f'{s} {n}' for s, n in sorted(per_setting.items()))}), "
          f"{sum(labelled.values())} labelled values ({', '.join(f'{k} {labelled[k]}' for k in pii.KINDS)}), "
          f"{sum(1 for d in docs if not d['spans'])} texts with none\n")
    print("| kind | labelled | ours: precision | ours: recall | datatrove: precision | datatrove: recall |")
    print("|---|---|---|---|---|---|")
    total, peer_total = Counter(), Counter()
    for k in pii.KINDS:
        c = ours[k]
        total.update({x: c[x] for x in ("tp", "fp", "fn")})
        t = theirs.get(k)
        if t is not None:
            peer_total.update({x: t[x] for x in ("tp", "fp", "fn")})
        print(f"| {k} | {labelled[k]} | {_p(c)} | {_r(c)} | {_p(t) if t is not None else '-'} | {_r(t) if t is not None else '-'} |")
    print(f"| all | {sum(labelled.values())} | {_p(total)} | {_r(total)} | {_p(peer_total) if peer else '-'} (e-mail + IP) | "
          f"{_r(peer_total) if peer else '-'} (e-mail + IP) |\n")
    for name, res in (("ours", ours), ("datatrove", theirs)):
        for k, c in res.items():
            notes = sorted(x for x in c if ":" in x)
            if notes:
                print(f"{name} {k}: " + "; ".join(f"{x.split(':', 1)[0]} {x.split(':', 1)[1]!r}" for x in notes))


def _p(c: Counter) -> str:
    n = c["tp"] + c["fp"]
    return f"{c['tp'] / n:.3f} ({c['tp']}/{n})" if n else "-"


def _r(c: Counter) -> str:
    n = c["tp"] + c["fn"]
    return f"{c['tp'] / n:.3f} ({c['tp']}/{n})" if n else "-"


# -- speed ---------------------------------------------------------------------------------------------
def records(n: int, docs: list[dict], seed: int = 1) -> tuple[list, set[int]]:
    from dedup import scale_rows

    from datagen.core.record import Record

    rng = random.Random(seed)
    out, mixed = [], set()
    for i, row in enumerate(scale_rows(n, seed)):
        answer = row["output"]
        if rng.random() < 0.05:
            answer = answer + "\n\n" + rng.choice(docs)["text"]
            mixed.add(i)
        out.append(Record.from_turns(row["instruction"], answer))
    return out, mixed


def speed(n: int, repeat: int, docs: list[dict]) -> None:
    from datagen.curate.config import HeuristicsConfig, PiiConfig
    from datagen.curate.stages.heuristics import Heuristics
    from datagen.curate.stages.pii import PiiStage

    recs, mixed = records(n, docs)
    chars = sum(len(m.content) for r in recs for m in r.messages)
    print(f"\n{n} records, {chars / n:.0f} characters each on average, {len(mixed)} with a fixture text; median of {repeat}\n")
    heur, flag, red = Heuristics(HeuristicsConfig()), PiiStage(PiiConfig()), PiiStage(PiiConfig(action="redact"))
    runs = {
        "heuristics stage (baseline)": lambda: heur.annotate(recs, None),
        "pii stage, flag": lambda: flag.annotate(recs, None),
        "pii stage, redact": lambda: red.annotate(list(recs), None),
    }
    peer = datatrove_finder()
    if peer:
        runs["datatrove PIIFormatter.format (e-mail + IPv4)"] = lambda: [peer[0].format(m.content) for r in recs for m in r.messages]
    base = None
    print("| run | seconds | records/s | against the heuristics stage |")
    print("|---|---|---|---|")
    for name, fn in runs.items():
        s = timed(fn, repeat)[0]
        base = base or s
        print(f"| {name} | {s:.2f} | {n / s:,.0f} | {s / base:.2f}x the time |")
    found = Counter(k for r in recs for k in r.flags.get("pii", []))
    print(f"\nrecords flagged, per kind: {dict(found)}")
    alarms: Counter = Counter()
    for i, r in enumerate(recs):
        if i not in mixed:  # a record with a fixture text is scored above
            for msg in r.messages:
                alarms.update((m.kind, msg.content[m.start:m.end]) for m in flag.detector.find(msg.content))
    print(f"detections in the records without a fixture text (real sentences and docstrings, no PII planted): "
          f"{sum(alarms.values())}, {len(alarms)} distinct:")
    for (kind, value), c in alarms.most_common(40):
        print(f"  {kind} {value!r} x{c}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="records for the speed run (0: quality only)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    docs = load()
    quality(docs)
    if args.n:
        speed(args.n, args.repeat, docs)


if __name__ == "__main__":
    main()
