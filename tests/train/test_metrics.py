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
