"""The embedded transformers backend: model resolution and conversion, generation, logprobs and
teacher-forced scoring, on the real SmolLM2-135M-Instruct.

The slow tests share one model loaded from the default cache location (converted there on first
use); only the conversion test converts again, into a temporary cache root.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from datagen.llm import ChatRequest, GenParams, LLMConfig, LLMError, make_llm
from datagen.llm.local import LocalLLM
from datagen.llm.conversion import MARKER_FILE
from datagen.llm.models import load_model_and_tokenizer, model_id, resolve_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
HAIKU = [{"role": "user", "content": "Write a haiku about the sea, then explain each line in detail."}]
COLORS = [{"role": "user", "content": "List three colors."}]


@pytest.fixture(scope="session")
def llm() -> LocalLLM:
    backend = LocalLLM("smollm2", batch_size=2)
    backend._load()
    return backend


def ask(*conversations: list[dict[str, str]], seed: int | None = None) -> list[ChatRequest]:
    return [ChatRequest.of(c, seed=seed) for c in conversations]


# -- resolution, without a model ---------------------------------------------------------------


def test_bad_path_raises_a_clear_error(tmp_path):
    with pytest.raises(LLMError) as err:
        resolve_model(str(tmp_path / "nope"))
    message = str(err.value)
    assert str(tmp_path / "nope") in message
    assert "config.json" in message and "disabled" in message


def test_hub_id_is_not_downloaded():
    with pytest.raises(LLMError, match="hub are disabled"):
        LocalLLM("Qwen/Qwen2.5-0.5B-Instruct")


def test_local_folder_id_follows_its_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x" * 10)
    first = model_id(str(tmp_path))
    assert first.startswith(f"local:{tmp_path.name}@") and model_id(str(tmp_path)) == first
    weights.write_bytes(b"x" * 11)
    assert model_id(str(tmp_path)) != first
    assert resolve_model(str(tmp_path)) == tmp_path


def test_make_llm_loads_nothing():
    backend = make_llm(LLMConfig(backend="local", no_cache=True))
    assert backend.model_id == "local:smollm2-135m-instruct"
    assert backend._model is None and backend.describe()["device"] == "auto"


# -- conversion ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_is_converted_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAGEN_CACHE_DIR", str(tmp_path))
    models = tmp_path / "models"
    target = models / "smollm2-135m-instruct"
    # What an interrupted conversion leaves: a half-written target without marker, a temp dir.
    target.mkdir(parents=True)
    (target / "config.json").write_text("{half")
    (models / ".smollm2-135m-instruct.tmp-dead").mkdir()

    assert resolve_model("smollm2") == target
    marker = json.loads((target / MARKER_FILE).read_text())
    assert marker["source"]["gguf"].endswith(".gguf")
    assert (target / "model.safetensors").is_file() and json.loads((target / "config.json").read_text())
    assert sorted(p.name for p in models.iterdir()) == [".smollm2-135m-instruct.lock", "smollm2-135m-instruct"]

    weights_mtime = (target / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == target
    assert (target / "model.safetensors").stat().st_mtime_ns == weights_mtime


@pytest.mark.slow
def test_converted_tokenizer_is_chatml_with_a_separate_pad(llm):
    tok = llm._tokenizer
    rendered = tok.apply_chat_template(CAPITAL, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"
    assert tok.convert_tokens_to_ids("<|im_end|>") in llm._eos_ids
    # The pad row of the embedding gets no gradient: it must not be <|im_end|>, which we train on.
    assert llm._model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id


@pytest.mark.slow
def test_loader_for_training_pads_right_in_train_mode():
    model, tok = load_model_and_tokenizer("smollm2", for_training=True)
    assert model.training and tok.padding_side == "right" and not model.config.use_cache
    assert str(model.dtype) == "torch.float32"


# -- generation ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_generates_real_text_with_correct_finish_reasons(llm):
    out = llm.generate(ask(CAPITAL, HAIKU, COLORS), GenParams(max_tokens=16, temperature=0))
    assert "Paris" in out[0].text and out[0].finish_reason == "stop"
    assert out[1].finish_reason == "length" and out[1].completion_tokens == 16 and len(out[1].text) > 20
    assert all(c.ok and c.prompt_tokens > 20 and c.model == "local:smollm2-135m-instruct" for c in out)
    assert "<|im_end|>" not in out[0].text
    tiny = llm.generate(ask(CAPITAL), GenParams(max_tokens=2, temperature=0))[0]
    assert tiny.finish_reason == "length" and tiny.completion_tokens == 2


@pytest.mark.slow
def test_greedy_is_deterministic_and_batch_invariant(llm):
    params = GenParams(max_tokens=12, temperature=0)
    alone = llm.generate(ask(COLORS), params)[0].text
    # Batched with a longer prompt, COLORS is left-padded: the attention mask and the position ids
    # derived from it must make that invisible.
    padded = llm.generate(ask(HAIKU, COLORS), params)[1].text
    assert alone == padded == llm.generate(ask(COLORS), params)[0].text


@pytest.mark.slow
def test_seeds_reproduce_samples_and_leave_the_global_rng_alone(llm):
    import torch

    params = GenParams(max_tokens=12, temperature=1.0, seed=7)
    state = torch.random.get_rng_state()
    first = [c.text for c in llm.generate(ask(HAIKU, COLORS), params)]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [c.text for c in llm.generate(ask(HAIKU, COLORS), params)] == first
    other_seed = [c.text for c in llm.generate(ask(HAIKU, COLORS, seed=8), params)]
    assert other_seed != first


@pytest.mark.slow
def test_stop_strings_cut_the_text(llm):
    params = GenParams(max_tokens=24, temperature=0, stop=(" of",))
    out = llm.generate(ask(CAPITAL), params)[0]
    assert out.text == "The capital" and out.finish_reason == "stop"


@pytest.mark.slow
def test_prompt_longer_than_the_context_is_an_error_completion(llm):
    out = llm.generate(ask(CAPITAL), GenParams(max_tokens=9000))[0]
    assert out.finish_reason == "error" and "context" in out.error and not out.ok


@pytest.mark.slow
def test_generate_iter_yields_every_index_and_counts_usage(llm):
    before = llm.usage.to_dict()
    got = dict(llm.generate_iter(ask(CAPITAL, HAIKU, COLORS), GenParams(max_tokens=4, temperature=0)))
    assert sorted(got) == [0, 1, 2]
    after = llm.usage.to_dict()
    assert after["requests"] - before["requests"] == 3
    assert after["completion_tokens"] - before["completion_tokens"] == sum(c.completion_tokens for c in got.values())
    assert after["prompt_tokens"] - before["prompt_tokens"] == sum(c.prompt_tokens for c in got.values())


# -- logprobs and scoring ----------------------------------------------------------------------


@pytest.mark.slow
def test_logprobs_are_raw_log_probabilities(llm):
    params = GenParams(max_tokens=6, temperature=0, logprobs=True, top_logprobs=5)
    out = llm.generate(ask(CAPITAL, COLORS), params)
    for c in out:
        assert c.logprobs
        for t in c.logprobs:
            assert math.isfinite(t.logprob) and t.logprob <= 0
            assert len(t.top) == 5 and t.top[t.token] == pytest.approx(t.logprob)  # greedy: chosen is best
            assert sum(math.exp(v) for v in t.top.values()) <= 1 + 1e-5
        assert "".join(t.token for t in c.logprobs) == c.text
    # Temperature warps sampling, not the reported logprobs.
    hot = llm.generate(ask(CAPITAL), GenParams(max_tokens=1, temperature=5.0, logprobs=True, top_logprobs=5))[0]
    # (the first call ran two prompts as one padded batch, this one alone: fp32 matmuls over a
    # different shape differ in the last digits, measured up to 4e-6)
    assert hot.logprobs[0].top == pytest.approx(out[0].logprobs[0].top, abs=1e-4)


@pytest.mark.slow
def test_generation_logprobs_agree_with_teacher_forcing(llm):
    out = llm.generate(ask(CAPITAL), GenParams(max_tokens=8, temperature=0, logprobs=True))[0]
    loss = llm.answer_nll([CAPITAL], [out.text])[0]
    assert loss.tokens == len(out.logprobs)
    assert loss.nll == pytest.approx(-sum(t.logprob for t in out.logprobs) / loss.tokens, abs=1e-3)


@pytest.mark.slow
def test_answer_nll_prefers_the_matching_instruction(llm):
    answer = "The capital of France is Paris."
    given, alone, unrelated = llm.answer_nll([CAPITAL, None, COLORS], [answer] * 3)
    assert all(math.isfinite(x.nll) and x.tokens == given.tokens for x in (given, alone, unrelated))
    assert given.nll < alone.nll and given.nll < unrelated.nll
    only = llm.answer_nll(None, [answer])[0]  # the prompt-free form, in a batch of its own
    assert only.tokens == alone.tokens and only.nll == pytest.approx(alone.nll, abs=1e-4)
    empty = llm.answer_nll([CAPITAL], [""])[0]
    assert empty.tokens == 0 and math.isnan(empty.nll)
    with pytest.raises(ValueError):
        llm.answer_nll([CAPITAL], [answer, answer])


@pytest.mark.slow
def test_model_loads_print_no_transformers_bars_or_notices(capfd):
    from transformers.utils import logging as hf_logging

    from datagen.llm.models import load_model_and_tokenizer, resolve_model
    from train.model import load_merged

    hf_logging.enable_progress_bar()
    level = hf_logging.get_verbosity()
    load_model_and_tokenizer("smollm2", device="cpu")
    load_merged(resolve_model("smollm2"))  # `train eval` and `train merge` load through this one
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err, err
    assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == level  # restored after
