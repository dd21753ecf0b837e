#!/usr/bin/env bash
# Every datagen command of the tree TREE on fixed inputs, into OUT (see bench/same_outputs.sh).
set -euo pipefail
TREE=$(cd "$1" && pwd); OUT=$2; PY=${PY:-$(pwd)/.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DATAGEN_PROGRESS=0 PYTHONPATH=$TREE
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$TREE"
D="$PY -m datagen.cli"
# a scripted OpenAI-compatible server for the generators
coproc SRV { $PY tests/openai_server.py --port 18765; }
read -r URL <&"${SRV[0]}"
echo "server $URL"
$D self-instruct --seeds seeds/175.jsonl --out "$OUT/si" --num 12 --llm openai --base-url "$URL" --model m --no-cache > "$OUT/si.log" 2>&1 || echo "si rc $?"
$D self-instruct --seeds seeds/175.jsonl --out "$OUT/alp" --num 12 --mode alpaca --llm openai --base-url "$URL" --model m --no-cache > "$OUT/alp.log" 2>&1 || echo "alp rc $?"
$D evolve --seeds seeds/175.jsonl --limit 6 --rounds 2 --out "$OUT/ev" --llm openai --base-url "$URL" --model m --no-cache > "$OUT/ev.log" 2>&1 || echo "ev rc $?"
$D distill --input seeds/175.jsonl --limit 10 --n 2 --out "$OUT/di" --llm openai --base-url "$URL" --model m --no-cache > "$OUT/di.log" 2>&1 || echo "di rc $?"
# curation on the bundled noisy pool
$D filter --input bench/data/noisy_pool.jsonl --out "$OUT/fi" --stages heuristics,exact,minhash,semantic --cache-dir "$OUT/cache" > "$OUT/fi.log" 2>&1 || echo "fi rc $?"
$D filter --input bench/data/noisy_pool.jsonl --out "$OUT/fq" --config examples/filter.yaml --limit 20 --llm openai --llm openai --base-url "$URL" --model m --no-cache --cache-dir "$OUT/cache" > "$OUT/fq.log" 2>&1 || echo "fq rc $?"
$D convert --input bench/data/noisy_pool.jsonl --to sharegpt --out "$OUT/conv.jsonl" > "$OUT/conv.log" 2>&1 || echo "conv rc $?"
$D select --input "$OUT/fi/records.jsonl" --out "$OUT/se" --budget 40 --score relevance --cache-dir "$OUT/cache" > "$OUT/se.log" 2>&1 || echo "se rc $?"
$D report "$OUT/fi" "$OUT/se" --out "$OUT/report.html" --cache-dir "$OUT/cache" > "$OUT/re.log" 2>&1 || echo "re rc $?"
$D report "$OUT/fi" "$OUT/se" --text > "$OUT/report.txt" 2>&1 || echo "ret rc $?"
kill $SRV_PID 2>/dev/null || true
echo done
