"""Compare two outputs of bench/same_outputs_run.sh: records, rejections and text byte for byte, JSON
without timings and timestamps, HTML with its timestamps masked; caches are skipped. Exit 1 when
anything differs."""
import json
import re
import sys
from pathlib import Path
a, b = Path(sys.argv[1]), Path(sys.argv[2])
TIMING = {"seconds", "elapsed", "started", "finished", "created", "time", "timestamp", "duration_s", "wall_seconds", "versions", "python", "packages"}
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in TIMING and not k.endswith("_seconds") and not k.endswith("_at") and "second" not in k}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
bad = 0
files = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()} | {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
for rel in files:
    pa, pb = a / rel, b / rel
    if not pa.exists() or not pb.exists():
        print("ONLY IN ONE:", rel); bad += 1; continue
    if rel.suffix == ".log" or rel.name.endswith(".lock") or rel.parts[0] == "cache":
        continue
    if rel.suffix == ".jsonl" or rel.suffix in (".txt",):
        same = pa.read_bytes() == pb.read_bytes()
    elif rel.suffix == ".json":
        try:
            same = strip(json.loads(pa.read_text())) == strip(json.loads(pb.read_text()))
        except Exception:
            same = pa.read_bytes() == pb.read_bytes()
    elif rel.suffix == ".md":  # a dataset card: its command lines name the output folder, and it has finish times
        stamp = re.compile(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")  # as for .html below
        same = stamp.sub("T", pa.read_text().replace(str(a), "OUT")) == stamp.sub("T", pb.read_text().replace(str(b), "OUT"))
    elif rel.suffix == ".html":
        stamp = re.compile(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
        same = stamp.sub("T", pa.read_text()) == stamp.sub("T", pb.read_text())
    else:
        same = pa.read_bytes() == pb.read_bytes()
    if not same:
        print("DIFFERS:", rel); bad += 1
print(f"{len(files)} files, {bad} differ")
sys.exit(1 if bad else 0)
