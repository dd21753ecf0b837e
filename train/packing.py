"""Rows for the Trainer: samples packed into bins, and the collators that make tensors.

**Packing** (:func:`pack`) puts samples into rows of at most ``max_length`` tokens by best-fit
decreasing. :class:`PackedCollator` concatenates each bin into one row with ``position_ids``
restarting at 0 per sample and *no* ``attention_mask``: transformers then detects the packed
sequences from the position ids and builds a block-diagonal causal mask, so samples never attend
to each other. This only happens without a KV cache: the model must run with ``use_cache=False``
(training does; a model in generation mode does not, and then packed samples contaminate each
other). ``tests/train/test_train_data.py`` checks both: the packed loss equals the unpacked loss, and
differs without restarting position ids or with the cache on.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .data import IGNORE_INDEX, Sample
from train.data import DataError

if TYPE_CHECKING:
    import torch


# -- packing -----------------------------------------------------------------------------------
def pack(samples: Sequence[Sample], max_length: int) -> list[list[Sample]]:
    """Best-fit decreasing: longest sample first, each into the fullest bin it still fits in.

    No bin holds more than ``max_length`` tokens and every sample lands in exactly one bin.
    Deterministic: ties in length keep input order, ties in free space go to the older bin.
    Bins are kept in a list sorted by free space, so each placement is a binary search.

    Raises:
        DataError: a sample is longer than ``max_length`` (filter or truncate first).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    order = sorted(range(len(samples)), key=lambda k: -len(samples[k]))  # stable: ties keep input order
    bins: list[list[Sample]] = []
    open_bins: list[tuple[int, int]] = []  # (free tokens, bin index), sorted
    for k in order:
        sample = samples[k]
        n = len(sample)
        if n > max_length:
            raise DataError(f"sample of {n} tokens does not fit max_length={max_length}; drop or truncate it first", reason="too_long")
        j = bisect.bisect_left(open_bins, (n, -1))
        if j < len(open_bins):
            free, b = open_bins.pop(j)
        else:
            free, b = max_length, len(bins)
            bins.append([])
        bins[b].append(sample)
        if free - n > 0:
            bisect.insort(open_bins, (free - n, b))
    return bins


@dataclass(frozen=True)
class PackingStats:
    """How well rows use the tokens a batch computes. ``capacity`` counts the token slots
    computed (rows times padded row length); ``padding_waste`` is the fraction of them that is
    padding."""

    mode: str  # "packed" (a row is a bin) or "padded" (a row is one sample)
    n_samples: int
    n_bins: int  # rows: bins when packed, samples when padded
    n_batches: int
    tokens: int
    trainable_tokens: int
    capacity: int
    padding_waste: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.mode}: {self.n_samples} samples in {self.n_bins} rows, {self.n_batches} batches; "
            f"{self.tokens} tokens ({self.trainable_tokens} trained) in {self.capacity} slots, "
            f"padding waste {self.padding_waste:.1%}"
        )


Row = Sample | Sequence[Sample]


def packing_stats(rows: Sequence[Row], *, batch_size: int = 1, row_length: int | None = None) -> PackingStats:
    """Statistics of a list of rows: bins (from :func:`pack`) or single samples (padded mode).

    Rows are grouped into batches of ``batch_size`` in the given order (shuffle first to estimate
    a shuffled run, see :func:`expected_padding`) and each batch is padded to its longest row,
    as the collators do. ``row_length`` instead pads every row to that fixed length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    groups = [[r] if isinstance(r, Sample) else list(r) for r in rows]
    mode = "padded" if rows and isinstance(rows[0], Sample) else "packed"
    lengths = [sum(len(s) for s in g) for g in groups]
    tokens = sum(lengths)
    if row_length is not None:
        capacity = row_length * len(lengths)
    else:
        capacity = sum(len(lengths[i:i + batch_size]) * max(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))
    return PackingStats(
        mode=mode,
        n_samples=sum(len(g) for g in groups),
        n_bins=len(groups),
        n_batches=-(-len(groups) // batch_size),
        tokens=tokens,
        trainable_tokens=sum(s.n_trainable for g in groups for s in g),
        capacity=capacity,
        padding_waste=1 - tokens / capacity if capacity else 0.0,
    )


def expected_padding(rows: Sequence[Row], *, batch_size: int, seed: int = 0) -> PackingStats:
    """:func:`packing_stats` over the rows in a shuffled order, as a shuffling sampler feeds them."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    return packing_stats(order, batch_size=batch_size)


# -- datasets and collators --------------------------------------------------------------------
class SampleDataset(Sequence[Sample]):
    """Map-style dataset of single samples, for :class:`PaddedCollator`. A ``torch`` DataLoader
    or a HF ``Trainer`` (with ``remove_unused_columns=False``) consumes it directly."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):  # type: ignore[override]
        return self.samples[i]


class PackedDataset(Sequence[list[Sample]]):
    """Map-style dataset of bins (lists of samples), for :class:`PackedCollator`."""

    def __init__(self, bins: Iterable[list[Sample]]) -> None:
        self.bins = list(bins)

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], max_length: int) -> PackedDataset:
        return cls(pack(samples, max_length))

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i):  # type: ignore[override]
        return self.bins[i]


def flatten(bin_: Sequence[Sample]) -> dict[str, list[int]]:
    """One packed row: the bin's samples concatenated, ``position_ids`` restarting at 0 for each,
    and each sample's first label ignored (it would be predicted from the previous sample)."""
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for s in bin_:
        row["input_ids"] += s.input_ids
        row["labels"] += [IGNORE_INDEX, *s.labels[1:]] if s.labels else []
        row["position_ids"] += range(len(s))
    return row


def _padded_length(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


@dataclass
class PackedCollator:
    """Bins -> ``input_ids``, ``labels`` and ``position_ids``, each ``[batch, length]``.

    One bin per row (a bin is a list of :class:`Sample` or a dict from :func:`flatten`). Rows are
    right-padded to the longest in the batch with ``pad_token_id`` and :data:`IGNORE_INDEX`
    labels; the padding's position ids count up from 0, so it forms a "sample" of its own.

    There is deliberately **no** ``attention_mask``: given ``position_ids`` and no mask,
    transformers builds a block-diagonal causal mask, one block per sample. The model must run
    with ``use_cache=False`` (otherwise the mask is plain causal and samples see each other).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Sequence[Sample] | dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        import torch

        rows = [f if isinstance(f, dict) else flatten(f) for f in features]
        width = _padded_length(max(len(r["input_ids"]) for r in rows), self.pad_to_multiple_of)
        out = {k: torch.empty(len(rows), width, dtype=torch.long) for k in ("input_ids", "labels", "position_ids")}
        for i, r in enumerate(rows):
            pad = width - len(r["input_ids"])
            out["input_ids"][i] = torch.tensor(list(r["input_ids"]) + [self.pad_token_id] * pad)
            out["labels"][i] = torch.tensor(list(r["labels"]) + [IGNORE_INDEX] * pad)
            out["position_ids"][i] = torch.tensor(list(r["position_ids"]) + list(range(pad)))
        return out


@dataclass
class PaddedCollator:
    """Samples -> ``input_ids``, ``labels``, ``attention_mask``: one sample per row, right-padded
    to the longest in the batch (padding: ``pad_token_id``, label :data:`IGNORE_INDEX`, mask 0)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Sample | dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        import torch

        rows = [f if isinstance(f, dict) else {"input_ids": f.input_ids, "labels": f.labels} for f in features]
        width = _padded_length(max(len(r["input_ids"]) for r in rows), self.pad_to_multiple_of)
        out = {k: torch.zeros(len(rows), width, dtype=torch.long) for k in ("input_ids", "labels", "attention_mask")}
        for i, r in enumerate(rows):
            n, pad = len(r["input_ids"]), width - len(r["input_ids"])
            out["input_ids"][i] = torch.tensor(list(r["input_ids"]) + [self.pad_token_id] * pad)
            out["labels"][i] = torch.tensor(list(r["labels"]) + [IGNORE_INDEX] * pad)
            out["attention_mask"][i, :n] = 1
        return out
