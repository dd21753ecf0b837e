#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: runs on the embedded default models, offline, on a CPU.
# Every step writes a resumable run directory; rerunning the demo skips finished steps.
set -euo pipefail
OUT="${1:-runs/demo}"
BIN="$(dirname "$0")/../.venv/bin"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
T0=$(date +%s)

echo "== 1. the bundled seed tasks, converted to chat records"
"$BIN/datagen" convert --input seeds/175.jsonl --to messages --out "$OUT/seeds.messages.jsonl"

echo "== 2. distill: the embedded teacher (SmolLM2-135M-Instruct) answers 16 seed prompts"
"$BIN/datagen" distill --input "$OUT/seeds.messages.jsonl" --limit 16 --out "$OUT/distill" \
  --max-new-tokens 96 --temperature 0.7 --batch-size 8

echo "== done in $(( $(date +%s) - T0 )) s. Outputs:"
ls -l "$OUT" "$OUT/distill"
"$BIN/python" - "$OUT/distill" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
stats = json.loads((d / "stats.json").read_text())
print(json.dumps({k: stats[k] for k in ("records", "rejected", "stages")}, indent=1))
first = json.loads((d / "records.jsonl").open().readline())
print("\nexample record:", json.dumps(first["messages"], ensure_ascii=False, indent=1)[:800])
PY
