"""``train run`` reads what datagen reads: a ``save_to_disk`` folder and its split, with ``--map``
and ``--roles``; the manifest's digest covers the folder's files."""

import pytest

from datagen.core.errors import UserError
from train.config import TrainConfig
from train.run import _check_data_paths, read_data

ROWS = [{"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."} for i in range(3)]


def test_a_dataset_folder_with_split_and_map(tmp_path):
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}).save_to_disk(str(folder))
    cfg = TrainConfig(data_split="train", data_map="question=instruction,answer=output")
    _check_data_paths(cfg, str(folder))
    [(records, problems)] = read_data(cfg, str(folder))
    assert [r.response for r in records] == [r["answer"] for r in ROWS] and problems == []
    with pytest.raises(UserError, match="pick one with --split"):
        read_data(TrainConfig(data_map="question=instruction,answer=output"), str(folder))
    with pytest.raises(UserError, match="no such file"):
        _check_data_paths(cfg, str(tmp_path / "missing.jsonl"))


def test_roles_are_renamed(tmp_path):
    import json

    src = tmp_path / "chats.jsonl"
    src.write_text(json.dumps({"conversations": [{"from": "customer", "value": "Hi"}, {"from": "agent", "value": "Hello"}]}) + "\n")
    [(records, _)] = read_data(TrainConfig(data_roles="customer=user,agent=assistant"), str(src))
    assert [m.role for m in records[0].messages] == ["user", "assistant"]


def test_the_reading_flags_are_on_train_run():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "train.cli", "run", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and all(flag in r.stdout for flag in ("--split", "--map", "--roles"))


def test_train_eval_reads_with_split_map_and_roles(tmp_path):
    import datasets

    from train.evaluate import load_prompts

    folder = tmp_path / "gold"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS), "dev": datasets.Dataset.from_list(ROWS[2:])}).save_to_disk(str(folder))
    records = load_prompts(str(folder), 2, split="test", columns="question=instruction,answer=output")
    assert [r.instruction for r in records] == [r["question"] for r in ROWS[:2]]
    with pytest.raises(UserError, match="pick one with --split"):
        load_prompts(str(folder), 2, columns="question=instruction,answer=output")


def test_train_eval_checks_the_gold_set_before_loading_a_model(tmp_path):
    import json
    import subprocess
    import sys

    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"question": "What is 1 plus 1?", "answer": "2"}) + "\n" + json.dumps({"question": "Hi"}) + "\n")
    base = [sys.executable, "-m", "train.cli", "eval", "--model", str(tmp_path / "no-model-here"), "--data", str(gold)]
    r = subprocess.run(base + ["--map", "question=instruction,answer=output"], capture_output=True, text=True, timeout=120)
    # the second row is refused, located, before the (missing) model is looked at
    assert r.returncode == 2 and "gold.jsonl:2" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "train.cli", "eval", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and all(flag in r.stdout for flag in ("--split", "--map", "--roles"))
