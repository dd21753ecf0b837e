"""The pieces of batched generation on a local model (:mod:`datagen.llm.local`): a stopping
criterion that ends each row at its own end token, the generation config for a request's
sampling parameters, token log-probabilities, left padding, length-sorted batches, per-row
seeded sampling, stop strings."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from datagen.llm.base import GenParams
from datagen.core.errors import LLMError

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase


class FinishTracker:
    """A ``generate`` stopping criterion (duck-typed ``StoppingCriteria``, so this module imports
    no transformers) that ends a row at an end-of-turn token or once its text contains a stop
    string, and records how many tokens the row had produced then (``lengths[row]``, None while
    running)."""

    def __init__(
        self,
        prompt_width: int,
        batch: int,
        eos_ids: frozenset[int],
        stop: Sequence[str],
        decode: Callable[[Sequence[int]], str],
    ) -> None:
        self.prompt_width = prompt_width
        self.eos_ids = eos_ids
        self.stop = tuple(s for s in stop if s)
        self.decode = decode
        # A stop string of n characters spans at most 4n byte-level tokens: decode only that tail.
        self.window = 4 * max((len(s) for s in self.stop), default=0) + 1
        self.lengths: list[int | None] = [None] * batch

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        import torch

        width = input_ids.shape[1]
        tails = input_ids[:, max(self.prompt_width, width - self.window) :].tolist()
        for row, length in enumerate(self.lengths):
            if length is None and self._ends(tails[row]):
                self.lengths[row] = width - self.prompt_width
        return torch.tensor([n is not None for n in self.lengths], device=input_ids.device)

    def _ends(self, tail: list[int]) -> bool:
        if tail and tail[-1] in self.eos_ids:
            return True
        return bool(self.stop) and any(s in self.decode(tail) for s in self.stop)


def generation_config(params: GenParams) -> GenerationConfig:
    from transformers import GenerationConfig

    sampling: dict[str, Any] = {"do_sample": False}
    if params.temperature > 0:
        # top_k=0: GenParams has no top-k, and transformers would otherwise apply its default of 50.
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0}
    return GenerationConfig(
        max_new_tokens=params.max_tokens,
        return_dict_in_generate=True,
        output_logits=params.logprobs,
        use_cache=True,
        **sampling,
    )


def token_logprobs(
    step_logits: Sequence[torch.Tensor], generated: torch.Tensor, k: int
) -> list[list[tuple[float, list[float], list[int]]]]:
    """Per row and step: (logprob of the produced token, top-k logprobs, top-k ids), from the raw
    logits. Memory stays at one step's (batch, vocab) on top of what ``generate`` returned."""
    import torch

    batch = generated.shape[0]
    per_step = []
    for t, logits in enumerate(step_logits):
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = logprobs.gather(1, generated[:, t : t + 1]).squeeze(1).tolist()
        top_lps, top_ids = logprobs.topk(k, dim=-1) if k else (logprobs[:, :0], generated[:, :0])
        per_step.append((chosen, top_lps.tolist(), top_ids.tolist()))
    return [[(c[row], lps[row], ids[row]) for c, lps, ids in per_step] for row in range(batch)]


def pad_left(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with each row right-aligned."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            input_ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, width - len(r) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def length_sorted_batches(indices: Sequence[int] | range, lengths: list[int], size: int) -> list[list[int]]:
    """Split ``indices`` into batches of similar length, longest first (ties keep index order)."""
    order = sorted(indices, key=lambda i: (-lengths[i], i))
    return [order[i : i + size] for i in range(0, len(order), size)]


@contextmanager
def seeded(seeds: list[int | None], device: torch.device) -> Iterator[None]:
    """Seed torch from the batch's request seeds for the duration of the batch, restoring the
    caller's RNG state afterwards. All-None seeds mean unseeded sampling."""
    import torch

    if all(s is None for s in seeds):
        yield
        return
    digest = hashlib.sha256(json.dumps(seeds).encode()).digest()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        yield


def end_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Token ids that end a turn: the generation config's eos ids plus the tokenizer's eos."""
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    ids.discard(None)
    if not ids:
        raise LLMError(f"model {model.name_or_path} defines no eos token; cannot tell when a turn ends")
    return frozenset(ids)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
