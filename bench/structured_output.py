"""How much structured output lowers the parse failures, against llama.cpp's real server.

The same work runs twice against one server (llama-cpp-python over the embedded SmolLM2 GGUF,
without logprobs, so that the judges must read their verdicts from the text): once with the
JSON schemas the generators ask for (``response_format``), once with them switched off, i.e.
the free-text replies of a server that cannot constrain its output.

* Evol-Instruct, one round over ``--evolve`` seed instructions: the rejections by reason, in
  particular ``empty_evolution`` and ``copied_scaffolding`` (a reply the parser could not turn
  into an instruction) and the equality judge's ``unclear`` verdicts.
* The quality stage's judge and complexity ratings over ``--rate`` distilled records: how many
  came back ``unparsed`` (no rating at all).

    .venv/bin/python bench/structured_output.py              # needs make llama
    .venv/bin/python bench/structured_output.py --evolve 8 --rate 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.core.runner import Context  # noqa: E402
from datagen.curate.base import FilterContext  # noqa: E402
from datagen.curate.stages.quality import QualityStage  # noqa: E402
from datagen.generate.evol_instruct import EvolInstruct  # noqa: E402
from datagen.core.io import read_records  # noqa: E402
from datagen.llm import GenParams  # noqa: E402
from datagen.llm.llama_server import LlamaServer, embedded_gguf  # noqa: E402
from datagen.llm.openai_compat import OpenAICompatLLM  # noqa: E402
from datagen.core.stats import Stats  # noqa: E402


class Unstructured:
    """The same backend, with every request's JSON schema dropped (a server without structured output)."""

    def __init__(self, llm: OpenAICompatLLM) -> None:
        self.inner, self.model_id, self.usage = llm, llm.model_id, llm.usage

    def generate(self, requests, params):
        return self.inner.generate(requests, replace(params, json_schema=None))

    def describe(self):
        return self.inner.describe()


def evolve(llm, seeds, tokens: int) -> dict:
    evol = EvolInstruct(llm, GenParams(max_tokens=tokens, temperature=0.7, top_p=0.95, seed=0), teacher=None, rounds=1, progress=False)
    ctx = Context("evolve")
    survivors, _ = evol.evolve_chunk(1, seeds, {}, ctx)
    return {"evolved": len(seeds), "survived": len(survivors), "rejected": dict(Counter(r.reason for r in ctx.rejected)),
            "judge_verdicts": ctx.stats.extra["judge_verdicts"]}


def rate(llm, records) -> dict:
    stage = QualityStage(scorers=["judge", "complexity"])
    recs = [r.model_copy(deep=True) for r in records]
    with tempfile.TemporaryDirectory() as d:
        stage.annotate(recs, FilterContext(stats=Stats(), cache_dir=Path(d), llm_factory=lambda: llm, progress=False))
    return {s: dict(Counter(r.flags[s]["method"] for r in recs)) for s in ("judge", "complexity")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evolve", type=int, default=24, help="seed instructions evolved (one round)")
    ap.add_argument("--rate", type=int, default=24, help="records rated by the judge and complexity scorers")
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    seeds = list(read_records(ROOT / "seeds" / "175.jsonl", require_answer=False))
    rated = list(read_records(ROOT / "bench" / "data" / "gold.jsonl"))[: args.rate]
    out = {}
    with LlamaServer(embedded_gguf(), alias="smollm2", logprobs=False) as srv:
        llm = OpenAICompatLLM("smollm2", base_url=srv.url, timeout=600)
        for name, backend in (("structured", llm), ("free text", Unstructured(llm))):
            t0 = time.perf_counter()
            out[name] = {"evolve": evolve(backend, seeds[: args.evolve], args.max_tokens), "ratings": rate(backend, rated),
                         "seconds": round(time.perf_counter() - t0, 1)}
            print(name, out[name], file=sys.stderr)
        out["capabilities"] = llm.describe()["capabilities"]
        llm.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
