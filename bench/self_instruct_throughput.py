"""Self-Instruct throughput against an OpenAI-compatible server with a fixed latency.

The server is tests/openai_server.py in a child process (this script started with ``--serve``),
answering every request after ``--latency`` seconds with plausible text: a numbered task list for
a task request, "Yes"/"No" for a classification question, ``Example N / Input / Output`` (or
``Class label / Input``) instances for an instance request. The tasks are sentences of words
drawn from the bundled seed tasks, so most of them pass the filters and the ROUGE-L novelty check.

The loop runs for real (no cache): rounds of ``--requests-per-round`` task requests, then one
classification and one instance request per selected task, every step a batch sent at
``--concurrency``; parsing, filtering, the novelty index and the sealed parts of the run
directory are all in the timing. A perfect client reaches ``concurrency / latency`` requests per
second (bench/llm_client.py measures how close the bare client gets); we report the loop's
requests/s against that ideal, its records per request, and so its records/s against the ideal
``records per request x concurrency / latency``. Median of ``--repeats`` runs.

    .venv/bin/python bench/self_instruct_throughput.py
    .venv/bin/python bench/self_instruct_throughput.py --num 1000 --concurrency 64
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from datagen.core.assets import resolve_seed_file  # noqa: E402
from datagen.curate.stages.instructions import BLACKLIST  # noqa: E402
from datagen.generate.self_instruct import SelfInstruct
from datagen.generate.self_instruct_settings import Settings
from datagen.generate.self_instruct_parsing import load_seed_tasks  # noqa: E402
from datagen.llm import GenParams  # noqa: E402
from datagen.llm.openai_compat import OpenAICompatLLM  # noqa: E402
from datagen.core.rundir import RunDir  # noqa: E402
from datagen.core.text import tokens  # noqa: E402

SEEDS = resolve_seed_file("seeds/175.jsonl")
VERBS = ["Write", "Explain", "Describe", "Summarize", "Compare", "List", "Suggest", "Rewrite", "Classify", "Outline"]
TASKS_PER_ANSWER = 8


def _vocabulary() -> list[str]:
    """Words of the seed instructions (minus the blacklisted ones): tasks made of them read like
    instructions and rarely repeat each other."""
    seen = dict.fromkeys(t for task in load_seed_tasks(SEEDS) for t in tokens(task["instruction"]) if t.isalpha())
    return [w for w in seen if w not in BLACKLIST]


def plausible_answer(message: str) -> str:
    """What the benchmark server answers, deterministic in the message."""
    rng = random.Random(hashlib.sha256(message.encode()).hexdigest())
    if message.startswith("Can the following task be regarded as a classification task"):
        return "Yes" if rng.random() < 0.2 else "No"
    if message.startswith("Given the classification task definition"):
        labels = ["positive", "negative", "neutral"]
        return "\n\n".join(f"Class label: {lab}\nInput: {_words(rng, 8)}." for lab in labels)
    if message.startswith("Come up with examples"):
        return "\n\n".join(f"Example {k}\nInput: {_words(rng, 6)}.\nOutput: {_words(rng, 12)}." for k in (1, 2))
    m = re.search(r"starting at Task (\d+)", message)
    start = int(m.group(1)) if m else 1
    return "\n".join(f"Task {start + k}: {rng.choice(VERBS)} {_words(rng, rng.randint(8, 14))}." for k in range(TASKS_PER_ANSWER))


_VOCAB: list[str] = []


def _words(rng: random.Random, n: int) -> str:
    if not _VOCAB:
        _VOCAB.extend(_vocabulary())
    return " ".join(rng.choice(_VOCAB) for _ in range(n))


def serve(latency: float) -> None:
    """Run the test server with plausible answers until stdin closes (the ``--serve`` mode)."""
    from openai_server import OpenAIServer

    with OpenAIServer(latency=latency, answer_fn=plausible_answer) as srv:
        print(srv.url, flush=True)
        sys.stdin.read()


def measure(url: str, args: argparse.Namespace, seed: int) -> dict[str, float]:
    seeds = load_seed_tasks(SEEDS)
    settings = Settings(num=args.num, requests_per_round=args.requests_per_round)
    params = GenParams(max_tokens=256, seed=seed)
    with tempfile.TemporaryDirectory() as tmp, OpenAICompatLLM("bench-model", base_url=url, concurrency=args.concurrency, max_retries=0) as llm:
        gen = SelfInstruct(llm, params, seeds, settings)
        run = RunDir(Path(tmp) / "run", "self-instruct", {"bench": seed})
        start = time.perf_counter()
        cpu = time.process_time()
        res = gen.run(run, {}, progress=False)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        usage = llm.usage.to_dict()
    return {"seconds": wall, "records": res.summary["records"], "tasks": res.accepted, "rejected": res.summary["rejected"],
            "requests": usage["requests"], "failures": usage["failures"], "rounds": res.rounds, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=500, help="tasks to accept per run")
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--requests-per-round", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2, help="server latency in seconds")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.latency)
        return
    os.environ["DATAGEN_PROGRESS"] = "0"
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(args.latency)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"benchmark server did not start (got {url!r})")
        runs = [measure(url, args, seed) for seed in range(args.repeats)]
    finally:
        server.terminate()
        server.wait(10)

    ideal_rps = args.concurrency / args.latency
    print(f"server latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, {args.requests_per_round} task requests "
          f"per round, --num {args.num}; {args.repeats} runs; python {sys.version.split()[0]}; {os.cpu_count()} cpus; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':>4}{'rounds':>7}{'requests':>9}{'tasks':>7}{'records':>8}{'rejected':>9}{'seconds':>8}{'req/s':>7}"
          f"{'rec/s':>7}{'rec/req':>8}{'cpu ms/req':>11}{'failed':>7}")
    for i, r in enumerate(runs):
        print(f"{i:>4}{r['rounds']:>7}{r['requests']:>9}{r['tasks']:>7}{r['records']:>8}{r['rejected']:>9}{r['seconds']:>8.2f}"
              f"{r['requests'] / r['seconds']:>7.1f}{r['records'] / r['seconds']:>7.1f}{r['records'] / r['requests']:>8.3f}"
              f"{r['cpu'] / r['requests'] * 1e3:>11.2f}{r['failures']:>7}")
    rps = statistics.median(r["requests"] / r["seconds"] for r in runs)
    rec_s = statistics.median(r["records"] / r["seconds"] for r in runs)
    per_req = statistics.median(r["records"] / r["requests"] for r in runs)
    print(f"median: {rps:.1f} requests/s = {rps / ideal_rps:.3f} of the ideal {ideal_rps:.0f} (concurrency / latency); "
          f"{rec_s:.1f} records/s = {rec_s / (per_req * ideal_rps):.3f} of the ideal {per_req * ideal_rps:.1f} "
          f"({per_req:.3f} records per request x {ideal_rps:.0f} requests/s)")


if __name__ == "__main__":
    main()
