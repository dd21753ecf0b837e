"""The semantic stage's engines: speed against agreement with the encoder on every record.

**Data**: ``--n`` records from :mod:`bench.semantic_pool` (real sentences recombined, ~12% graded
semantic variants, ~2% answers to another question), written once to
``runs/bench/semantic-<n>.jsonl`` and reused, so that every run sees the same rows.

**Runs** (each with an empty embedding cache, so the encoder's cost is counted; the static model is
distilled once, kept in ``runs/bench/semantic-models/``, its time reported apart):

* dedup only (``min_relevance: null``): ``engine: encoder`` (the reference), then ``cascade`` at
  each ``--candidates`` threshold; a static-only decision (the static model's pairs at the
  centred-cosine threshold that drops as many records as the reference, no encoder) as the floor;
* the whole stage (the off-topic check on): ``encoder``, and ``cascade`` at candidate threshold
  0.6 with each ``--screens`` share of answers checked by the encoder for relevance;
* the pair search: pairs at or above the threshold left among the reference's survivors, for the
  exact search and for the IVF index at ``nprobe`` 1 (a k-means split) and 8.

Agreement is between dropped-record sets: Jaccard, precision and recall against the reference.
"Left" counts survivor pairs at or above the threshold under the encoder's vectors.

``--arms`` (names of :data:`ARMS`, each a whole-stage configuration) measures those instead: each
arm against ``encoder`` (the whole stage, every text whole through MiniLM), the agreement of the
dropped sets, of the off-topic sets and of the duplicate pairs (dropped record, survivor), the
pairs left, and the time: ``--rounds`` interleaved rounds, median seconds and the median of the
per-round speed-ups.

    .venv/bin/python bench/semantic.py --n 5000
    .venv/bin/python bench/semantic.py --n 5000 --rounds 3 --candidates 0.8 --screens 0.3   # timing only
    .venv/bin/python bench/semantic.py --n 1000 --rounds 3 --arms cascade,cascade-screen0.3-by32   # configurations
    .venv/bin/python bench/semantic.py --n 1000 --encoder-options    # int8 MiniLM, derived dedup vectors
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from datagen.core.record import Record  # noqa: E402
from datagen.core.stats import Stats  # noqa: E402
from datagen.curate.base import FilterContext  # noqa: E402
from datagen.curate.dedup.neighbors import similar_pairs  # noqa: E402
from datagen.curate.dedup.groups import survivor_walk  # noqa: E402
from datagen.curate.dedup.semantic import SemanticDedup  # noqa: E402
from datagen.score.embeddings import EmbeddingStore, embed_text  # noqa: E402


# whole-stage configurations --arms names (the semantic stage's own keys)
ARMS: dict[str, dict] = {
    "encoder": {},
    "cascade": dict(engine="cascade"),
    "cascade-screen0.3": dict(engine="cascade", relevance_screen=0.3),
    "cascade-screen0.3-by32": dict(engine="cascade", relevance_screen=0.3, relevance_screen_tokens=32),
    "cascade-screen0.2-by32": dict(engine="cascade", relevance_screen=0.2, relevance_screen_tokens=32),
    "cascade-screen0.2-by16": dict(engine="cascade", relevance_screen=0.2, relevance_screen_tokens=16),
}


def data_path(n: int, variants: float) -> Path:
    return ROOT / "runs" / "bench" / (f"semantic-{n}.jsonl" if variants == 0.12 else f"semantic-{n}-v{variants}.jsonl")


def load(n: int, seed: int, variants: float) -> list[Record]:
    path = data_path(n, variants)
    if not path.is_file():
        from semantic_pool import make_pool

        rows, kinds = make_pool(n, seed, variants)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps({**r, "kind": k}) + "\n" for r, k in zip(rows, kinds)), encoding="utf-8")
        tmp.replace(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [Record.from_turns(r["instruction"], r["output"]) for r in rows]


def run(records: list[Record], models: Path, embeddings: Path | None = None, **cfg) -> tuple[float, set[str], dict, Path]:
    """(seconds, dropped ids, the stage's stats, the cache it filled) with a fresh cache (holding
    ``embeddings`` if given)."""
    cache = Path(tempfile.mkdtemp(prefix="sem-bench-"))
    shutil.copytree(models, cache / "models")
    if embeddings is not None:
        shutil.copytree(embeddings, cache / "embeddings")
    recs = [r.model_copy(deep=True) for r in records]
    stage = SemanticDedup(**cfg)
    stats = Stats()
    t0 = time.perf_counter()
    stage.annotate(recs, FilterContext(stats=stats, cache_dir=cache, progress=False))
    seconds = time.perf_counter() - t0
    return seconds, {r.id for r in recs if stage.verdict(r) is not None}, {**stats.extra["semantic"], "records": recs}, cache


def agreement(got: set[str], ref: set[str]) -> str:
    inter = len(got & ref)
    return (f"Jaccard {inter / max(1, len(got | ref)):.3f}, precision {inter / max(1, len(got)):.3f}, "
            f"recall {inter / max(1, len(ref)):.3f}")


def left_pairs(records: list[Record], dropped: set[str], vectors: dict[str, np.ndarray], threshold: float) -> int:
    keep = [r.id for r in records if r.id not in dropped]
    v = np.stack([vectors[i] for i in keep])
    return len(similar_pairs(v, threshold, "exact", progress=False)[0])


def warm() -> None:
    """Load the encoder once: later stores of the process share it, so no arm pays for the load."""
    cache = Path(tempfile.mkdtemp(prefix="sem-warm-"))
    EmbeddingStore(cache)._load()
    shutil.rmtree(cache, ignore_errors=True)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def compare_arms(records: list[Record], models: Path, names: list[str], rounds: int) -> None:
    """Each arm of ``names`` against ``encoder`` (the whole stage, every text whole), in ``rounds``
    interleaved rounds: the agreement of the dropped records, the off-topic ones and the duplicate
    pairs (dropped record, survivor) from the first round, pairs left under MiniLM's vectors;
    median seconds and the median of the per-round speed-ups."""
    arms = ["encoder"] + [n for n in names if n != "encoder"]
    times: dict[str, list[float]] = {a: [] for a in arms}
    rows: dict[str, str] = {}
    warm()
    for r in range(max(1, rounds)):
        for name in arms:
            t, got, st, cache = run(records, models, **ARMS[name])
            times[name].append(t)
            recs = st["records"]
            off = {x.id for x in recs if x.flags.get("off_topic")}
            pairs = {(x.id, x.flags["semantic_duplicate_of"]) for x in recs if "semantic_duplicate_of" in x.flags}
            if name == "encoder" and r == 0:
                ref, ref_off, ref_pairs, ref_cache = got, off, pairs, cache
                # every record's vector (the off-topic ones were not embedded whole for dedup)
                vecs = dict(zip([x.id for x in records], EmbeddingStore(cache).embed([embed_text(x) for x in records], progress=False)))
            else:
                shutil.rmtree(cache, ignore_errors=True)
            if r == 0:
                rows[name] = (f"{st['embedded']} | {len(got)} ({len(off)}) | "
                              f"{agreement(got, ref).replace('Jaccard ', '').replace(', precision ', ' / ').replace(', recall ', ' / ')} | "
                              f"{jaccard(off, ref_off):.3f} | {jaccard(pairs, ref_pairs):.3f} | {left_pairs(records, got, vecs, 0.95)}")
    shutil.rmtree(ref_cache, ignore_errors=True)
    print(f"| arm | settings | median s ({max(1, rounds)} rounds) | records/s | speed-up | texts encoded | dropped (off-topic) | "
          "dropped: Jaccard / precision / recall | off-topic Jaccard | pair Jaccard | pairs >= 0.95 left |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in arms:
        ratios = [a / b for a, b in zip(times["encoder"], times[name])]
        settings = ", ".join(f"{k}: {v}" for k, v in ARMS[name].items()) or "(defaults)"
        med = statistics.median(times[name])
        print(f"| {name} | {settings} | {med:.1f} | {len(records) / med:.1f} | {statistics.median(ratios):.2f}x "
              f"({', '.join(f'{x:.2f}' for x in ratios)}) | {rows[name]} |")


def encoder_options(records: list[Record], sample: int = 300) -> None:
    """Two ways to less encoder work measured outside the stage, on sentence-transformers directly:
    MiniLM with its Linear layers quantized to int8 (torch dynamic quantization, per-tensor and
    per-channel weights: speed in 2 interleaved rounds over ``sample`` record texts, cosine to the
    fp32 vectors), and a record's dedup vector derived from its instruction and answer vectors
    (which the off-topic check computes anyway) instead of a third encoding (the dedup decisions
    at 0.95, lowest id surviving, against those of the record texts' own vectors)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    path = EmbeddingStore(Path(tempfile.mkdtemp(prefix="sem-enc-"))).model_path()
    fp32 = SentenceTransformer(path, device="cpu")
    models = {"fp32": fp32}
    for name, qconfig in (("int8, per-tensor", default_dynamic_qconfig), ("int8, per-channel", per_channel_dynamic_qconfig)):
        models[name] = quantize_dynamic(SentenceTransformer(path, device="cpu"), {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    texts = [embed_text(r) for r in records]
    times: dict[str, list[float]] = {k: [] for k in models}
    vecs: dict[str, np.ndarray] = {}
    for _ in range(2):
        for name, model in models.items():
            t0 = time.perf_counter()
            vecs[name] = model.encode(texts[:sample], batch_size=64, normalize_embeddings=True)
            times[name].append(time.perf_counter() - t0)
    for name, encode_onnx in onnx_encoders(fp32).items():  # onnxruntime, fp32 and int8, if installed
        times[name] = []
        for _ in range(2):
            t0 = time.perf_counter()
            vecs[name] = encode_onnx(texts[:sample])
            times[name].append(time.perf_counter() - t0)
    print(f"int8 MiniLM ({sample} record texts, 2 rounds; torch interleaved, onnxruntime after):")
    for name in times:
        cos = np.einsum("ij,ij->i", vecs[name], vecs["fp32"])
        ratios = [a / b for a, b in zip(times["fp32"], times[name])]
        print(f"  {name}: {sample / statistics.median(times[name]):.1f} texts/s, {statistics.median(ratios):.2f}x fp32; "
              f"cosine to fp32 median {np.median(cos):.4f}, 5th percentile {np.percentile(cos, 5):.4f}, min {cos.min():.4f}")

    def encode(xs: list[str]) -> np.ndarray:
        return fp32.encode(xs, batch_size=64, normalize_embeddings=True)

    def dropped(v: np.ndarray) -> set[str]:
        a, b, cos = similar_pairs(v, 0.95, "exact", progress=False)
        return {records[j].id for j in survivor_walk(np.arange(len(v)), a, b, cos)}

    whole = encode(texts)
    parts = encode([r.instruction for r in records]), encode([r.response for r in records])
    ref = dropped(whole)
    by_id = dict(zip([r.id for r in records], whole))
    print(f"derived dedup vectors ({len(records)} records; the record texts' own vectors drop {len(ref)}):")
    for w in (0.2, 0.3, 0.4):
        v = w * parts[0] + (1 - w) * parts[1]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        got = dropped(v)
        cos = np.einsum("ij,ij->i", v, whole)
        print(f"  {w:.1f} x instruction + {1 - w:.1f} x answer: cosine to the record's vector median {np.median(cos):.4f}; "
              f"dropped {len(got)} ({agreement(got, ref)}), left {left_pairs(records, got, by_id, 0.95)}")


def onnx_encoders(st) -> dict:
    """MiniLM exported to ONNX (torch's exporter, opset 17) and run by onnxruntime on 2 threads
    with every graph optimization, fp32 and with ``quantize_dynamic``'s int8 weights (per channel,
    and per tensor); mean pooling and L2 norm as sentence-transformers does. Empty without
    onnxruntime (``pip install onnxruntime onnx``)."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("onnxruntime not installed: its arms skipped")
        return {}
    import torch

    tok, bert = st.tokenizer, st[0].auto_model.eval()
    folder = Path(tempfile.mkdtemp(prefix="sem-onnx-"))
    fp32 = folder / "minilm.onnx"
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    enc = tok(["a short text", "a somewhat longer text than that"], padding=True, return_tensors="pt")
    torch.onnx.export(Hidden(bert), tuple(enc[k] for k in names), str(fp32), input_names=names, output_names=["hidden"],
                      dynamic_axes={k: {0: "batch", 1: "tokens"} for k in [*names, "hidden"]}, opset_version=17, dynamo=False)
    paths = {"onnxruntime fp32": fp32}
    for name, per_channel in (("onnxruntime int8, per-channel", True), ("onnxruntime int8, per-tensor", False)):
        paths[name] = folder / f"{per_channel}.onnx"
        quantize_dynamic(str(fp32), str(paths[name]), per_channel=per_channel, weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def encoder(path: Path):
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def encode(texts: list[str]) -> np.ndarray:
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as sentence-transformers batches
            out = np.zeros((len(texts), bert.config.hidden_size), dtype=np.float32)
            for a in range(0, len(order), 64):
                at = order[a:a + 64]
                e = tok([texts[i] for i in at], padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="np")
                h = session.run(None, {k: e[k].astype(np.int64) for k in names})[0]
                m = e["attention_mask"][..., None].astype(np.float32)
                v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
                out[at] = v / np.linalg.norm(v, axis=1, keepdims=True)
            return out
        return encode

    return {name: encoder(path) for name, path in paths.items()}


def timing(records: list[Record], models: Path, args: argparse.Namespace) -> None:
    """Interleaved rounds (a change in the machine's load hits both engines); medians and the
    median of the per-round ratios. The encoder is loaded before the first round, so no arm pays
    for it (the stores of a process share one loaded model)."""
    ct, screen = float(args.candidates.split(",")[0]), float(args.screens.split(",")[0])
    arms = {"encoder, dedup only": dict(engine="encoder", min_relevance=None),
            f"cascade {ct}, dedup only": dict(engine="cascade", candidate_threshold=ct, min_relevance=None),
            "encoder, whole stage": dict(engine="encoder"),
            f"cascade {ct}, relevance_screen {screen}": dict(engine="cascade", candidate_threshold=ct, relevance_screen=screen)}
    warm()
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.rounds):
        for name, cfg in arms.items():
            t, _, _, c = run(records, models, **cfg)
            times[name].append(t)
            shutil.rmtree(c, ignore_errors=True)
    for name, ts in times.items():
        print(f"{name}: median {statistics.median(ts):.1f} s = {len(records) / statistics.median(ts):.1f} records/s "
              f"(runs: {', '.join(f'{t:.1f}' for t in ts)})")
    names = list(arms)
    for base, fast in ((names[0], names[1]), (names[2], names[3])):
        ratios = [a / b for a, b in zip(times[base], times[fast])]
        print(f"{fast} vs {base}: median {statistics.median(ratios):.2f}x (per round: {', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", type=float, default=0.12, help="share of variant rows in the pool")
    ap.add_argument("--input", help="a record file to use instead of the generated pool (e.g. runs/real-pool/pool.jsonl)")
    ap.add_argument("--candidates", default="0.6,0.7,0.8")
    ap.add_argument("--screens", default="0.2,0.3,0.5,1", help="relevance_screen values for the whole-stage cascade runs")
    ap.add_argument("--whole", action=argparse.BooleanOptionalAction, default=True, help="also time the whole stage (off-topic check on)")
    ap.add_argument("--rounds", type=int, default=0, help="only time: this many interleaved rounds of encoder and cascade (--candidates' first, --screens' first)")
    ap.add_argument("--encoder-options", action="store_true", help="measure int8 MiniLM and derived dedup vectors instead")
    ap.add_argument("--arms", help=f"comma-separated whole-stage configurations to measure instead: {', '.join(ARMS)}")
    args = ap.parse_args()
    os.environ["DATAGEN_PROGRESS"] = "0"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if args.input:
        from datagen.core.io import read_records

        records = list(read_records(args.input))
    else:
        records = load(args.n, args.seed, args.variants)
    records.sort(key=lambda r: r.id)
    print(f"data: {len(records)} records ({args.input or data_path(args.n, args.variants)})")

    from datagen.score.static import static_model

    models = ROOT / "runs" / "bench" / "semantic-models"  # the static model, distilled by the first run, kept
    store = EmbeddingStore(models)
    t0 = time.perf_counter()
    static = static_model(models, store.model_path(), store.model_id, progress=False)
    print(f"static model distilled or loaded in {time.perf_counter() - t0:.1f} s ({static.vectors.shape[0]} tokens x {static.dims})")
    shutil.rmtree(models / "embeddings", ignore_errors=True)
    models = models / "models"

    if args.encoder_options:
        return encoder_options(records)
    if args.arms and any(a not in ARMS for a in args.arms.split(",")):
        ap.error(f"--arms: pick from {', '.join(ARMS)}")
    if args.arms:
        return compare_arms(records, models, args.arms.split(","), args.rounds)
    if args.rounds:
        return timing(records, models, args)
    t_enc, ref, st, ref_cache = run(records, models, engine="encoder", min_relevance=None)
    print(f"\nencoder (reference): {t_enc:.1f} s, {len(records) / t_enc:.1f} records/s, {st['embedded']} texts encoded, dropped {len(ref)}")
    ref_store = EmbeddingStore(ref_cache)
    vecs = dict(zip([r.id for r in records], ref_store.lookup([embed_text(r) for r in records])))
    threshold = 0.95
    print(f"  pairs >= {threshold} left among survivors: exact search {left_pairs(records, ref, vecs, threshold)}")
    for nprobe in (1, 8):
        _, got, _, c = run(records, models, ref_cache / "embeddings", engine="encoder", min_relevance=None, search="ivf",
                           nprobe=nprobe, cluster_size=max(40, len(records) // 64))
        print(f"  ivf nprobe {nprobe}: dropped {len(got)} ({agreement(got, ref)}), left {left_pairs(records, got, vecs, threshold)}")
        shutil.rmtree(c, ignore_errors=True)

    print("\ncascade (static candidates, encoder decides):")
    print("| candidate threshold | seconds | records/s | speed-up | texts encoded | dropped | agreement | pairs left |")
    print("|---|---|---|---|---|---|---|---|")
    for ct in [float(x) for x in args.candidates.split(",")]:
        t, got, st, c = run(records, models, engine="cascade", candidate_threshold=ct, min_relevance=None)
        print(f"| {ct} | {t:.1f} | {len(records) / t:.1f} | {t_enc / t:.1f}x | {st['embedded']} ({st['embedded'] / len(records):.0%}) | "
              f"{len(got)} | {agreement(got, ref)} | {left_pairs(records, got, vecs, threshold)} |")
        shutil.rmtree(c, ignore_errors=True)

    # the floor: static vectors alone, at the threshold that drops as many records as the reference
    sv = static.encode([embed_text(r) for r in records])
    sv -= sv.mean(axis=0)
    sv /= np.linalg.norm(sv, axis=1, keepdims=True)
    a, b, cos = similar_pairs(sv, 0.5, progress=False)
    place = np.arange(len(records))
    best = None
    for ts in np.arange(0.5, 1.0, 0.01):
        keep = cos >= ts
        got = {records[j].id for j in survivor_walk(place, a[keep], b[keep], cos[keep])}
        if best is None or abs(len(got) - len(ref)) < abs(len(best[1]) - len(ref)):
            best = (ts, got)
    print(f"\nstatic only (centred cosine >= {best[0]:.2f}): dropped {len(best[1])} ({agreement(best[1], ref)}), "
          f"left {left_pairs(records, best[1], vecs, threshold)}")

    if args.whole:
        print("\nthe whole stage (off-topic check on; cascade at candidate threshold 0.6 and each relevance_screen):")
        t_all, ref_all, st, c = run(records, models, engine="encoder")
        shutil.rmtree(c, ignore_errors=True)
        print(f"  encoder: {t_all:.1f} s, {len(records) / t_all:.1f} records/s, {st['embedded']} texts encoded, "
              f"dropped {len(ref_all)} (off-topic {st['off_topic']}, duplicates {st['duplicates']})")
        print("| relevance_screen | seconds | records/s | speed-up | texts encoded | dropped (off-topic) | agreement |")
        print("|---|---|---|---|---|---|---|")
        for screen in [float(x) for x in args.screens.split(",")]:
            t, got, st, c = run(records, models, engine="cascade", candidate_threshold=0.6, relevance_screen=screen)
            print(f"| {screen} | {t:.1f} | {len(records) / t:.1f} | {t_all / t:.1f}x | {st['embedded']} | {len(got)} ({st['off_topic']}) | "
                  f"{agreement(got, ref_all)} |")
            shutil.rmtree(c, ignore_errors=True)
    shutil.rmtree(ref_cache, ignore_errors=True)


if __name__ == "__main__":
    main()
