"""Chat formats for base models: a model without a chat template gets one, and its end-of-turn token
becomes the eos that training trains and generation stops on (datagen/llm/templates.py).

Tiny randomly initialised models (a 2-layer Llama over a 40-token word-level vocabulary) stand in
for a base model: what matters here is the tokenizer, the embeddings and the saved folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from datagen.core.errors import LLMError
from datagen.llm.templates import FORMATS, apply_chat_template, choose
from datagen.core.record import Message, Record

WORDS = ("what is the capital of france paris add two and three five name a color red blue yes no "
         "hello world probe question answer 7431 . ? ! , user assistant model system you are helpful").split()


def tiny_tokenizer(extra: tuple[str, ...] = (), template: str | None = None):
    """A word-level fast tokenizer with <bos>/<eos>/<pad>/<unk> and ``extra`` special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", *extra]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation; whitespace is dropped
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    if extra:
        fast.add_special_tokens({"additional_special_tokens": list(extra)})
    fast.chat_template = template
    return fast


def tiny_model(vocab_size: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    return LlamaForCausalLM(cfg)


def conversation() -> Record:
    return Record(id="r1", messages=[Message(role="system", content="you are helpful ."),
                                     Message(role="user", content="what is the capital of france ?"),
                                     Message(role="assistant", content="paris .")])


def trained_tokens(tokenizer, sample) -> list[str]:
    return [tokenizer.convert_ids_to_tokens(i) for i, label in zip(sample.input_ids, sample.labels) if label != -100]


def test_auto_uses_the_turn_tokens_the_vocabulary_holds():
    gemma_like = tiny_tokenizer(extra=("<start_of_turn>", "<end_of_turn>"))
    chatml_like = tiny_tokenizer(extra=("<|im_start|>", "<|im_end|>"))
    assert choose(gemma_like, "auto") is FORMATS["gemma"]
    assert choose(chatml_like, "auto") is FORMATS["chatml"]
    assert choose(tiny_tokenizer(), "auto") is FORMATS["chatml"]  # neither: ChatML, tokens to add
    assert choose(tiny_tokenizer(template="{{ messages }}"), "auto") is None  # its own template stays
    assert choose(tiny_tokenizer(template="{{ messages }}"), "gemma") is FORMATS["gemma"]  # unless told otherwise


def test_gemma_format_trains_the_answer_and_end_of_turn_only():
    from train.data import end_of_turn_token, render

    tok = tiny_tokenizer(extra=("<start_of_turn>", "<end_of_turn>"))
    model = tiny_model(len(tok))
    applied = apply_chat_template(tok, model, "auto")
    assert applied.source == "gemma" and applied.added_tokens == ()
    assert model.get_input_embeddings().num_embeddings == len(tok)  # nothing added, nothing resized
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    assert tok.eos_token == "<end_of_turn>" and model.config.eos_token_id == eot
    assert model.generation_config.eos_token_id[0] == eot and 1 in model.generation_config.eos_token_id  # old eos kept
    assert end_of_turn_token(tok) == "<end_of_turn>"
    text = tok.apply_chat_template([m.model_dump() for m in conversation().messages], tokenize=False)
    assert text.startswith("<bos><start_of_turn>user\nyou are helpful .\n\nwhat is")  # system folded into the user turn
    sample = render(conversation(), tok, max_length=128)
    assert trained_tokens(tok, sample) == ["paris", ".", "<end_of_turn>"]


def test_chatml_is_added_to_a_vocabulary_without_turn_tokens_and_embeddings_grow():
    import torch

    from train.data import render

    tok = tiny_tokenizer()
    model = tiny_model(len(tok))
    before = model.get_input_embeddings().weight.detach().clone()
    applied = apply_chat_template(tok, model, "auto")
    assert applied.source == "chatml" and applied.added_tokens == ("<|im_start|>", "<|im_end|>")
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == before.shape[0] + 2
    assert torch.equal(emb[: before.shape[0]], before)  # old rows untouched
    assert torch.allclose(emb[-1], before.mean(0), atol=1e-3)  # new rows start at the mean
    assert tok.eos_token == "<|im_end|>"
    sample = render(conversation(), tok, max_length=128)
    assert trained_tokens(tok, sample) == ["paris", ".", "<|im_end|>"]


def test_a_template_file_and_its_errors(tmp_path):
    tok = tiny_tokenizer(extra=("<end_of_turn>",))
    good = tmp_path / "t.jinja"
    good.write_text("{% for m in messages %}{{ m['role'] + ' ' + m['content'] }}{% if m['role'] == 'assistant' %}<end_of_turn>{% endif %}\n"
                    "{% endfor %}{% if add_generation_prompt %}assistant {% endif %}")
    applied = apply_chat_template(tok, tiny_model(len(tok)), str(good))
    assert applied.source == str(good) and applied.end_of_turn == "<end_of_turn>" and tok.eos_token == "<end_of_turn>"
    bad = tmp_path / "no-stop.jinja"
    bad.write_text("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}\n{% endfor %}")
    with pytest.raises(LLMError, match="no special token"):
        apply_chat_template(tiny_tokenizer(), tiny_model(len(tiny_tokenizer())), str(bad))
    with pytest.raises(LLMError, match="cannot read"):
        apply_chat_template(tiny_tokenizer(), None, str(tmp_path / "missing.jinja"))
    with pytest.raises(LLMError, match="expected auto"):
        apply_chat_template(tiny_tokenizer(), None, "vicuna")


def test_generation_never_adds_tokens_to_an_untrained_model():
    with pytest.raises(LLMError, match="lacks"):
        apply_chat_template(tiny_tokenizer(), tiny_model(len(tiny_tokenizer())), "auto", allow_new_tokens=False)


# run by transformers 4.57 (make compat) on a merged folder
COMPAT_PROBE = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
ids = tok(prompt, add_special_tokens=False)["input_ids"]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0, -1].tolist()
gen = GenerationConfig.from_pretrained(folder).eos_token_id
print(json.dumps({"version": transformers.__version__, "prompt": prompt, "ids": ids, "eos": tok.eos_token_id,
                  "generation_eos": gen if isinstance(gen, list) else [gen], "logits": logits}))
"""


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory) -> Path:
    """A template-less 'base model' folder without chat tokens in its vocabulary."""
    folder = tmp_path_factory.mktemp("base") / "tiny-base"
    tok = tiny_tokenizer()
    tok.save_pretrained(folder)
    tiny_model(len(tok)).save_pretrained(folder)
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    return folder


@pytest.mark.slow
def test_train_run_on_a_base_model_saves_a_working_template_and_a_peft_loadable_adapter(base_folder, tmp_path):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in [
        ("what is the capital of france ?", "paris ."), ("add two and three .", "five ."), ("name a color .", "red .")] * 3))
    out = tmp_path / "lora"
    env = {**os.environ, "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "train.cli", "run", "--data", str(data), "--out", str(out), "--model", str(base_folder),
                        "--max-steps", "3", "--max-length", "64", "--set", "lora_target_modules=[q_proj,v_proj]"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((out / "train_manifest.json").read_text())
    assert manifest["data"]["chat_template"] == {"source": "chatml", "end_of_turn": "<|im_end|>", "added_tokens": ["<|im_start|>", "<|im_end|>"],
                                                "turn_tokens": ["<|im_start|>", "<|im_end|>"]}
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and len(tok) == len(tiny_tokenizer()) + 2
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    gen = GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id[0] == tok.convert_tokens_to_ids("<|im_end|>")
    # peft's own loader finds the base (an absolute path) and the two trained embedding rows
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_folder.resolve())
    peft_model = AutoPeftModelForCausalLM.from_pretrained(out)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        assert peft_model(**ids).logits.shape[-1] == len(tiny_tokenizer()) + 2
    # train merge folds it into a plain folder that plain transformers loads with the template
    merged = tmp_path / "merged"
    r = subprocess.run([sys.executable, "-m", "train.cli", "merge", "--adapter", str(out), "--out", str(merged), "--dtype", "fp32"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    plain = AutoModelForCausalLM.from_pretrained(merged)
    with torch.no_grad():
        expected = peft_model.merge_and_unload()(**ids).logits
        assert torch.allclose(plain(**ids).logits, expected, atol=1e-4)
    assert AutoTokenizer.from_pretrained(merged).apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False,
                                                                     add_generation_prompt=True) == prompt
    # and transformers 4.57 reads the merged folder as 5.x does: template, tokens, eos, logits
    from test_portable import COMPAT_PY

    if not COMPAT_PY.is_file():
        pytest.skip("transformers 4.57 is not installed: run `make compat`")
    r = subprocess.run([str(COMPAT_PY), "-c", COMPAT_PROBE, str(merged)], env={**env, "PYTHONPATH": ""}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    old = json.loads(r.stdout.strip().splitlines()[-1])
    assert old["version"].startswith("4.57")
    assert old["prompt"] == prompt and old["ids"] == ids["input_ids"][0].tolist() and old["eos"] == tok.eos_token_id
    assert old["generation_eos"][0] == tok.convert_tokens_to_ids("<|im_end|>")
    assert torch.allclose(torch.tensor(old["logits"]), expected[0, -1], atol=1e-4)


def test_the_local_backend_asks_a_base_model_in_the_turn_format_its_vocabulary_holds(tmp_path):
    from datagen.llm.base import ChatRequest, GenParams
    from datagen.llm.local import LocalLLM

    gemma_like = tmp_path / "gemma-like"
    tok = tiny_tokenizer(extra=("<start_of_turn>", "<end_of_turn>"))
    tok.save_pretrained(gemma_like)
    tiny_model(len(tok)).save_pretrained(gemma_like)
    llm = LocalLLM(str(gemma_like), batch_size=2)
    (reply,) = llm.generate([ChatRequest.of([("user", "hello")])], GenParams(max_tokens=4, temperature=0.0, top_p=1.0, seed=0))
    assert reply.ok and reply.finish_reason in ("stop", "length")
    _, loaded = llm._load()
    assert loaded.chat_template == FORMATS["gemma"].template
    assert llm._render_prompts([[{"role": "user", "content": "hello"}]])[0] == loaded(
        "<bos><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n", add_special_tokens=False)["input_ids"]
    # a vocabulary without turn tokens: refused with a clear error, never new untrained embeddings
    plain = tmp_path / "plain"
    tok = tiny_tokenizer()
    tok.save_pretrained(plain)
    tiny_model(len(tok)).save_pretrained(plain)
    bad = LocalLLM(str(plain), batch_size=2)
    with pytest.raises(LLMError, match="lacks"):
        bad.generate([ChatRequest.of([("user", "hello")])], GenParams(max_tokens=4, temperature=0.0, top_p=1.0, seed=0))


@pytest.mark.slow
def test_the_embedded_gemma_base_is_converted_once_portable_and_answers_in_its_turn_format():
    from transformers import AutoConfig, AutoTokenizer

    from datagen.llm.base import ChatRequest, GenParams
    from datagen.llm.local import LocalLLM
    from datagen.llm.models import embedded, model_id, resolve_model

    assert embedded("google/gemma-3-270m") is embedded("gemma3-270m") and not embedded("gemma3-270m").instruct
    folder = resolve_model("gemma3-270m")
    assert resolve_model("Gemma-3-270M") == folder and model_id("gemma3-270m") == "local:gemma3-270m"
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "gemma3_text" and cfg.vocab_size == 262_144
    raw = json.loads((folder / "config.json").read_text())
    assert raw["rope_theta"] == 1_000_000.0 and raw["rope_local_base_freq"] == 10_000.0  # what transformers 4.5x reads
    tok = AutoTokenizer.from_pretrained(folder)
    assert not tok.chat_template  # a base model, converted as it is
    assert not list(folder.parent.glob(".gemma3-270m.tmp-*"))  # no assembled GGUF or half conversion left behind
    llm = LocalLLM("gemma3-270m", batch_size=1)
    (reply,) = llm.generate([ChatRequest.of([("user", "What is the capital of France?")])],
                            GenParams(max_tokens=3, temperature=0.0, top_p=1.0, seed=0))
    assert reply.ok and reply.completion_tokens <= 3
    assert llm._load()[1].chat_template == FORMATS["gemma"].template
