"""What the dataset card adds to the end of a run: ``run_card`` (read the manifests, count the
writing systems of the first 10,000 records, render, write README.md) against the copy of the
run's records that ``finalize`` makes anyway (parts concatenated into records.jsonl).

    .venv/bin/python bench/card.py [--n 100000] [--repeat 5] [--out /tmp/bench_card]

The run directory is bench/report_scale.py's synthetic ``filter`` run of N records; both timings
are medians of ``--repeat`` runs in this process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from timing import timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from report_scale import make_run

    from datagen.core.card import run_card
    from datagen.core.writing import concat_files

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_card_"))
    make_run(out, args.n)
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    copy = out / ".copy.jsonl"
    card = timed(lambda: run_card(out, manifest, stats), args.repeat)[0]
    concat = timed(lambda: concat_files(copy, [out / "records.jsonl"]), args.repeat)[0]
    copy.unlink()
    mb = (out / "records.jsonl").stat().st_size / 1e6
    print(f"{args.n} records ({mb:.0f} MB records.jsonl), medians of {args.repeat}:")
    print(f"  dataset card (run_card)          {card:.3f} s")
    print(f"  records.jsonl copy (finalize's)  {concat:.3f} s")
    print(f"  card / copy                      {card / concat:.2f}x")


if __name__ == "__main__":
    main()
