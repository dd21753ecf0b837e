"""`datagen.llm.portable.make_portable`: a folder saved under transformers 5 loads the same under 4.57.

Tiny randomly initialised models (Gemma 3 with a different RoPE theta on its full and sliding
layers, Gemma 3 with linear-scaled RoPE on the full layers, Llama with a non-default theta, Llama
with llama3-scaled RoPE) and a small byte-level BPE tokenizer with Gemma-style special tokens and a
chat template are saved with ``save_pretrained`` under transformers 5 (this venv). :func:`probe`
loads a folder and reports what a user sees: the RoPE settings (config keys and the model's actual
inverse frequencies), logits of a fixed input, token ids, decoded text, the chat-template output,
eos/pad/bos ids, padding and greedy generation. It runs here under transformers 5 and, as the same
source, under transformers 4.57 in `.venv-compat` (``make compat``); the results must match after
``make_portable`` and must differ without it. The cross-version tests are skipped only when
`.venv-compat/bin/python` is missing.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from datagen.llm.portable import make_portable

COMPAT_PY = ROOT / ".venv-compat" / "bin" / "python"

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
ADDED = ["<extra_id_0>"]  # an added token that is not special
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
CORPUS = [
    "hello world, the cat sat on the mat.",
    "What is the capital of France? The capital of France is Paris.",
    "Add 2 and 3. 2 + 3 = 5. Write the word cat backwards: tac.",
    "Name a primary color. Red is a primary color; blue and yellow too.",
] * 4

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=1, head_dim=16, vocab_size=384, max_position_embeddings=256,
              pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True)
GEMMA = dict(COMMON, layer_types=["sliding_attention", "full_attention"], sliding_window=4)
MODELS = {
    # the thetas differ from transformers 4.57's Gemma 3 defaults (1e6 full, 1e4 sliding)
    "gemma3": ("gemma3_text", dict(GEMMA, rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 250_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 20_000.0}})),
    # Gemma 3 4B's layout: linear x8 on the full layers, plain 1e4 on the sliding ones
    "gemma3-linear": ("gemma3_text", dict(GEMMA, rope_parameters={
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}})),
    "llama": ("llama", dict(COMMON, rope_parameters={"rope_type": "default", "rope_theta": 100_000.0})),
    "llama3-scaled": ("llama", dict(COMMON, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
}
#: the RoPE theta per layer type each model was built with ("default": one for all layers)
THETAS = {
    name: ({k: v["rope_theta"] for k, v in spec["rope_parameters"].items()} if model_type == "gemma3_text"
           else {"default": spec["rope_parameters"]["rope_theta"]})
    for name, (model_type, spec) in MODELS.items()
}


# -- what a user sees, under either transformers version -------------------------------------------
def probe(folder: str) -> dict:
    """Load ``folder`` with the installed transformers and report its behaviour (JSON-able).

    Runs unchanged under transformers 4.57 and 5.x: only APIs that both have.
    """
    import warnings

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    out: dict = {"transformers": transformers.__version__}

    def rnd(values, digits=4):
        return [round(float(v), digits) for v in values]

    cfg = AutoConfig.from_pretrained(folder)
    sub = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    rope_cfg = {}
    for key in ("rope_theta", "rope_local_base_freq", "rope_scaling", "rope_parameters", "partial_rotary_factor"):
        value = sub.__dict__.get(key)  # not getattr: tf5 may answer a legacy name with a property
        if value is not None:
            rope_cfg[key] = value
    out["rope_config"] = rope_cfg
    out["config_ids"] = {"eos": sub.eos_token_id, "pad": sub.pad_token_id, "bos": sub.bos_token_id}

    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 - the error is the result
        out["tokenizer_error"] = f"{type(e).__name__}: {e}"
        tok = None
    text = "hello world <start_of_turn> the cat <extra_id_0> sat , Paris ! zqxj ."
    messages = [{"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "The capital of France is Paris."},
                {"role": "user", "content": "Add 2 and 3."}]
    if tok is not None:
        ids = tok(text).input_ids
        chat_text, chat_ids = None, None
        if tok.chat_template:
            chat_text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            chat_ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
            if not isinstance(chat_ids, list):  # tf5 returns a BatchEncoding
                chat_ids = chat_ids["input_ids"]
            chat_ids = list(chat_ids)
        batch = tok(["cat", "What is the capital of France? The capital of France is Paris."], padding=True)
        out["tokenizer"] = {
            "ids": ids,
            "ids_no_special": tok(text, add_special_tokens=False).input_ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "decoded": tok.decode(ids),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            "chat_text": chat_text,
            "chat_ids": chat_ids,
            "chat_template": tok.chat_template,
            "eos": [tok.eos_token, tok.eos_token_id], "pad": [tok.pad_token, tok.pad_token_id],
            "bos": [tok.bos_token, tok.bos_token_id], "unk": [tok.unk_token, tok.unk_token_id],
            "special": sorted(str(t) for t in tok.all_special_tokens),
            "special_ids": sorted(tok.all_special_ids),
            "end_of_turn": tok.convert_tokens_to_ids("<end_of_turn>"),
            "len": len(tok),
            "padding_side": tok.padding_side,
            "batch": [batch["input_ids"], batch["attention_mask"]],
        }

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    inv = []
    for name, buf in model.named_buffers():
        if name.endswith("inv_freq") and "original" not in name:
            inv.append([float(f"{float(v):.6g}") for v in buf])
    scaling = []
    for name, mod in model.named_modules():
        if "rotary" in name:
            scaling += [round(float(v), 6) for k, v in vars(mod).items() if k.endswith("attention_scaling")]
    out["rope_inv_freq"] = sorted(inv)
    out["rope_attention_scaling"] = sorted(scaling)
    # long enough for the sliding window (4) and RoPE to matter
    input_ids = torch.tensor([[2, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54]])
    with torch.no_grad():
        logits = model(input_ids).logits[0]
    out["logits"] = [rnd(row) for row in logits[:, :48]]
    gen = GenerationConfig.from_pretrained(folder)
    out["generation"] = {"eos": gen.eos_token_id, "pad": gen.pad_token_id, "bos": gen.bos_token_id}
    with torch.no_grad():
        generated = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=6,
                                   do_sample=False, eos_token_id=[], pad_token_id=0)
    out["greedy"] = generated[0, input_ids.shape[1]:].tolist()
    return out


PROBE_SCRIPT = (
    textwrap.dedent(inspect.getsource(probe))
    + "\nimport json, sys\nprint('PROBE ' + json.dumps([probe(f) for f in sys.argv[1:]]))\n"
)


def run_probe(python: Path, folders: list[Path]) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": ""}
    proc = subprocess.run([str(python), "-c", PROBE_SCRIPT, *map(str, folders)], cwd=folders[0].parent,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, f"probe under {python} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("PROBE "):])


# -- building the folders ------------------------------------------------------------------------
def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=340, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(CORPUS, trainer=trainer)
    assert [tk.token_to_id(t) for t in SPECIAL[:3]] == [0, 1, 2]
    bos = tk.token_to_id("<bos>")
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                      special_tokens=[("<bos>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
                                  padding_side="left")  # an init argument: set later, tf4 and tf5 do not save it
    tok.add_tokens(ADDED)
    tok.chat_template = CHAT_TEMPLATE
    assert len(tok) <= COMMON["vocab_size"]
    return tok


def reloaded_tokenizer(folder: Path):
    """The tokenizer as the trainer has it: loaded back from a folder with AutoTokenizer."""
    from transformers import AutoTokenizer

    build_tokenizer().save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def build_folder(folder: Path, name: str, tok) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    model_type, spec = MODELS[name]
    config = AutoConfig.for_model(model_type, **json.loads(json.dumps(spec)))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # bigger weights than the init's 0.02 spread, so RoPE moves the logits
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    model.generation_config = GenerationConfig(eos_token_id=[tok.convert_tokens_to_ids("<end_of_turn>"), 1],
                                               pad_token_id=0, bos_token_id=2)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, dict]:
    """{name: {"raw": folder as tf5 saved it, "portable": a copy after make_portable, "changes": [...]}}"""
    base = tmp_path_factory.mktemp("portable")
    tok = reloaded_tokenizer(base / "tokenizer")
    out = {}
    for name in MODELS:
        raw = base / f"{name}-raw"
        build_folder(raw, name, tok)
        portable = base / f"{name}-portable"
        shutil.copytree(raw, portable)
        out[name] = {"raw": raw, "portable": portable, "changes": make_portable(portable)}
    # the portable gemma3 folder with tf5's list of extra special tokens put back
    listed = base / "gemma3-listed"
    shutil.copytree(out["gemma3"]["portable"], listed)
    tok_cfg = read(listed, "tokenizer_config.json")
    tok_cfg["extra_special_tokens"] = tok_cfg.pop("additional_special_tokens")
    (listed / "tokenizer_config.json").write_text(json.dumps(tok_cfg), encoding="utf-8")
    out["gemma3"]["listed"] = listed
    return out


@pytest.fixture(scope="module")
def tf5(folders) -> dict[str, dict]:
    """probe() of every raw and portable folder, in this process (transformers 5)."""
    return {f"{name}-{kind}": probe(str(f[kind])) for name, f in folders.items() for kind in ("raw", "portable")}


@pytest.fixture(scope="module")
def tf4(folders) -> dict[str, dict]:
    """probe() of every raw and portable folder under transformers 4.57, in one subprocess."""
    if not COMPAT_PY.exists():
        pytest.skip(f"{COMPAT_PY.relative_to(ROOT)} is missing: run `make compat` to test loading under transformers 4.57")
    keys = [f"{name}-{kind}" for name, f in folders.items() for kind in ("raw", "portable", "listed") if kind in f]
    results = run_probe(COMPAT_PY, [folders[k.rsplit("-", 1)[0]][k.rsplit("-", 1)[1]] for k in keys])
    assert all(r["transformers"].startswith("4.57.") for r in results), results[0]["transformers"]
    return dict(zip(keys, results))


def read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def rope_thetas(result: dict) -> dict[str, float]:
    """The RoPE theta per layer type that the loaded config says, in either version's keys."""
    rope = result["rope_config"]
    if result["transformers"].startswith("4."):
        thetas = {"default": rope.get("rope_theta")}
        if "rope_local_base_freq" in rope:
            thetas = {"full_attention": rope.get("rope_theta"), "sliding_attention": rope["rope_local_base_freq"]}
        return thetas
    params = rope["rope_parameters"]
    if all(isinstance(v, dict) for v in params.values()):
        return {k: v["rope_theta"] for k, v in params.items()}
    return {"default": params["rope_theta"]}


def assert_same(a: dict, b: dict, what: str) -> None:
    for key in sorted(set(a) | set(b)):
        if key in ("transformers", "rope_config"):
            continue
        if key == "logits":
            diff = max(abs(x - y) for ra, rb in zip(a[key], b[key]) for x, y in zip(ra, rb))
            assert len(a[key]) == len(b[key]) and diff <= 2e-4, f"{what}: logits differ by {diff}"
        elif key == "tokenizer":
            for k in sorted(set(a[key]) | set(b[key])):
                assert a[key].get(k) == b[key].get(k), f"{what}: tokenizer {k}: {a[key].get(k)!r} != {b[key].get(k)!r}"
        else:
            assert a.get(key) == b.get(key), f"{what}: {key}: {a.get(key)!r} != {b.get(key)!r}"


# -- the files make_portable writes (no second venv needed) --------------------------------------
def test_make_portable_adds_legacy_keys_and_keeps_tf5_ones(folders):
    g, l3 = folders["gemma3-linear"], folders["llama3-scaled"]
    cfg, raw = read(g["portable"], "config.json"), read(g["raw"], "config.json")
    assert "rope_theta" not in raw and "rope_parameters" in raw  # tf5 writes only rope_parameters
    assert cfg["rope_parameters"] == raw["rope_parameters"] and cfg["dtype"] == raw["dtype"] == "float32"
    assert cfg["rope_theta"] == 1e6 and cfg["rope_local_base_freq"] == 1e4
    assert cfg["rope_scaling"] == {"rope_type": "linear", "factor": 8.0}
    assert cfg["torch_dtype"] == "float32"
    assert {k: v for k, v in cfg.items() if k not in ("rope_theta", "rope_local_base_freq", "rope_scaling", "torch_dtype")} == raw
    cfg = read(l3["portable"], "config.json")
    assert cfg["rope_theta"] == 5e5 and "rope_local_base_freq" not in cfg
    assert cfg["rope_scaling"] == {k: v for k, v in MODELS["llama3-scaled"][1]["rope_parameters"].items() if k != "rope_theta"}
    assert read(folders["llama"]["portable"], "config.json")["rope_scaling"] is None

    tok, raw_tok = read(g["portable"], "tokenizer_config.json"), read(g["raw"], "tokenizer_config.json")
    assert raw_tok["tokenizer_class"] == "TokenizersBackend" and tok["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert isinstance(raw_tok["extra_special_tokens"], list) and "extra_special_tokens" not in tok
    assert tok["additional_special_tokens"] == ["<start_of_turn>", "<end_of_turn>"]
    # the template stays in chat_template.jinja, which transformers 4.57 reads too
    assert (g["portable"] / "chat_template.jinja").read_text(encoding="utf-8") == CHAT_TEMPLATE
    assert "chat_template" not in tok

    assert any("rope_theta" in c for c in g["changes"]) and any("tokenizer_class" in c for c in g["changes"])
    assert not [c for c in g["changes"] if c.startswith("WARNING")]
    assert sorted(p.name for p in g["portable"].iterdir()) == sorted(p.name for p in g["raw"].iterdir())  # no temp files


def test_make_portable_is_idempotent(folders, tmp_path):
    folder = tmp_path / "again"
    shutil.copytree(folders["gemma3"]["portable"], folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert make_portable(folder) == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_make_portable_overwrites_stale_legacy_keys_and_warns_on_what_tf4_cannot_express(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "gemma3_text", "rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 5e5},
                            "sliding_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4}}}))
    changes = make_portable(tmp_path)
    cfg = read(tmp_path, "config.json")
    assert cfg["rope_theta"] == 5e5 and cfg["rope_scaling"] is None and cfg["rope_local_base_freq"] == 1e4
    assert any(c.startswith("WARNING") and "sliding_attention" in c for c in changes)
    with pytest.raises(FileNotFoundError):
        make_portable(tmp_path / "missing")


def test_tf5_loads_the_portable_folder_exactly_as_before(tf5):
    for name in MODELS:
        raw, portable = tf5[f"{name}-raw"], tf5[f"{name}-portable"]
        assert_same(raw, portable, f"{name} under transformers 5, raw vs portable")
        assert portable["logits"] == raw["logits"]
        assert rope_thetas(portable) == rope_thetas(raw) == THETAS[name]


# -- across versions (needs `make compat`) -------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_tf4_loads_the_portable_folder_like_tf5(name, tf4, tf5):
    old, new = tf4[f"{name}-portable"], tf5[f"{name}-portable"]
    assert "tokenizer_error" not in old, old["tokenizer_error"]
    assert rope_thetas(old) == rope_thetas(new) == THETAS[name]
    assert old["rope_inv_freq"] == new["rope_inv_freq"] and old["rope_attention_scaling"] == new["rope_attention_scaling"]
    assert_same(old, new, f"{name}: transformers {old['transformers']} vs {new['transformers']}")
    t = old["tokenizer"]
    assert t["chat_text"].startswith("<bos><start_of_turn>user\nWhat is") and t["chat_text"].endswith("<start_of_turn>model\n")
    assert t["chat_template"] == CHAT_TEMPLATE
    assert t["eos"] == ["<eos>", 1] and t["pad"] == ["<pad>", 0] and t["bos"] == ["<bos>", 2]
    assert "<start_of_turn>" in t["tokens"] and "<extra_id_0>" in t["tokens"] and t["ids"][0] == 2
    assert "<start_of_turn>" not in t["decoded_skip_special"] and "<extra_id_0>" in t["decoded_skip_special"]
    assert t["padding_side"] == "left" and t["batch"][1][0][0] == 0 and t["batch"][0][0][0] == 0  # left padding, pad id 0


@pytest.mark.parametrize("name", list(MODELS))
def test_tf4_misreads_the_folder_without_make_portable(name, tf4, tf5):
    """The fix matters: without it 4.57 cannot load the tokenizer and uses other RoPE settings."""
    old, new = tf4[f"{name}-raw"], tf5[f"{name}-raw"]
    assert "TokenizersBackend" in old.get("tokenizer_error", ""), old.get("tokenizer_error")
    # a theta falls back to 4.57's default; gemma3-linear keeps the default thetas but loses its scaling
    assert rope_thetas(old) != THETAS[name] or old["rope_config"].get("rope_scaling") is None
    assert old["rope_inv_freq"] != new["rope_inv_freq"]
    diff = max(abs(x - y) for ra, rb in zip(old["logits"], new["logits"]) for x, y in zip(ra, rb))
    assert diff > 1e-2, f"{name}: logits agree without make_portable (max diff {diff})"


def test_tf4_needs_the_extra_special_tokens_as_additional_special_tokens(tf4):
    """tf5's list under extra_special_tokens alone breaks 4.57's tokenizer, even with the class fixed."""
    assert "tokenizer_error" in tf4["gemma3-listed"]
    assert "tokenizer_error" not in tf4["gemma3-portable"]
