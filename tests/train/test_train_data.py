"""train/data.py: loss masks on two chat templates, end-of-turn training, errors, packing, collators,
and the packed-loss equality with the real SmolLM2 model (plus negative controls)."""

from __future__ import annotations

import copy
import json
import random

import pytest

from datagen.core.record import Message, Record
from train.data import IGNORE_INDEX, ChatTemplateError, DataError, Sample, assistant_spans, end_of_turn_token, load_samples, loss_mask, render
from train.packing import PackedCollator, PackedDataset, PaddedCollator, expected_padding, flatten, pack, packing_stats

LLAMA3_STYLE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
ZEPHYR_STYLE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
# Not prefix-stable: the header counts the turns, so a prefix renders a different header.
COUNTING = "{{ messages | length }} turns\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from datagen.llm.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2"))


@pytest.fixture(scope="module")
def llama3_tok(tok):
    t = copy.deepcopy(tok)
    t.add_special_tokens({"additional_special_tokens": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    t.bos_token = "<|begin_of_text|>"
    t.chat_template = LLAMA3_STYLE
    return t


def conv(*turns: str, system: str | None = None, origin: str | None = None) -> Record:
    msgs = [Message(role="system", content=system)] if system else []
    msgs += [Message(role="user" if i % 2 == 0 else "assistant", content=t) for i, t in enumerate(turns)]
    return Record(messages=msgs, meta={"origin": origin} if origin else {})


def trained_text(sample: Sample, tokenizer) -> str:
    return tokenizer.decode([t for t, y in zip(sample.input_ids, sample.labels) if y != IGNORE_INDEX])


MULTI = conv("What is 2+2?", "2+2 = 4.", "And times 3?", "4 x 3 = 12.\nDone.", system="Be brief.")


# -- masks -------------------------------------------------------------------------------------
def test_loss_mask_marks_overlapping_tokens():
    offsets = [(0, 3), (3, 5), (5, 9), (9, 9), (9, 12)]
    assert loss_mask(offsets, [(4, 9)]) == [False, True, True, False, False]
    assert loss_mask(offsets, [(0, 3), (9, 12)]) == [True, False, False, True, True]


def test_smollm2_every_assistant_turn_and_end_of_turn(tok):
    s = render(MULTI, tok)
    assert trained_text(s, tok) == "2+2 = 4.<|im_end|>4 x 3 = 12.\nDone.<|im_end|>"
    assert len(s.input_ids) == len(s.labels) and s.labels[0] == IGNORE_INDEX
    # the ids are exactly the template's own tokenization
    assert s.input_ids == list(tok.apply_chat_template([m.model_dump() for m in MULTI.messages], tokenize=True)["input_ids"])


def test_smollm2_end_of_turn_token_is_trained_not_the_newline_after(tok):
    s = render(conv("Hi", "Hello!"), tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    last_end = max(i for i, t in enumerate(s.input_ids) if t == im_end)
    assert s.labels[last_end] == im_end
    assert tok.decode(s.input_ids[last_end + 1:]) == "\n" and s.labels[last_end + 1] == IGNORE_INDEX
    assert end_of_turn_token(tok) == "<|im_end|>"


def test_smollm2_default_system_prompt_is_rendered_but_not_trained(tok):
    s = render(conv("Hi", "Hello!"), tok)
    assert "You are a helpful AI assistant named SmolLM" in tok.decode(s.input_ids)
    assert trained_text(s, tok) == "Hello!<|im_end|>"
    text, spans = assistant_spans(tok, conv("Hi", "Hello!").messages)
    assert [text[a:b] for a, b in spans] == ["Hello!<|im_end|>"]


def test_mask_history_and_train_on_prompt(tok):
    assert trained_text(render(MULTI, tok, mask_history=True), tok) == "4 x 3 = 12.\nDone.<|im_end|>"
    s = render(MULTI, tok, train_on_prompt=True)
    assert s.labels[0] == IGNORE_INDEX and s.labels[1:] == s.input_ids[1:]


def test_llama3_style_template(llama3_tok):
    rec = conv("  What is 2+2?  ", "  2+2 = 4.  ", "And times 3?", "12.", system="Be brief.")
    s = render(rec, llama3_tok)
    # Llama 3 trims contents; the trained text is what the template writes after the header
    assert trained_text(s, llama3_tok) == "2+2 = 4.<|eot_id|>12.<|eot_id|>"
    assert trained_text(render(rec, llama3_tok, mask_history=True), llama3_tok) == "12.<|eot_id|>"
    assert llama3_tok.decode(s.input_ids[:1]) == "<|begin_of_text|>"
    assert end_of_turn_token(llama3_tok) == "<|eot_id|>"


def test_zephyr_style_template_trains_the_newline_the_model_must_write(tok):
    t = copy.deepcopy(tok)
    t.chat_template = ZEPHYR_STYLE
    s = render(conv("Hi", "Hello!", "Bye", "Ciao."), t)
    # the generation prompt is '<|assistant|>' without a newline, so the model writes it
    assert trained_text(s, t) == "\nHello!<|im_end|>\nCiao.<|im_end|>"
    assert end_of_turn_token(t) == "<|im_end|>"


def test_slow_tokenizer_fallback_agrees(tok):
    class Slow:  # a tokenizer without offsets
        is_fast = False

        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, text, **kw):
            kw.pop("return_offsets_mapping", None)
            return tok(text, **kw)

    assert trained_text(render(MULTI, Slow()), tok) == trained_text(render(MULTI, tok), tok)


def test_template_that_is_not_prefix_stable_is_refused(tok):
    t = copy.deepcopy(tok)
    t.chat_template = COUNTING
    with pytest.raises(ChatTemplateError, match="prefix") as e:
        render(conv("Hi", "Hello!", origin="data.jsonl:7"), t)
    assert "data.jsonl:7" in str(e.value)


def test_template_without_end_of_turn_token_is_reported(tok):
    t = copy.deepcopy(tok)
    t.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    # the template's 'assistant: ' ends in a space that BPE merges into ' Hello': a token that
    # straddles the start of the turn is trained, since it holds characters of the answer
    assert trained_text(render(conv("Hi", "Hello!"), t), t) == " Hello!"
    with pytest.raises(ChatTemplateError, match="learn where to stop"):
        end_of_turn_token(t)


# -- errors ------------------------------------------------------------------------------------
def test_no_trainable_token_names_the_record(tok):
    rec = conv("Tell me a story. " * 20, "Once upon a time.", origin="train.jsonl:3")
    with pytest.raises(DataError, match="no token to train on after truncation") as e:
        render(rec, tok, max_length=40)
    assert rec.id in str(e.value) and "train.jsonl:3" in str(e.value)
    assert e.value.reason == "no_trainable_tokens"


def test_empty_answer_is_an_error(tok):
    rec = conv("Hi", "   ", origin="x.jsonl:1")
    with pytest.raises(DataError, match="empty") as e:
        render(rec, tok)
    assert rec.id in str(e.value) and "x.jsonl:1" in str(e.value)


# -- loading -----------------------------------------------------------------------------------
def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "row",
    [
        {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
        {"conversations": [{"from": "human", "value": "Add the numbers.\n\n2, 3"}, {"from": "gpt", "value": "5"}]},
        {"messages": [{"role": "user", "content": "Add the numbers.\n\n2, 3"}, {"role": "assistant", "content": "5"}]},
    ],
    ids=["alpaca", "sharegpt", "messages"],
)
def test_load_samples_reads_every_format(tmp_path, tok, row):
    samples, problems = load_samples(_write(tmp_path / "d.jsonl", [row]), tok)
    assert problems == [] and len(samples) == 1
    assert trained_text(samples[0], tok) == "5<|im_end|>"
    assert "Add the numbers.\n\n2, 3" in tok.decode(samples[0].input_ids)
    assert samples[0].origin == "d.jsonl:1"


def test_load_samples_overlong_policy_and_skip(tmp_path, tok):
    rows = [
        {"instruction": "Short.", "output": "Yes."},
        {"instruction": "Long " * 100, "output": "No."},
        {"instruction": "Empty answer.", "output": ""},
        {"instruction": "Short again.", "output": "Ok."},
    ]
    path = _write(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match="d.jsonl:3"):
        load_samples(path, tok, max_length=64)
    samples, problems = load_samples(path, tok, max_length=64, on_error="skip")
    assert [s.origin for s in samples] == ["d.jsonl:1", "d.jsonl:4"]
    assert [(p["origin"], p["reason"]) for p in problems] == [("d.jsonl:2", "too_long"), ("d.jsonl:3", "empty_answer")]
    assert problems[0]["length"] > 64
    samples, problems = load_samples(path, tok, max_length=64, on_error="skip", overlong="truncate")
    # truncation keeps only prompt tokens here, so the sample is unusable and reported
    assert [p["reason"] for p in problems] == ["no_trainable_tokens", "empty_answer"]
    with pytest.raises(DataError, match="too_long|more than max_length"):
        load_samples(path, tok, max_length=64, overlong="error")


def test_load_samples_with_nothing_usable(tmp_path, tok):
    path = _write(tmp_path / "d.jsonl", [{"instruction": "Long " * 100, "output": "No."}])
    with pytest.raises(DataError, match="no usable training sample"):
        load_samples(path, tok, max_length=32)


# -- packing -----------------------------------------------------------------------------------
def fake(n: int, name: str = "") -> Sample:
    return Sample(list(range(1, n + 1)), [IGNORE_INDEX] + list(range(2, n + 1)), name or f"s{n}")


def first_fit(lengths, cap):
    bins: list[int] = []
    for n in lengths:
        for i, used in enumerate(bins):
            if used + n <= cap:
                bins[i] += n
                break
        else:
            bins.append(n)
    return len(bins)


def test_pack_properties_and_determinism():
    rng = random.Random(0)
    samples = [fake(rng.randint(1, 300), f"r{i}") for i in range(500)]
    bins = pack(samples, 512)
    assert all(sum(map(len, b)) <= 512 for b in bins)
    assert sorted(id(s) for b in bins for s in b) == sorted(id(s) for s in samples)
    assert [[s.record_id for s in b] for b in bins] == [[s.record_id for s in b] for b in pack(list(samples), 512)]
    total = sum(map(len, samples))
    assert len(bins) <= -(-total // 512) + 2  # within two bins of the lower bound
    assert len(bins) < first_fit([len(s) for s in samples], 512)


def test_pack_beats_first_fit_on_adversarial_order():
    lengths = [3, 3, 3, 3, 7, 7, 7, 7]
    assert first_fit(lengths, 10) == 5
    bins = pack([fake(n, f"x{i}") for i, n in enumerate(lengths)], 10)
    assert len(bins) == 4 and all(sorted(map(len, b)) == [3, 7] for b in bins)


def optimal_bins(lengths, cap):
    """The fewest bins, by trying every assignment (small inputs only)."""
    best = len(lengths)

    def place(i, loads):
        nonlocal best
        if len(loads) >= best:
            return
        if i == len(lengths):
            best = len(loads)
            return
        for k in range(len(loads)):
            if loads[k] + lengths[i] <= cap:
                loads[k] += lengths[i]
                place(i + 1, loads)
                loads[k] -= lengths[i]
        place(i + 1, loads + [lengths[i]])

    place(0, [])
    return best


def test_pack_is_optimal_on_small_cases():
    rng = random.Random(1)
    for _ in range(200):
        lengths = [rng.randint(1, 10) for _ in range(rng.randint(1, 8))]
        assert len(pack([fake(n) for n in lengths], 10)) == optimal_bins(lengths, 10), lengths


def test_pack_refuses_overlong_sample():
    with pytest.raises(DataError, match="does not fit"):
        pack([fake(5), fake(11)], 10)


def test_packing_stats_packed_and_padded():
    samples = [fake(n) for n in (10, 2, 8, 4)]
    padded = packing_stats(samples, batch_size=2)
    assert (padded.mode, padded.n_bins, padded.tokens, padded.capacity) == ("padded", 4, 24, 2 * 10 + 2 * 8)
    assert padded.padding_waste == pytest.approx(1 - 24 / 36)
    bins = pack(samples, 12)
    packed = packing_stats(bins, batch_size=2)
    assert (packed.mode, packed.n_samples, packed.n_bins, packed.tokens) == ("packed", 4, 2, 24)
    assert packed.capacity == 24 and packed.padding_waste == 0
    assert packing_stats(bins, row_length=16).padding_waste == pytest.approx(1 - 24 / 32)
    assert expected_padding(samples, batch_size=4).capacity == 40
    assert "padding waste" in str(packed)


# -- collators ---------------------------------------------------------------------------------
def test_packed_collator_rows_positions_and_labels():
    a, b, c = fake(3, "a"), fake(2, "b"), fake(4, "c")
    batch = PackedCollator(pad_token_id=0)([[a, b], [c]])
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no attention_mask, on purpose
    assert batch["input_ids"].tolist() == [[1, 2, 3, 1, 2], [1, 2, 3, 4, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    # each sample's first label is ignored; padding is ignored
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 2], [-100, 2, 3, 4, -100]]
    again = PackedCollator(pad_token_id=0, pad_to_multiple_of=8)([flatten([a, b]), [c]])
    assert again["input_ids"].shape == (2, 8) and again["position_ids"][1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_padded_collator():
    batch = PaddedCollator(pad_token_id=0)([fake(3), fake(1)])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_dataloader_consumes_packed_dataset():
    from torch.utils.data import DataLoader

    ds = PackedDataset.from_samples([fake(n) for n in (5, 4, 3, 6, 2)], 8)
    rows = [r for batch in DataLoader(ds, batch_size=2, collate_fn=PackedCollator(pad_token_id=0)) for r in batch["input_ids"]]
    assert len(rows) == len(ds) == 3


# -- the packed loss equals the unpacked loss, with the real model -----------------------------
@pytest.fixture(scope="module")
def model_samples_reference(tok):
    """The model, a few short samples, and their reference loss: each sample run alone (sdpa).
    Short samples (a system prompt replaces SmolLM2's long default one) keep this fast on CPU."""
    import torch

    from datagen.llm.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer("smollm2", device="cpu", dtype="float32")
    model.eval()
    model.set_attn_implementation("sdpa")
    recs = [
        conv("Name a colour.", "Blue.", system="Be brief."),
        conv("Capital of France?", "Paris.", system="Answer in one word."),
        conv("2+2?", "4.", "Times 3?", "12.", system="Be brief."),
        conv("A haiku about rain.", "Soft rain on the roof,\npuddles hold the sky.", system="Poet."),
        conv("Count to five.", "1, 2, 3, 4, 5.", system="Be brief."),
    ]
    samples = [render(r, tokenizer) for r in recs]
    parts = [_ce(model, {"input_ids": torch.tensor([s.input_ids]), "labels": torch.tensor([s.labels])}, use_cache=False) for s in samples]
    ref_sum, ref_n = map(sum, zip(*parts))
    return model, samples, ref_sum / ref_n, ref_n


def _ce(model, batch, **kw):
    """(sum of per-token cross-entropy over the labelled tokens, number of them)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, **kw).logits
    labels = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    return loss.item(), int((labels != IGNORE_INDEX).sum())


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(model_samples_reference, tok, attn):
    import torch

    model, samples, ref, ref_n = model_samples_reference
    model.set_attn_implementation(attn)
    bins = pack(samples, 64)
    assert len(bins) >= 2 and any(len(b) > 1 for b in bins)
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(bins)
    assert batch["input_ids"].shape[0] == len(bins) and (batch["labels"] == IGNORE_INDEX).any()
    packed_sum, packed_n = _ce(model, batch, use_cache=False)
    assert packed_n == ref_n
    assert packed_sum / packed_n == pytest.approx(ref, abs=1e-4)

    padded_sum, padded_n = _ce(model, PaddedCollator(pad_token_id=tok.pad_token_id)(samples), use_cache=False)
    assert padded_n == ref_n and padded_sum / padded_n == pytest.approx(ref, abs=1e-4)

    # Negative controls: the comparison can fail. Positions that do not restart give one causal
    # sequence per row; a KV cache turns off packed-sequence detection. Either way samples mix.
    flat = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"]))
    no_restart, _ = _ce(model, flat, use_cache=False)
    with_cache, _ = _ce(model, batch, use_cache=True)
    assert abs(no_restart / packed_n - ref) > 1e-2
    assert abs(with_cache / packed_n - ref) > 1e-2
    model.set_attn_implementation("sdpa")
