#!/usr/bin/env bash
# Do two trees of this repository write the same outputs? Runs every datagen command of each tree
# (bench/same_outputs_run.sh: self-instruct, evolve, distill against the scripted server; convert,
# filter, select, report on the bundled noisy pool) into the same path, one after the other, then
# compares them (bench/same_outputs_diff.py: records and rejections byte for byte, stats and
# manifests without timings). A tree can be a git worktree of an older commit:
#
#   git worktree add /tmp/before <commit> && bash bench/same_outputs.sh /tmp/before .
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PY=${PY:-$(cd "$HERE/.." && pwd)/.venv/bin/python}
WORK=${WORK:-/tmp/datagen-same-outputs}
rm -rf "$WORK"; mkdir -p "$WORK"
bash "$HERE/same_outputs_run.sh" "$1" "$WORK/run" > "$WORK/a.log" 2>&1; mv "$WORK/run" "$WORK/a"
bash "$HERE/same_outputs_run.sh" "$2" "$WORK/run" > "$WORK/b.log" 2>&1; mv "$WORK/run" "$WORK/b"
"$PY" "$HERE/same_outputs_diff.py" "$WORK/a" "$WORK/b"
