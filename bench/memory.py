"""Peak memory of ``train run`` against the estimate it makes before step 1 (train/memory.py).

Each setting is one ``train run`` of one optimizer step in its own process, alone on the machine,
over the noisy pool packed into rows of ``length`` tokens; the peak is that process's maximum RSS
(``wait4``), the estimate is the one the run wrote into its manifest. One row per setting:

    .venv/bin/python bench/memory.py                       # the grid below, both models
    .venv/bin/python bench/memory.py --model gemma3-270m --rows 2 --length 1024 --checkpointing off

The ratio measured / estimated is what the check's margin rests on: above 1, a run the check lets
through can still run out of memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / ".venv" / "bin" / "train")
DATA = ROOT / "bench" / "data" / "noisy_pool.jsonl"
SHAPES = [(1, 512), (1, 1024), (2, 1024), (4, 512)]


def measure(model: str, rows: int, length: int, checkpointing: bool, chunk: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [TRAIN, "run", "--data", str(DATA), "--out", str(out), "--model", model, "--max-steps", "1",
               "--save-steps", "100", "--batch-size", str(rows), "--grad-accum", "1",
               "--set", f"max_length={length}", "--set", "eval_split=none", "--set", "memory_check=off",
               "--set", f"gradient_checkpointing={str(checkpointing).lower()}", "--set", "logging_steps=1"]
        if chunk is not None:
            cmd += ["--set", f"loss_chunk_tokens={chunk}"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DATAGEN_PROGRESS": "0"}
        started = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        stderr = proc.stderr.read() if proc.stderr else ""
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({status}):\n{stderr[-2000:]}")
        manifest = json.loads((out / "train_manifest.json").read_text())
    est = manifest["data"]["memory_estimate"]
    peak = usage.ru_maxrss * 1024 / 1e9
    return {"model": model, "rows": rows, "length": length, "checkpointing": checkpointing,
            "chunk": chunk, "peak_gb": round(peak, 2), "estimate": est,
            "ratio": round(peak / est["total_gb"], 3), "seconds": round(time.time() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="default: smollm2 and gemma3-270m")
    p.add_argument("--rows", type=int)
    p.add_argument("--length", type=int)
    p.add_argument("--checkpointing", choices=["on", "off", "both"], default="both")
    p.add_argument("--chunk", type=int, help="loss_chunk_tokens (0: the model's own loss); default: the run's")
    p.add_argument("--jsonl", type=Path, help="append each row here too")
    a = p.parse_args(argv)
    models = a.model or ["smollm2", "gemma3-270m"]
    shapes = [(a.rows, a.length)] if a.rows and a.length else SHAPES
    gcs = {"on": [True], "off": [False], "both": [False, True]}[a.checkpointing]
    print("| model | rows x length | checkpointing | peak RSS | estimate (weights + activations + logits) | measured / estimate |")
    print("|---|---|---|---|---|---|")
    for model, (rows, length), gc in itertools.product(models, shapes, gcs):
        row = measure(model, rows, length, gc, a.chunk)
        e = row["estimate"]
        print(f"| {model} | {rows} x {length} | {'on' if gc else 'off'} | {row['peak_gb']:.2f} GB | {e['total_gb']:.2f} GB "
              f"({e['weights_gb']:.2f} + {e['activations_gb']:.2f} + {e['logits_gb']:.2f}) | {row['ratio']:.2f} |", flush=True)
        if a.jsonl:
            with a.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
