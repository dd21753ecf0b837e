"""Chat templates for models that have none: a base model learns one in SFT.

A base model (Gemma 3 270M, any pretrained-only checkpoint) has no ``chat_template``, so it can
neither be fine-tuned on conversations nor asked a question in the local backend. The setting
``chat_template`` chooses the format (``train run --set chat_template=...``; the local backend
always uses ``auto``):

* ``auto``: the model's own template when it has one; otherwise the format whose turn tokens the
  vocabulary already holds: ``gemma`` for ``<start_of_turn>``/``<end_of_turn>``, ``chatml`` for
  ``<|im_start|>``/``<|im_end|>``; otherwise ``chatml``, with its two tokens added.
* ``chatml`` / ``gemma``: that format, replacing the model's own;
* ``FILE.jinja``: a Jinja template of your own (it must end an assistant turn with a special token).

What applying one does (:func:`apply_chat_template`), as TRL's ``clone_chat_template`` and
LLaMA-Factory's templates do:

1. sets ``tokenizer.chat_template``;
2. adds the format's turn tokens when the vocabulary lacks them, as *special* tokens, and resizes the
   model's embeddings to match (new rows start at the mean of the existing embeddings, so their
   logits start neutral). Tokens already in the vocabulary are marked special too, so decoding with
   ``skip_special_tokens`` drops them;
3. makes the end-of-turn token the eos: of the tokenizer (so the training loss trains it, see
   :func:`train.data.render`), of the model config, and first in the generation config's eos list
   (so generation stops on it; the model's old eos stays in the list);
4. names the format's turn tokens (``Applied.turn_tokens``), whose embedding rows training then
   trains even with adapters (:mod:`train.model`): a base model holds them in its vocabulary but
   never learnt their role. Measured on Gemma 3 270M base, LoRA on every linear layer alone, 30
   steps: after a complete answer ``P(<end_of_turn>)`` stayed at 0.0002 and every answer ran to the
   token limit; the output side of a tied embedding is what has to learn to stop.

The templates are prefix-stable (rendering the first *k* messages gives a prefix of the whole
render), which :func:`train.data.assistant_spans` needs to locate the assistant turns; a system
message is written as ChatML writes it, and folded into the first user turn for Gemma, whose format
has no system role.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.core.errors import LLMError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] | trim + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

GEMMA = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] | trim + '\n\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (system if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Format:
    name: str
    template: str
    start: str  # the token that opens a turn
    end: str  # the token that ends a turn: the eos of a model trained on this format


FORMATS = {
    "chatml": Format("chatml", CHATML, "<|im_start|>", "<|im_end|>"),
    "gemma": Format("gemma", GEMMA, "<start_of_turn>", "<end_of_turn>"),
}
SETTINGS = ("auto", *FORMATS)


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_chat_template` did, for the training manifest."""

    source: str  # "model" (its own), "chatml", "gemma", or the .jinja file's path
    end_of_turn: str | None  # the eos it set; None when the model's own template was kept as it is
    added_tokens: tuple[str, ...] = ()
    turn_tokens: tuple[str, ...] = ()  # the format's own tokens (added or not): their embedding rows must learn their role

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "end_of_turn": self.end_of_turn, "added_tokens": list(self.added_tokens),
                "turn_tokens": list(self.turn_tokens)}


def _in_vocab(tokenizer: PreTrainedTokenizerBase, token: str) -> bool:
    return token in tokenizer.get_vocab()


def choose(tokenizer: PreTrainedTokenizerBase, setting: str = "auto") -> Format | str | None:
    """The format ``setting`` names for this tokenizer: a :class:`Format`, the text of a template
    file, or None for "keep the model's own"."""
    setting = (setting or "auto").strip()
    if setting == "auto":
        if tokenizer.chat_template:
            return None
        for fmt in (FORMATS["gemma"], FORMATS["chatml"]):
            if _in_vocab(tokenizer, fmt.start) and _in_vocab(tokenizer, fmt.end):
                return fmt
        return FORMATS["chatml"]
    if setting in FORMATS:
        return FORMATS[setting]
    path = Path(setting).expanduser()
    if path.suffix not in (".jinja", ".j2"):
        raise LLMError(f"chat_template {setting!r}: expected auto, {', '.join(FORMATS)}, or the path of a .jinja file")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise LLMError(f"chat_template {setting}: cannot read it: {e.strerror or e}") from None


def apply_chat_template(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None, setting: str = "auto", *, allow_new_tokens: bool = True,
) -> Applied:
    """Give ``tokenizer`` (and ``model``) the chat format ``setting`` names, as the module
    docstring says. ``allow_new_tokens=False`` (generation with an untrained model, where new
    embeddings would mean nothing) refuses a format whose tokens the vocabulary lacks.

    Raises:
        LLMError: unknown setting, unreadable file, or tokens to add where none may be added.
    """
    chosen = choose(tokenizer, setting)
    if chosen is None:
        return Applied("model", None)
    if isinstance(chosen, str):  # a template file: its end-of-turn token is found by rendering
        tokenizer.chat_template = chosen
        eot = rendered_end_of_turn(tokenizer)
        if eot is None:
            raise LLMError(f"chat_template {setting}: an assistant turn ends with no special token, so a model trained on it would not learn where to stop")
        _set_eos(tokenizer, model, eot)
        return Applied(str(Path(setting).expanduser()), eot, turn_tokens=(eot,))
    missing = [t for t in (chosen.start, chosen.end) if not _in_vocab(tokenizer, t)]
    if missing and not allow_new_tokens:
        raise LLMError(f"the model has no chat template and its vocabulary lacks {', '.join(missing)}; use a model with a chat template")
    if missing and model is None:
        raise LLMError(f"adding {', '.join(missing)} to the vocabulary needs the model, to resize its embeddings")
    # add or mark the turn tokens special (decoding skips them; the tokenizer never splits them)
    tokenizer.add_special_tokens({"additional_special_tokens": [chosen.start, chosen.end]}, replace_extra_special_tokens=False)
    if missing and model is not None:
        _resize(model, len(tokenizer))
    tokenizer.chat_template = chosen.template
    _set_eos(tokenizer, model, chosen.end)
    return Applied(chosen.name, chosen.end, tuple(missing), (chosen.start, chosen.end))


PROBE = "Probe answer 7431."


def rendered_end_of_turn(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The first special token the template writes after an assistant message (``<|im_end|>`` for
    ChatML), found by rendering a probe conversation; None when there is none.

    Raises:
        LLMError: the template fails to render a user + assistant conversation."""
    messages = [{"role": "user", "content": "Probe question?"}, {"role": "assistant", "content": PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as e:  # jinja's TemplateError, or a template's raise_exception(...)
        raise LLMError(f"the chat template fails to render a conversation: {e}") from None
    if not isinstance(text, str) or PROBE not in text:
        raise LLMError("the chat template does not write the assistant's message")
    return first_special_token(tokenizer, text[text.index(PROBE) + len(PROBE):])


def first_special_token(tokenizer: PreTrainedTokenizerBase, text: str) -> str | None:
    """The first token of ``text`` that the tokenizer treats as special, or None."""
    special = set(tokenizer.all_special_tokens)
    special |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    for token in tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"]):
        if token in special:
            return token
    return None


def _resize(model: PreTrainedModel, size: int) -> None:
    """Grow the embeddings to ``size`` rows; new rows (and output rows, when untied) start at the
    mean of the old ones (transformers' ``mean_resizing``)."""
    model.resize_token_embeddings(size, mean_resizing=True)


def _set_eos(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None, eot: str) -> None:
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    tokenizer.eos_token = eot
    if model is None:
        return
    model.config.eos_token_id = eot_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        old = gen.eos_token_id
        others = [old] if isinstance(old, int) else list(old or [])
        gen.eos_token_id = [eot_id] + [i for i in others if i != eot_id]
