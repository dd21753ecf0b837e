"""`train run / merge / eval / config`: configuration, errors, and real training on the embedded model.

The slow tests train LoRA on SmolLM2-135M for a few steps on 8 tiny records (fp32, CPU, rows of at
most 128 tokens). One training run (module fixture) serves the loss, merge, stop-token and eval
tests; resume (a SIGKILL after a checkpoint) and the two-process gloo run train on their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from datagen.core.errors import UserError
from train.config import TrainConfig, build_config

TINY = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Add 2 and 3.", "2 + 3 = 5."),
    ("Name a primary color.", "Red is a primary color."),
    ("Translate 'good morning' to Spanish.", "Buenos días."),
    ("Give the opposite of 'hot'.", "Cold."),
    ("What is 10 divided by 2?", "10 divided by 2 is 5."),
    ("Write the word 'cat' backwards.", "tac"),
    ("Which planet is known as the red planet?", "Mars is known as the red planet."),
]
COMMON = ["--max-length", "128", "--batch-size", "4", "--set", "logging_steps=1", "--set", "warmup_ratio=0"]


def run_train(*args: str, timeout: float = 600, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATAGEN_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = (launcher or [sys.executable, "-m"]) + ["train.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "input": "", "output": a}) + "\n" for q, a in TINY), encoding="utf-8")
    return path


# -- configuration (fast) ------------------------------------------------------------------------
def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: lora\nlearning_rat: 1.0e-4\n")
    with pytest.raises(UserError, match=r"r\.yaml: unknown key 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        build_config(recipe)
    with pytest.raises(UserError, match=r"--set: unknown key 'lr' \(did you mean 'learning_rate'\?\)"):
        build_config(None, ["lr=1e-4"])


def test_precedence_defaults_recipe_set_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dora\nlearning_rate: 1.0e-3\nmax_steps: 7\npacking: false\n")
    cfg = build_config(recipe, ["learning_rate=5e-4", "lora_target_modules=[q_proj, v_proj]"], {"max_steps": 9, "seed": None})
    assert cfg.method == "dora"  # recipe over default
    assert cfg.learning_rate == 5e-4  # --set over recipe
    assert cfg.max_steps == 9  # flag over recipe; None means "not given"
    assert cfg.packing is False and cfg.seed == TrainConfig().seed
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert build_config(None, ["eval_split=0.1"]).eval_split == 0.1
    assert build_config(None, [], {"eval_split": "gold.jsonl"}).eval_split == "gold.jsonl"


def test_limit_flag_reads_only_the_first_k_records(tiny_data):
    from train.cli import build_parser, config_flags
    from train.run import read_data

    args = build_parser().parse_args(["run", "--data", str(tiny_data), "--out", "unused", "--limit", "3"])
    cfg = build_config(args.config, args.sets, config_flags(args))
    assert cfg.limit == 3
    [(records, problems)] = read_data(cfg, str(tiny_data))
    assert [r.instruction for r in records] == [q for q, _ in TINY[:3]] and not problems
    r = run_train("run", "--data", tiny_data, "--out", "unused", "--limit", "0")
    assert r.returncode == 2 and "limit" in r.stderr and "Traceback" not in r.stderr


def test_bad_values_name_key_and_source(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lora_r: 0\n")
    with pytest.raises(UserError, match=r"r\.yaml: 'lora_r'.*greater than or equal to 1"):
        build_config(recipe)
    with pytest.raises(UserError, match="command line: 'method'"):
        build_config(None, [], {"method": "qlora2"})


def test_bundled_recipes_validate():
    recipes = sorted((ROOT / "train" / "recipes").glob("*.yaml"))
    assert {p.stem for p in recipes} >= {"lora-smollm2-cpu", "full", "lora", "dora", "qlora"}
    for p in recipes:
        build_config(p)
    assert build_config("lora-smollm2-cpu").max_steps  # found by name too


def test_help_imports_no_torch():
    code = """
import sys
from train.cli import main
for argv in (["--help"], ["run", "--help"], ["eval", "--help"], ["merge", "--help"], ["config", "--help"]):
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
heavy = [m for m in ("torch", "transformers", "peft", "numpy") if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_bad_config_and_missing_data_exit_2_without_traceback(tiny_data, tmp_path):
    r = run_train("run", "--data", tiny_data, "--out", tmp_path / "o", "--set", "packin=false")
    assert r.returncode == 2
    assert "unknown key 'packin' (did you mean 'packing'?)" in r.stderr and "Traceback" not in r.stderr
    r = run_train("run", "--data", tmp_path / "missing.jsonl", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_qlora_on_cpu_is_a_clear_error(tiny_data, tmp_path):
    start = time.perf_counter()
    r = run_train("run", "--data", tiny_data, "--out", tmp_path / "o", "--method", "qlora")
    assert r.returncode == 2, r.stderr
    assert "qlora needs" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()
    assert time.perf_counter() - start < 30  # stopped before loading a model


# -- real training (slow) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "lora"
    r = run_train("run", "--data", tiny_data, "--out", out, *COMMON, "--max-steps", "6", "--lr", "1e-3", "--save-steps", "6")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
def test_lora_steps_lower_the_loss_and_save_everything(trained):
    history = json.loads((trained / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.8, losses
    steps = [h for h in history if "tokens_per_s" in h]
    assert steps and all(0 <= h["padding_waste"] < 1 for h in steps)
    manifest = json.loads((trained / "train_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["global_step"] == 6
    assert manifest["runtime"]["loss_normalized_by_tokens"] is True
    assert manifest["runtime"]["bf16"] is False and manifest["runtime"]["attn_implementation"] == "sdpa"
    assert len(manifest["inputs"]["data"]["sha256"]) == 64
    assert manifest["data"]["train_samples"] == len(TINY) and manifest["batches"]["mode"] == "packed"
    assert (trained / "adapter_model.safetensors").is_file() and (trained / "metrics.json").is_file()
    # peft's loader reads the base's absolute path; train merge / eval read the name the user gave
    from datagen.llm.models import resolve_model

    assert json.loads((trained / "adapter_config.json").read_text())["base_model_name_or_path"] == str(resolve_model("smollm2").resolve())
    assert json.loads((trained / "datagen_base.json").read_text()) == {"model": "smollm2"}


@pytest.mark.slow
def test_saved_tokenizer_and_generation_config_stop_at_end_of_turn(trained):
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(trained)
    assert tok.eos_token == "<|im_end|>"
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    gen = GenerationConfig.from_pretrained(trained)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert eos[0] == eot


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft reading transformers
def test_merge_gives_the_logits_of_base_plus_adapter(trained, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from datagen.llm.models import resolve_model

    merged_dir = tmp_path / "merged"
    r = run_train("merge", "--adapter", trained, "--out", merged_dir, "--dtype", "fp32")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()

    tok = AutoTokenizer.from_pretrained(merged_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "Add 2 and 3."}], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32).eval()
    with torch.inference_mode():
        base_logits = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(trained)).eval()
        adapter_logits = adapted(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
        merged_logits = merged(ids).logits
        assert (adapter_logits - base_logits).abs().max() > 1e-2  # the adapter did learn something
        assert torch.allclose(merged_logits, adapter_logits, atol=1e-3, rtol=1e-4), (merged_logits - adapter_logits).abs().max()
        # generation stops at the end of the turn, well before the token limit
        out = merged.generate(ids, max_new_tokens=48, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    assert new[-1] == tok.convert_tokens_to_ids("<|im_end|>") and len(new) < 48, tok.decode(new)


@pytest.mark.slow
def test_eval_writes_json_with_finite_loss(trained, tiny_data, tmp_path):
    out = tmp_path / "results.json"
    r = run_train("eval", "--model", trained, "--data", tiny_data, "--out", out, "--n-prompts", "2", "--max-new-tokens", "12",
                  "--compare-base")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    # behaviour of the trained and of the base model on the same prompts, each answer's defects listed
    from train.behaviour import KINDS

    for doc in (res["behaviour"], res["base_behaviour"]):
        assert doc["answers"] == 2 and set(doc["rates"]) == set(KINDS) and 0 <= doc["defect_rate"] <= 1
    assert res["base_behaviour"]["model"] == "smollm2"
    for g in res["generations"]:
        assert isinstance(g["stopped"], bool) and isinstance(g["defects"], dict) and isinstance(g["base_answer"], str)
        assert ("no_stop" in g["defects"]) == (not g["stopped"])
    assert res["behaviour"]["defect_rate"] == sum(bool(g["defects"]) for g in res["generations"]) / 2
    assert res["loss"] > 0 and res["loss"] < 20 and res["perplexity"] == pytest.approx(2.718281828 ** res["loss"])
    assert res["tokens"] > 0 and res["samples"] == len(TINY)
    # per-item losses, in input order, whose token-weighted mean is the loss: checked by computing
    # one item alone (the batched, padded computation must give the same number)
    per = res["per_sample_loss"]
    assert len(per) == len(TINY) and all(x > 0 for x in per)
    one = tmp_path / "one.jsonl"
    one.write_text(Path(tiny_data).read_text().splitlines()[1] + "\n")
    r = run_train("eval", "--model", trained, "--data", one, "--out", tmp_path / "one.json", "--n-prompts", "1", "--max-new-tokens", "4")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "one.json").read_text())["loss"] == pytest.approx(per[1], abs=1e-4)
    assert len(res["generations"]) == 2 and all(isinstance(g["answer"], str) for g in res["generations"])


@pytest.mark.slow
def test_two_process_gloo_run(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()), "-m"]
    r = run_train("run", "--data", tiny_data, "--out", out, *COMMON, "--batch-size", "2", "--max-steps", "2", launcher=torchrun)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((out / "train_manifest.json").read_text())
    assert manifest["runtime"]["world_size"] == 2 and manifest["global_step"] == 2
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_checkpoint_as_if_never_interrupted(tiny_data, tmp_path):
    # a log line every 3 steps (and the first) and a checkpoint every 2: the line at step 3
    # averages steps 2-3, across the kill after checkpoint-2
    common = ["--data", tiny_data, *COMMON, "--set", "logging_steps=3", "--max-steps", "4", "--save-steps", "2"]
    ref = tmp_path / "ref"
    r = run_train("run", "--out", ref, *common)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "train.cli", "run", "--out", str(out), *map(str, common)], cwd=ROOT,
                            env={**os.environ, "DATAGEN_PROGRESS": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = out / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 400
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert state.exists(), err[-3000:]
    assert not (out / "train_manifest.json").exists(), "the run finished before it could be killed"

    r = run_train("run", "--out", out, *common)  # without --resume: refused, nothing overwritten
    assert r.returncode == 2 and "--resume" in r.stderr
    r = run_train("run", "--out", out, *common, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads((out / "train_manifest.json").read_text())
    assert manifest["runtime"]["resumed_from"].endswith("checkpoint-2")
    assert manifest["global_step"] == 4

    def losses(run: Path) -> list:
        return [(h["step"], h.get("loss"), h.get("train_loss")) for h in json.loads((run / "log_history.json").read_text())
                if "loss" in h or "train_loss" in h]

    assert [s for s, loss, _ in losses(ref) if loss is not None] == [1, 3]
    assert losses(out) == losses(ref)  # exactly: the resumed loss sums are the uninterrupted ones
    assert json.loads((out / "metrics.json").read_text())["train_loss"] == json.loads((ref / "metrics.json").read_text())["train_loss"]
    assert (out / "adapter_model.safetensors").read_bytes() == (ref / "adapter_model.safetensors").read_bytes()


def test_a_second_train_run_on_a_busy_folder_is_refused(tiny_data, tmp_path):
    from datagen.core.rundir import DirLock

    out = tmp_path / "busy"
    out.mkdir()
    code = "import sys, time; from datagen.core.rundir import DirLock; from pathlib import Path; DirLock.acquire(Path(sys.argv[1]), 'train run'); print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_train("run", "--data", tiny_data, "--out", out, *COMMON, "--max-steps", "1")
        assert r.returncode == 2 and f"in use by pid {holder.pid}" in r.stderr, r.stderr[-2000:]
        (out / "checkpoint-7").mkdir()
        (out / "checkpoint-7" / "trainer_state.json").write_text("{}")
        r = run_train("run", "--data", tiny_data, "--out", out, *COMMON, "--max-steps", "1", "--force")
        assert r.returncode == 2 and "in use by pid" in r.stderr
        assert (out / "checkpoint-7" / "trainer_state.json").exists()  # --force cleared nothing of the busy run
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert DirLock.acquire(out, "test").fd >= 0  # the holder is gone: free again


@pytest.mark.slow
def test_trained_token_loss_equals_the_models_own_loss_and_gradients():
    import torch
    from transformers import AutoModelForCausalLM

    from datagen.llm.models import resolve_model
    from train.loss import trained_token_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2"), dtype=torch.float32)
    model.config.use_cache = False
    ids = torch.randint(10, 1000, (2, 40))
    labels = ids.clone()
    labels[:, :15] = -100  # a prompt
    labels[1, 30:] = -100  # padding
    # two packed samples in row 0: positions restart at 20
    position_ids = torch.cat([torch.arange(20), torch.arange(20)]).repeat(2, 1)
    inputs = {"input_ids": ids, "labels": labels, "position_ids": position_ids}
    n = int((labels[:, 1:] != -100).sum())

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in (model.model.layers[0].self_attn.q_proj.weight, model.model.embed_tokens.weight)]

    own = model(**inputs, num_items_in_batch=n, use_cache=False).loss
    own_grads = grads(own)
    mine = trained_token_loss(model, inputs, num_items_in_batch=n, chunk_tokens=7)  # 7 chunks of 7 tokens and a rest
    assert mine.item() == pytest.approx(own.item(), rel=1e-5)
    for a, b in zip(grads(mine), own_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # evaluation: no checkpointing, the same value
        assert trained_token_loss(model, inputs, num_items_in_batch=n).item() == pytest.approx(own.item(), rel=1e-5)


@pytest.mark.slow
def test_a_run_that_cannot_fit_is_refused_or_adapted_before_the_first_step(tiny_data, tmp_path):
    from train.memory import available_bytes

    if available_bytes() is None:
        pytest.skip("no /proc/meminfo")
    # 64 rows of 16,384 tokens per forward pass: about 2 TB of activations by the estimate
    big = ["--max-length", "16384", "--batch-size", "64", "--max-steps", "1"]
    out = tmp_path / "refused"
    r = run_train("run", "--data", tiny_data, "--out", out, *big, "--set", "memory_check=refuse")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "would need about" in r.stderr and "(the same rows per optimizer step)" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not out.exists()  # refused before any work: nothing left behind
    # nothing fits (one row of a million tokens, checkpointed): refused even when adapting
    r = run_train("run", "--data", tiny_data, "--out", out, "--max-length", "1048576", "--batch-size", "1", "--max-steps", "1")
    assert r.returncode == 2 and "not even one row" in r.stderr and not out.exists(), r.stderr[-2000:]
    # the default adapts: the same 64 x 4 rows per step, fewer per pass (checkpointed when one plain
    # row does not fit this machine); it says so and records it
    out = tmp_path / "adapted"
    r = run_train("run", "--data", tiny_data, "--out", out, *big, "--set", "logging_steps=1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "memory: this run would need about" in r.stderr and "instead" in r.stderr
    manifest = json.loads((out / "train_manifest.json").read_text())
    cfg, est = manifest["config"], manifest["data"]["memory_estimate"]
    assert est["adapted_from"]["per_device_batch_size"] == 64 and est["adapted_from"]["gradient_accumulation_steps"] == 4
    assert cfg["per_device_batch_size"] < 64 and cfg["per_device_batch_size"] * cfg["gradient_accumulation_steps"] == 256
    assert est["total_gb"] < est["available_gb"] < est["adapted_from"]["total_gb"]


def test_memory_fit_keeps_the_rows_per_step_and_checkpoints_only_when_needed():
    from transformers import LlamaConfig

    from train.memory import GB, Saved, chunk_tokens, estimate, fit

    assert chunk_tokens(None, 49_152) == 1024 and chunk_tokens(None, 262_144) == 256 and chunk_tokens(512, 262_144) == 512
    assert chunk_tokens(None, 10_000_000) == 64
    cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, vocab_size=49_152)
    n = 135_000_000
    shape = dict(length=1024, loss_chunk_tokens=1024, saved=Saved(2_084_273))  # what the probe measures on SmolLM2
    eight = estimate(cfg, n, 5_000_000, rows=8, gradient_checkpointing=False, **shape).total
    two = estimate(cfg, n, 5_000_000, rows=2, gradient_checkpointing=False, **shape).total
    # a budget between the two: the most rows per pass that fit, the same 8 rows per step, no checkpointing
    budget = (eight + two) / 2
    found = fit(cfg, n, 5_000_000, rows=8, accumulation=1, gradient_checkpointing=False, budget=budget, **shape)
    assert found.rows in (2, 4) and found.rows * found.accumulation == 8 and not found.gradient_checkpointing
    assert found.estimate.total <= budget < estimate(cfg, n, 5_000_000, rows=found.rows * 2, gradient_checkpointing=False, **shape).total
    # below one plain row: checkpointing
    one = estimate(cfg, n, 5_000_000, rows=1, gradient_checkpointing=False, **shape).total
    found = fit(cfg, n, 5_000_000, rows=8, accumulation=1, gradient_checkpointing=False, budget=one - 0.01 * GB, **shape)
    assert found.gradient_checkpointing and found.rows * found.accumulation == 8
    assert fit(cfg, n, 5_000_000, rows=8, accumulation=1, gradient_checkpointing=False, budget=1 * GB, **shape) is None
    assert found.flags().startswith("--set gradient_checkpointing=true --batch-size")


def test_saved_fits_the_polynomial_through_its_points():
    from train.memory import Saved

    exact = Saved(1_000.0, 0.5, 7_000.0)
    fitted = Saved.fitted([(n, exact.per_row(n) + exact.fixed) for n in (64, 128, 256)])
    assert fitted.linear == pytest.approx(1_000.0) and fitted.quadratic == pytest.approx(0.5) and fitted.fixed == pytest.approx(7_000.0)
    line = Saved.fitted([(64, 64_000.0 + 10), (128, 128_000.0 + 10)])
    assert line.linear == pytest.approx(1_000.0) and line.quadratic == 0 and line.fixed == pytest.approx(10)
    assert Saved.fitted([(10, 5_000.0)]).per_row(20) == pytest.approx(10_000.0)
    # a slightly concave set of points (rounding) is a line, never a negative square term
    concave = Saved.fitted([(64, 64_000.0), (128, 128_100.0), (256, 256_000.0)])
    assert concave.quadratic == 0 and concave.linear > 0


@pytest.mark.slow
def test_probe_measures_the_adapters_activations_and_leaves_the_run_as_it_was():
    import torch

    from train.config import TrainConfig
    from train.memory import probe
    from train.model import load_for_training, resolve_runtime

    def saved_with(dropout: float):
        cfg = TrainConfig(model="smollm2", lora_dropout=dropout)
        model, _ = load_for_training(cfg, resolve_runtime(cfg))
        model.eval()
        state = torch.random.get_rng_state()
        found = probe(model, length=100, loss_chunk_tokens=1024)
        assert torch.equal(state, torch.random.get_rng_state())  # the run's dropout draws are untouched
        assert not model.training
        assert all(p.grad is None for p in model.parameters())
        return found

    plain, dropped = saved_with(0.0), saved_with(0.05)
    # 30 layers of 576-wide activations: between 10 and 60 floats of the width per layer and token
    assert 30 * 576 * 4 * 10 < plain.per_row(1) < 30 * 576 * 4 * 60
    # adapter dropout keeps a copy of each adapted layer's input: more kept per token
    assert dropped.per_row(100) > 1.3 * plain.per_row(100)
