"""Reading the same records from each input kind, and the reading loop against an earlier revision.

``--n`` alpaca rows (the bundled seed tasks' instructions and answers, numbered so that no two are
equal) are written as JSONL, as Parquet, as a ``save_to_disk`` folder (Arrow), as Dolly-shaped
JSONL, and as JSONL whose columns need ``--map``; each is read whole with
:func:`datagen.core.io.read_records` and every record checked equal to the JSONL reading. The
conversion of the parsed rows to records alone is timed too: what no reader can save. The
JSONL reading of this tree is also timed against ``datagen/core/io.py`` at ``--baseline`` (loaded
from ``git show``, same process, same files). Each timing is the median of ``--repeat`` runs, the
cases taken in turn within each run.

    .venv/bin/python bench/read_inputs.py --baseline 530bfd7 --n 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from hot_paths import old_module  # noqa: E402

from datagen.core.io import read_records  # noqa: E402
from datagen.core.shapes import RowMap, read_row  # noqa: E402


def rows(n: int) -> list[dict]:
    seeds = [json.loads(x) for x in (ROOT / "seeds" / "175.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for i in range(n):
        s = seeds[i % len(seeds)]
        inst = s["instances"][0]
        out.append({"instruction": f"{s['instruction']} ({i})", "input": inst["input"], "output": inst["output"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="git revision of the earlier datagen/core/io.py")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import datasets

    data = rows(args.n)
    tmp = Path(tempfile.mkdtemp())
    jsonl = tmp / "alpaca.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    ds = datasets.Dataset.from_list(data)
    ds.to_parquet(str(tmp / "alpaca.parquet"))
    ds.save_to_disk(str(tmp / "alpaca_folder"))
    dolly = tmp / "dolly.jsonl"
    dolly.write_text("".join(json.dumps({"instruction": r["instruction"], "context": r["input"], "response": r["output"], "category": "x"},
                                        ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    renamed = tmp / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({"question": r["instruction"], "input": r["input"], "answer": r["output"]}, ensure_ascii=False) + "\n"
                               for r in data), encoding="utf-8")
    old_io = old_module(args.baseline, "datagen/core/io.py", "io_baseline")

    cases = [
        ("JSONL (alpaca), at the baseline", lambda: list(old_io.read_records(jsonl))),
        ("JSONL (alpaca)", lambda: list(read_records(jsonl))),
        ("Parquet", lambda: list(read_records(tmp / "alpaca.parquet"))),
        ("save_to_disk folder (Arrow)", lambda: list(read_records(tmp / "alpaca_folder"))),
        ("JSONL (dolly)", lambda: list(read_records(dolly))),
        ("JSONL with --map question=instruction,answer=output", lambda: list(read_records(renamed, mapping=RowMap.parse("question=instruction,answer=output", None)))),
        ("the conversion alone (rows parsed already)", lambda: [read_row(r, "alpaca") for r in data]),
    ]
    # round robin, so that a change in the machine's load falls on every case alike
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    ref = None
    for _ in range(args.repeat):
        for name, fn in cases:
            gc.collect()  # the previous case's records are gone before this one starts
            t0 = time.perf_counter()
            recs = fn()
            times[name].append(time.perf_counter() - t0)
            msgs = [[(m.role, m.content) for m in r.messages] for r in recs]
            ref = msgs if ref is None else ref
            assert msgs == ref, name  # every kind reads the same conversations
            del recs, msgs
    base = statistics.median(times["JSONL (alpaca)"])
    print(f"{args.n} records, median of {args.repeat} (round robin)")
    print("| input | seconds | records/s | vs JSONL (this tree) |\n|---|---|---|---|")
    for name, ts in times.items():
        sec = statistics.median(ts)
        print(f"| {name} | {sec:.3f} | {args.n / sec:,.0f} | {sec / base:.2f}x |")


if __name__ == "__main__":
    main()
