"""Training data: render a Record with the model's chat template and mask the loss.

The pipeline, top to bottom::

    Record --render()--> Sample(input_ids, labels) --pack()--> bins --PackedCollator--> tensors
                                                   \\--------------PaddedCollator--> tensors
                         (train.data)                        (train.packing)

**Where is the loss?** :func:`render` trains every assistant turn: the message content and the
template's end-of-turn token (``<|im_end|>`` for ChatML), so the model learns to stop. Everything
else (system prompt, user turns, role headers, the newline the template writes after
``<|im_end|>``) gets the label :data:`IGNORE_INDEX`. ``mask_history=True`` trains only the last
assistant turn; ``train_on_prompt=True`` trains every token.

**How the assistant turns are found** (:func:`assistant_spans`): by rendering and diffing, never by
parsing one template's syntax and never with ``{% generation %}`` markers (few templates have them;
SmolLM2's has none). For assistant message *i* we render, as text:

* ``before`` = messages[:i] with ``add_generation_prompt=True``: everything the model sees before
  it starts writing turn *i*;
* ``after`` = messages[:i+1] without a generation prompt: the same, plus turn *i* and its end.

If the template is *prefix-stable* (rendering a prefix of the conversation gives a prefix of the
full render), turn *i* occupies the characters ``[len(before), len(after))`` of the full render.
Trailing whitespace of that range (ChatML's ``"\\n"`` after ``<|im_end|>``) is not trained, because
it follows the stop token and is never generated. Any injected text (SmolLM2 adds a default system
prompt when there is none) is part of ``before`` and so is never trained. A template that is not
prefix-stable (one that rewrites earlier turns depending on what follows, e.g. drops reasoning from
history, or numbers the turns) is detected and refused with :class:`ChatTemplateError`, because the
diff would give a wrong mask.

The full render is then tokenized once with ``return_offsets_mapping`` (fast tokenizers), and a
token is trained when its characters overlap a trained span. So the token ids are exactly those of
the text the template produced, tokenized as a whole, which is what the model sees at inference.
Slow tokenizers (no offsets) fall back to tokenizing the text piece by piece at the span
boundaries.

Packing and collating are :mod:`train.packing`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datagen.core.errors import UserError
from datagen.core.record import Message, Record

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
"""Label of a token that carries no loss (PyTorch's cross-entropy default ``ignore_index``)."""

OVERLONG_POLICIES = ("drop", "truncate", "error")


# -- errors ------------------------------------------------------------------------------------
class DataError(UserError):
    """A record that cannot become a training sample. The message names the record: its id and,
    when known, the file and line it came from (``record.meta["origin"]``)."""

    def __init__(self, message: str, *, record: Record | None = None, reason: str = "invalid_sample") -> None:
        self.record_id = record.id if record is not None else None
        self.origin = record.meta.get("origin") if record is not None else None
        self.reason = reason
        self.message = message
        super().__init__(f"{_where(self.record_id, self.origin)}{message}")


class ChatTemplateError(DataError):
    """The chat template cannot be used to locate assistant turns safely (e.g. it is not
    prefix-stable, or it fails to render a conversation)."""

    def __init__(self, detail: str, *, record: Record | None = None) -> None:
        self.detail = detail
        super().__init__(f"chat template problem: {detail}", record=record, reason="chat_template")


def _where(record_id: str | None, origin: str | None) -> str:
    if record_id is None:
        return ""
    return f"record {record_id} ({origin}): " if origin else f"record {record_id}: "


# -- samples -----------------------------------------------------------------------------------
@dataclass
class Sample:
    """One tokenized conversation. ``labels[t]`` is the token the loss wants at position ``t``
    (``input_ids[t]``) or :data:`IGNORE_INDEX`; the model shifts labels itself."""

    input_ids: list[int]
    labels: list[int]
    record_id: str
    origin: str | None = None

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"sample {self.record_id}: {len(self.input_ids)} input ids but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trainable(self) -> int:
        """Tokens that carry loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


# -- rendering: find the assistant turns by diffing renders ------------------------------------
def _chat_text(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], add_generation_prompt: bool) -> str:
    conversation = [{"role": m.role, "content": m.content} for m in messages]
    try:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja's TemplateError, or a template's raise_exception(...)
        raise ChatTemplateError(f"rendering {len(conversation)} message(s) failed: {e}") from e
    if not isinstance(text, str):
        raise ChatTemplateError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not text")
    return text


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at character {i}: {a[max(0, i - 30):i + 30]!r} vs {b[max(0, i - 30):i + 30]!r}"


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` and locate each assistant turn in the text.

    Returns ``(text, spans)``: the full render, and one ``(start, end)`` character span per
    assistant message, in order, covering what the model must generate for that turn: its content
    (as the template writes it, e.g. trimmed) and the end-of-turn token(s), without the whitespace
    that follows them. See the module docstring for the method.

    Raises:
        ChatTemplateError: the template fails to render, is not prefix-stable, or drops or alters
            an assistant message so that it cannot be found.
    """
    full = _chat_text(tokenizer, messages, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.role != "assistant":
            continue
        before = _chat_text(tokenizer, messages[:i], add_generation_prompt=True)
        after = full if i == len(messages) - 1 else _chat_text(tokenizer, messages[: i + 1], add_generation_prompt=False)
        for prefix, what in ((before, f"the first {i} message(s) with the generation prompt"), (after, f"the first {i + 1} message(s)")):
            if not full.startswith(prefix):
                raise ChatTemplateError(
                    f"rendering {what} does not give a prefix of the whole conversation's render "
                    f"({_first_difference(prefix, full)}). The template rewrites earlier turns depending on "
                    "what follows, so assistant turns cannot be located safely; use a prefix-stable "
                    "template (set tokenizer.chat_template)"
                )
        start, end = len(before), len(after.rstrip())
        turn = full[start:end]
        if end <= start or (message.content.strip() and message.content.strip() not in turn):
            raise ChatTemplateError(
                f"assistant message {i} is not found between the generation prompt and the end of its turn "
                f"(found {turn!r}); the template's generation prompt does not match how it renders an "
                "assistant turn, or it alters the message"
            )
        spans.append((start, end))
    return full, spans


def _tokenize(tokenizer: PreTrainedTokenizerBase, text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and each token's character ``(start, end)``.

    Special tokens come from the template's text, so none are added here. Fast tokenizers
    tokenize the whole text and report offsets. Slow ones (no offsets) tokenize the pieces between
    span boundaries separately, which keeps every token inside or outside a span."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    cuts = sorted({0, len(text), *(c for span in spans for c in span)})
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(cuts):
        piece = tokenizer(text[a:b], add_special_tokens=False)["input_ids"]
        ids += piece
        offsets += [(a, b)] * len(piece)  # every token of the piece lies inside [a, b)
    return ids, offsets


def loss_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """True for each token whose characters overlap one of ``spans`` (the trained text).

    A token that straddles a span boundary is trained: it holds characters the model must
    produce. Zero-width tokens (offsets ``(k, k)``) are trained when ``k`` lies inside a span."""
    mask = []
    for s, e in offsets:
        if e == s:
            mask.append(any(a <= s < b for a, b in spans))
        else:
            mask.append(any(s < b and a < e for a, b in spans))
    return mask


def render(
    record: Record,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mask_history: bool = False,
    train_on_prompt: bool = False,
    max_length: int | None = None,
) -> Sample:
    """Tokenize ``record`` with the model's chat template and build its labels.

    Args:
        mask_history: train only the last assistant turn (earlier answers are context).
        train_on_prompt: train every token (padding, added later, never is).
        max_length: keep the first ``max_length`` tokens (truncation loses the end of the
            conversation; :func:`load_samples` drops overlong records instead, by default).

    The first token never carries loss: nothing precedes it, and in a packed row its label would
    be predicted from the previous sample's last token.

    Raises:
        DataError: an assistant turn is blank, or no token is left to train (e.g. truncation
            removed every answer). :class:`ChatTemplateError` for template problems.
    """
    for i, m in enumerate(record.messages):
        if m.role == "assistant" and not m.content.strip():
            raise DataError(f"assistant message {i} is empty: there is nothing to learn from it", record=record, reason="empty_answer")
    try:
        text, spans = assistant_spans(tokenizer, record.messages)
    except ChatTemplateError as e:  # name the record that exposed the problem
        raise ChatTemplateError(e.detail, record=record) from e
    if mask_history:
        spans = spans[-1:]
    if train_on_prompt:
        spans = [(0, len(text))]
    input_ids, offsets = _tokenize(tokenizer, text, spans)
    trained = loss_mask(offsets, spans)
    labels = [tok if t else IGNORE_INDEX for tok, t in zip(input_ids, trained)]
    if labels:
        labels[0] = IGNORE_INDEX
    sample = Sample(input_ids, labels, record.id, record.meta.get("origin"))
    if max_length is not None and len(sample) > max_length:
        sample = Sample(input_ids[:max_length], labels[:max_length], record.id, sample.origin)
    if sample.n_trainable == 0:
        why = f" after truncation to max_length={max_length}" if max_length is not None and len(input_ids) > max_length else ""
        raise DataError(f"no token to train on{why}: the loss mask covers no assistant token", record=record, reason="no_trainable_tokens")
    return sample


def end_of_turn_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """The special token the chat template writes at the end of an assistant turn (``<|im_end|>``
    for ChatML), detected by rendering a probe conversation. Set it as the saved tokenizer's eos
    and in the generation config, so that generation stops where training taught it to.

    Raises:
        ChatTemplateError: the template ends an assistant turn with no special token, so a model
            trained on it would not learn to stop.
    """
    from datagen.llm.templates import PROBE, first_special_token

    messages = [Message(role="user", content="Probe question?"), Message(role="assistant", content=PROBE)]
    text, [(start, end)] = assistant_spans(tokenizer, messages)
    turn = text[start:end]
    tail = turn[turn.index(PROBE) + len(PROBE):]
    token = first_special_token(tokenizer, tail)
    if token is not None:
        return token
    raise ChatTemplateError(f"an assistant turn ends with {tail!r}, which holds no special token; a model trained on this template would not learn where to stop")


# -- loading -----------------------------------------------------------------------------------
def read_training_records(
    path: str, *, fmt: str | None = None, limit: int | None = None, on_error: str = "raise",
    split: str | None = None, columns: str | None = None, roles: str | None = None,
) -> tuple[list[Record], list[dict[str, Any]]]:
    """Read and validate the records of ``path`` (any input :class:`datagen.core.source.InputSpec`
    reads; ``split``, ``columns``, ``roles``: its ``--split``, ``--map``, ``--roles``), before any
    model is loaded: ``(records, problems)``, a problem per bad row skipped with
    ``on_error="skip"``. Raises InputError on a bad row with ``on_error="raise"``."""
    from datagen.core.source import InputSpec

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    problems: list[dict[str, Any]] = []

    def rejected(rej: Any) -> None:
        problems.append({"record_id": None, "origin": rej.location, "reason": rej.reason, "message": rej.evidence.get("error", "")})

    records = InputSpec(str(path), fmt, limit, on_error, split, columns, roles).read(rejected)
    return records, problems


def load_samples(
    path: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    fmt: str | None = None,
    limit: int | None = None,
    mask_history: bool = False,
    train_on_prompt: bool = False,
    max_length: int | None = None,
    on_error: str = "raise",
    overlong: str = "drop",
    records: tuple[list[Record], list[dict[str, Any]]] | None = None,
) -> tuple[list[Sample], list[dict[str, Any]]]:
    """Read records (any format :func:`datagen.core.io.read_records` reads) and render them.

    Returns ``(samples, problems)``. Each problem is a dict with ``record_id``, ``origin``
    (file:line), ``reason`` and ``message``; the caller logs or writes them. Nothing is dropped
    without a problem entry. ``records``: what :func:`read_training_records` returned for
    ``path``, when the caller read them already (``train run`` reads before loading the model).

    A sample longer than ``max_length`` follows ``overlong``:

    * ``"drop"`` (default): left out, with a ``too_long`` problem. Truncating would cut the end of
      the answer and its end-of-turn token, teaching the model to stop mid-sentence, or would
      leave a prompt without its answer.
    * ``"truncate"``: cut to ``max_length`` tokens, with a ``truncated`` problem (a notice);
      a sample left with no trainable token is then an error like any other.
    * ``"error"``: raise :class:`DataError`.

    ``on_error="raise"`` (default) raises on the first bad row or record; ``"skip"`` records it as
    a problem and continues.

    Raises:
        DataError: a bad record (with ``on_error="raise"``), or no usable sample at all.
        InputError: a bad input row (with ``on_error="raise"``).
    """
    if overlong not in OVERLONG_POLICIES:
        raise ValueError(f"overlong must be one of {OVERLONG_POLICIES}, got {overlong!r}")
    read, read_problems = records if records is not None else read_training_records(path, fmt=fmt, limit=limit, on_error=on_error)
    samples: list[Sample] = []
    problems: list[dict[str, Any]] = list(read_problems)
    for record in read:
        try:
            sample = render(record, tokenizer, mask_history=mask_history, train_on_prompt=train_on_prompt)
            if max_length is not None and len(sample) > max_length:
                where = {"record_id": record.id, "origin": record.meta.get("origin"), "length": len(sample), "max_length": max_length}
                if overlong == "error":
                    raise DataError(f"{len(sample)} tokens, more than max_length={max_length}", record=record, reason="too_long")
                if overlong == "drop":
                    problems.append({**where, "reason": "too_long", "message": f"dropped: {len(sample)} tokens > max_length={max_length}"})
                    continue
                sample = render(record, tokenizer, mask_history=mask_history, train_on_prompt=train_on_prompt, max_length=max_length)
                problems.append({**where, "reason": "truncated", "message": f"truncated from {where['length']} to {max_length} tokens"})
        except DataError as e:
            if on_error == "raise":
                raise
            problems.append({"record_id": e.record_id, "origin": e.origin, "reason": e.reason, "message": e.message})
            continue
        samples.append(sample)
    if not samples:
        first = f"; first problem: {problems[0]['origin']}: {problems[0]['message']}" if problems else ""
        raise DataError(f"{path}: no usable training sample ({len(problems)} problem(s){first})", reason="no_samples")
    return samples, problems
