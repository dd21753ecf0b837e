#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: seeds -> evolve + distill -> filter -> select -> train
# run -> train eval -> report, on the embedded models, offline, on a CPU: SmolLM2-135M-Instruct
# generates and judges, all-MiniLM-L6-v2 embeds, and the curated set fine-tunes the Gemma 3 270M
# *base* model (Gemma Terms of Use), which then answers three prompts before and after.
# Every step writes a resumable run directory; rerunning the demo skips finished steps.
# SmolLM2-135M is a plumbing model: expect the pipeline to work, not the data to be good.
set -euo pipefail
OUT="${1:-runs/demo}"
BIN="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
T0=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - T0 )) s)"; }

step "1/8 evolve: one round of Evol-Instruct over 8 bundled seed tasks"
"$BIN/datagen" evolve --seeds seeds/175.jsonl --limit 8 --rounds 1 --out "$OUT/evolve" \
  --max-new-tokens 128 --batch-size 8

step "2/8 distill: the embedded teacher answers 24 seed prompts"
"$BIN/datagen" distill --input seeds/175.jsonl --limit 24 --out "$OUT/distill" \
  --max-new-tokens 128 --batch-size 8

step "3/8 pool the generated records"
cat "$OUT/evolve/records.jsonl" "$OUT/distill/records.jsonl" > "$OUT/pool.jsonl.tmp"
mv "$OUT/pool.jsonl.tmp" "$OUT/pool.jsonl"
wc -l < "$OUT/pool.jsonl"

step "4/8 filter: heuristics, exact + MinHash dedup, semantic dedup, quality (judge, IFD, complexity)"
"$BIN/datagen" filter --input "$OUT/pool.jsonl" --out "$OUT/filter" --config examples/filter-embedded.yaml

step "5/8 select: the best and most varied 12 (DEITA score-first greedy)"
"$BIN/datagen" select --input "$OUT/filter/records.jsonl" --out "$OUT/select" --budget 12 \
  --score judge=1 --tau 0.9

step "6/8 train run: SFT of the Gemma 3 270M base on the curated set (LoRA, Gemma's turn format, packed, fp32 on CPU)"
if [ ! -f "$OUT/train/train_manifest.json" ]; then
  RESUME=$([ -d "$OUT/train" ] && echo --resume || true)
  "$BIN/train" run --data "$OUT/select/records.jsonl" --out "$OUT/train" --config lora-gemma3-cpu \
    --max-steps 16 --max-length 256 --batch-size 2 --grad-accum 2 --save-steps 8 $RESUME
fi

step "7/8 train eval: held-out loss on the bundled gold set; the base and the trained model answer the same prompts"
[ -f "$OUT/eval.json" ] || "$BIN/train" eval --model "$OUT/train" --data bench/data/gold.jsonl \
  --out "$OUT/eval.json" --n-prompts 8 --max-new-tokens 64 --compare-base
"$BIN/python" - "$OUT/eval.json" <<'PY'
import json, sys, textwrap
ev = json.load(open(sys.argv[1]))
def show(text, stopped, defects):
    body = textwrap.shorten(text.replace("\n", " / "), 300) or "(empty)"
    tags = ", ".join(defects) or "no defect found"
    return f"{body}\n        [{'ended its turn' if stopped else 'ran to the token limit'}; {tags}]"
for g in ev["generations"][:3]:
    print(f"\nprompt: {g['prompt'][-1]['content']}")
    print(f"  before (base): {show(g['base_answer'], g['base_stopped'], g['base_defects'])}")
    print(f"  after (SFT):   {show(g['answer'], g['stopped'], g['defects'])}")
b, a = ev["base_behaviour"], ev["behaviour"]
print(f"\ndefect rate over {a['answers']} gold prompts: before {b['defect_rate']:.0%}, after {a['defect_rate']:.0%}")
print("  per kind (before -> after): " + ", ".join(f"{k} {b['rates'][k]:.0%} -> {a['rates'][k]:.0%}" for k in a["rates"]))
PY

step "8/8 report: one self-contained HTML page over the whole funnel and the training run"
"$BIN/datagen" report "$OUT/evolve" "$OUT/distill" "$OUT/filter" "$OUT/select" \
  --train "$OUT/train" --eval "$OUT/eval.json" --out "$OUT/report.html"
"$BIN/datagen" report "$OUT/evolve" "$OUT/distill" "$OUT/filter" "$OUT/select" --text

step "done: open $OUT/report.html in a browser"
"$BIN/python" - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for step in ("evolve", "distill", "filter", "select"):
    s = json.loads((out / step / "stats.json").read_text())
    print(f"{step:8s} kept {s['records']:4d}  rejected {s['rejected']:4d}")
    for name, st in s["stages"].items():
        if st["rejected_total"]:
            print(f"    {name:22s} {st['in']:4d} in -> {st['out']:4d} out  {st['rejected']}")
first = json.loads((out / "select" / "records.jsonl").open().readline())
print("\nfirst curated record:", json.dumps(first["messages"], ensure_ascii=False)[:600])
print("scores:", first["scores"])
PY
