"""Static embeddings distilled from a sentence-transformers encoder: one vector per token, no network.

A transformer encoder reads a text once per request; a static model looks each token up in a table
and averages, which is three orders of magnitude faster on a CPU and far less exact. The semantic
stage's ``cascade`` engine (:mod:`datagen.curate.dedup.semantic`) uses one only to *propose*
candidate pairs at high recall; the encoder decides them. The idea is that of model2vec: run the
encoder over every token of its own vocabulary, reduce the vectors with PCA, and weight each token
down by how common it is (smooth inverse frequency, token rank standing in for frequency, as in a
WordPiece vocabulary built by merging frequent pieces).

:func:`static_model` distills on first use (about 10-20 s on two CPU cores for all-MiniLM-L6-v2's
30,522 tokens) into ``<cache_dir>/models/static-<encoder id>/`` and reuses it afterwards:

* ``vectors.npy``: float32 ``(vocabulary, dims)``, the SIF weight folded in, zero rows for special
  and unused tokens;
* ``tokenizer.json``: the encoder's own tokenizer;
* ``meta.json``: the encoder id, the dimensions, the format version.

Written to a temporary folder and renamed when complete, so an interrupted distillation leaves
nothing a later run would take for a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
PCA_DIMS = 256
SIF_A = 1e-4  # the smoothing constant of the SIF weight a / (a + p(token))
_BATCH = 512  # tokens per forward pass while distilling
MAX_TOKENS = 512  # tokens of a text that count (the rest is ignored, as an encoder would truncate)
_CHUNK = 512  # texts encoded at once: at most 512 x 512 token vectors gathered (256 MiB at 256 dims)


class StaticEncoder:
    """Encodes texts with a distilled table: the mean of their tokens' vectors, L2-normalised
    (zero for a text with no known token)."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.folder = folder
        self.vectors = np.load(folder / "vectors.npy")
        self.meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 ``(len(texts), dims)``, rows L2-normalised; in chunks of :data:`_CHUNK` texts,
        so that the gathered token vectors stay small whatever the number of texts."""
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            out[start : start + _CHUNK] = self._encode(texts[start : start + _CHUNK])
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        nonempty = lengths > 0
        if ids.size:
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
            out[nonempty] = np.add.reduceat(self.vectors[ids], starts, axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def static_model(cache_dir: str | Path, encoder_path: str | Path, encoder_id: str, progress: bool = True) -> StaticEncoder:
    """The static model distilled from ``encoder_path`` (a sentence-transformers folder whose
    cache id is ``encoder_id``), distilled now if the cache lacks it."""
    from datagen.score.embeddings import _folder

    folder = Path(cache_dir) / "models" / f"static-{_folder(encoder_id)}"
    if not _valid(folder):
        distill(encoder_path, folder, encoder_id, progress=progress)
    return StaticEncoder(folder)


def _valid(folder: Path) -> bool:
    """A complete static model of this format (its meta.json is written last)."""
    meta = folder / "meta.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def distill(encoder_path: str | Path, out: str | Path, encoder_id: str, dims: int = PCA_DIMS, progress: bool = True) -> Path:
    """Distil ``encoder_path`` into a static model at ``out`` (see the module docstring)."""
    import torch
    from sklearn.decomposition import PCA
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from datagen.core.progress import bar

    out = Path(out)
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    model = AutoModel.from_pretrained(str(encoder_path)).eval()
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    special = set(tokenizer.all_special_ids)
    ids = [i for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i not in special and not (t.startswith("[unused") and t.endswith("]"))]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows: list[np.ndarray] = []
    with torch.inference_mode(), bar(len(ids), "distil static embeddings", "token", show=progress) as pbar:
        for start in range(0, len(ids), _BATCH):
            chunk = torch.tensor(ids[start : start + _BATCH], dtype=torch.long)[:, None]
            frame = [chunk]
            if cls is not None:
                frame.insert(0, torch.full_like(chunk, cls))
            if sep is not None:
                frame.append(torch.full_like(chunk, sep))
            input_ids = torch.cat(frame, dim=1)
            hidden = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
            rows.append(hidden.mean(dim=1).float().numpy())  # mean pooling, as the encoder's own
            pbar.update(len(chunk))
    token_vectors = np.concatenate(rows)
    dims = min(dims, token_vectors.shape[1])
    reduced = PCA(n_components=dims, svd_solver="full").fit_transform(token_vectors).astype(np.float32)
    rank = np.asarray(ids, dtype=np.float64) - min(ids) + 1  # vocabulary order stands in for frequency
    p = 1.0 / rank
    p /= p.sum()
    reduced *= (SIF_A / (SIF_A + p)).astype(np.float32)[:, None]
    table = np.zeros((size, dims), dtype=np.float32)
    table[np.asarray(ids)] = reduced
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        np.save(tmp / "vectors.npy", table)
        tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        meta: dict[str, Any] = {"format": FORMAT, "encoder": encoder_id, "dims": dims, "tokens": len(ids), "sif_a": SIF_A}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if _valid(out):  # another process distilled it meanwhile: keep theirs, which may be in use
            shutil.rmtree(tmp)
            return out
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
