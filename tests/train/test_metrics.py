"""Throughput accounting: real tokens against slots, per log line and over the run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from train.metrics import ThroughputCallback, count_tokens, peak_flops  # noqa: E402


def test_count_tokens_reads_the_mask_else_the_padding():
    ids = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])
    assert count_tokens({"input_ids": ids}, pad_id=0) == (3, 8)
    assert count_tokens({"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])}, pad_id=0) == (4, 8)
    assert count_tokens({"input_ids": ids}, pad_id=None) == (8, 8)  # packed rows: no padding at all


def test_peak_flops_by_name_or_override():
    assert peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989e12, rel=0.5)  # a known GPU has a peak
    assert peak_flops("Some Unknown Accelerator") is None
    assert peak_flops("anything", override_tflops=100) == 100e12


def test_a_log_line_gets_tokens_per_second_and_padding_waste():
    cb = ThroughputCallback(n_params=1000, pad_id=0, peak=None)
    args, state = SimpleNamespace(world_size=1), SimpleNamespace(log_history=[{"loss": 1.0}])
    cb.on_train_begin(args, state, None)
    cb.observe({"input_ids": torch.tensor([[5, 6, 0, 0]])})
    cb._seconds = 2.0  # as if the step took two seconds
    logs = {"loss": 1.0}
    cb.on_log(args, state, None, logs=logs)
    assert logs["tokens_per_s"] == 1.0 and logs["padding_waste"] == 0.5
    assert state.log_history[-1]["tokens_per_s"] == 1.0  # the Trainer's copy too
    cb.on_log(args, state, None, logs={"eval_loss": 2.0})  # not a training line: nothing counted
    assert cb.summary() == {"train_tokens": 2, "padding_waste": 0.5, "tokens_per_s": 1.0}


def test_log_lines_keep_numbers_as_numbers(tmp_path, capsys):
    import json

    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from train.metrics import CountingTrainer, log_line

    line = log_line({"loss": 0.98187, "learning_rate": 2e-4, "epoch": 1.0, "step": 3, "total_flos": 1e12, "mfu": float("nan")})
    assert line.startswith('{"loss": 0.9819, "learning_rate": 0.0002, "epoch": 1.0, "step": 3')
    assert "total_flos" not in line and "'" not in line
    for tqdm in (True, False):  # with a progress bar, and without
        args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=not tqdm)
        trainer = CountingTrainer(model=torch.nn.Linear(2, 2), args=args)
        printers = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, (PrinterCallback, ProgressCallback))]
        assert len(printers) == 1 and type(printers[0]) not in (PrinterCallback, ProgressCallback)
        assert isinstance(Trainer(model=torch.nn.Linear(2, 2), args=args).callback_handler.callbacks[-1], (PrinterCallback, ProgressCallback))
    state = trainer.state
    printers[0].on_log(args, state, trainer.control, logs={"loss": 0.98187, "grad_norm": 1.5})
    assert json.loads(capsys.readouterr().out) == {"loss": 0.9819, "grad_norm": 1.5}
