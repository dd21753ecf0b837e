"""Throughput of the OpenAI-compatible backend against a server with a fixed latency.

The test server (tests/openai_server.py) runs in a child process and answers every request after
``--latency`` seconds, so a perfect client reaches ``concurrency / latency`` requests per second.
We report the achieved rate and its ratio to that ideal (median and best of ``--repeats`` runs,
since other processes on the machine add noise), next to a baseline at concurrency 1 measured in
the same process. No cache: every request goes over HTTP.

A fleet (``--endpoints K``): K servers, each in its own child process with the same latency, and
one backend over all of them at ``--concurrency`` per server, so the ideal is
``K x concurrency / latency``. ``--dead D`` adds D endpoints where nothing listens (a node that
went down): the backend must set them aside and keep the rate of the live ones.

    .venv/bin/python bench/llm_client.py                 # 640 requests at concurrency 32
    .venv/bin/python bench/llm_client.py -n 2000 -c 64
    .venv/bin/python bench/llm_client.py --endpoints 4 -c 16 -n 1280 --dead 1
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.llm import ChatRequest, GenParams  # noqa: E402
from datagen.llm.openai_compat import OpenAICompatLLM  # noqa: E402


def measure(url: str | list[str], n: int, concurrency: int, repeats: int) -> tuple[list[float], int, float]:
    """Send n distinct requests at the given concurrency, ``repeats`` times. Returns the elapsed
    seconds of each run, the number of failed requests, and the client's CPU seconds per request."""
    requests = [ChatRequest.of([("user", f"benchmark question {i}")]) for i in range(n)]
    times: list[float] = []
    failed = 0
    with OpenAICompatLLM("bench-model", base_url=url, concurrency=concurrency, max_retries=0, probe=False) as llm:
        llm.generate(requests[:llm.concurrency], GenParams(max_tokens=32))  # open the connections (and find the dead)
        cpu = time.process_time()
        for seed in range(repeats):
            start = time.perf_counter()
            out = llm.generate(requests, GenParams(max_tokens=32, seed=seed))
            times.append(time.perf_counter() - start)
            failed += sum(not c.ok for c in out)
        cpu = time.process_time() - cpu
    return times, failed, cpu / (n * repeats)


def free_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=640, help="requests in each measured run")
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2, help="server latency in seconds")
    ap.add_argument("--repeats", type=int, default=3, help="measured runs of each configuration")
    ap.add_argument("--baseline-n", type=int, default=20, help="requests in the concurrency-1 baseline")
    ap.add_argument("--endpoints", type=int, default=1, help="live servers (a fleet when > 1), concurrency each")
    ap.add_argument("--dead", type=int, default=0, help="endpoints where nothing listens, added to the fleet")
    args = ap.parse_args()
    os.environ["DATAGEN_PROGRESS"] = "0"

    servers = [subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_server.py"), "--port", "0", "--latency", str(args.latency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) for _ in range(args.endpoints)]
    try:
        urls = []
        for server in servers:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http://127.0.0.1:"):
                raise SystemExit(f"test server did not start (got {url!r})")
            urls.append(url)
        dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(args.dead)]
        runs = [("baseline", args.baseline_n, 1, urls[0], 1), ("measured", args.n, args.concurrency, urls + dead, len(urls))]
        results = [measure(u, n, c, args.repeats) for _, n, c, u, _ in runs]
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)

    print(f"server latency {args.latency * 1000:.0f} ms; {args.endpoints} live server(s), {args.dead} dead; {args.repeats} runs each; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} cpus; load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':<10}{'requests':>9}{'live':>5}{'conc.':>6}{'req/s med':>11}{'req/s best':>11}{'ideal':>7}"
          f"{'ratio med':>10}{'ratio best':>11}{'cpu ms/req':>11}{'failed':>7}")
    rates = []
    for (name, n, conc, _, live), (times, failed, cpu) in zip(runs, results):
        ideal = live * conc / args.latency
        med, best = n / statistics.median(times), n / min(times)
        rates.append(med)
        print(f"{name:<10}{n:>9}{live:>5}{conc:>6}{med:>11.1f}{best:>11.1f}{ideal:>7.0f}"
              f"{med / ideal:>10.3f}{best / ideal:>11.3f}{cpu * 1000:>11.2f}{failed:>7}")
    print(f"speed-up over the baseline (median): {rates[1] / rates[0]:.1f}x")


if __name__ == "__main__":
    main()
