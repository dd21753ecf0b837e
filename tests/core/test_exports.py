"""Exports for trainers: each file is loaded by the library it is meant for.

* ``datasets.load_dataset`` reads every export (JSONL, JSON array, Parquet).
* TRL (installed with the dev extra) renders the prompt-completion rows with its own
  ``trl.data_utils.apply_chat_template``, as ``SFTTrainer`` does before tokenizing.
* LLaMA-Factory is not installed: ``pip install --dry-run llamafactory`` (0.9.5) would replace this
  environment's torch (2.14.1), transformers (5.6.0, its ceiling), datasets (4.0.0), peft and
  accelerate, and pull gradio, so it cannot share the environment the trainer runs in. Its converter contract is reproduced below from its
  documentation (data/README.md) and ``src/llamafactory/data/converter.py``: a dataset is loaded
  with ``datasets`` by file extension, ``dataset_info.json`` names the columns and tags, and a
  column the entry does not declare is never read.
"""

from __future__ import annotations

import json

import pytest

from datagen.core.errors import FieldError
from datagen.core.exports import alpaca_merged, llamafactory_entry, to_prompt_completion, to_prompt_completion_text
from datagen.core.formats import to_record, to_row

ALPACA = [
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {"instruction": "Continue.", "input": "", "output": "Done.", "system": "Be terse.", "history": [["Hi", "Hello"]]},
]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
    {"conversations": [{"from": "system", "value": "You are terse."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
                       {"from": "human", "value": "and 3+3?"}, {"from": "gpt", "value": "6"}]},
]
MESSAGES = [{"role": r, "content": c} for r, c in (("system", "S"), ("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"))]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def load(path):
    from datasets import load_dataset

    builder = {".parquet": "parquet"}.get(path.suffix, "json")
    return load_dataset(builder, data_files=str(path), split="train")


# -- LLaMA-Factory's converter contract -------------------------------------------------------------
def lf_alpaca(example, columns):
    """LLaMA-Factory's AlpacaDatasetConverter: history pairs, then ``prompt`` and ``query`` joined by
    one newline as the user turn, ``response`` as the answer; ``system`` only when declared."""
    prompt = []
    if "history" in columns and isinstance(example[columns["history"]], list):
        for old_prompt, old_response in example[columns["history"]]:
            prompt += [{"role": "user", "content": old_prompt}, {"role": "assistant", "content": old_response}]
    query = [example[columns[k]] for k in ("prompt", "query") if k in columns and example[columns[k]]]
    prompt.append({"role": "user", "content": "\n".join(query)})
    response = [{"role": "assistant", "content": example[columns["response"]]}] if isinstance(example.get(columns.get("response")), str) else []
    system = example[columns["system"]] if "system" in columns else ""
    return system or "", prompt, response


def lf_sharegpt(example, columns, tags):
    """LLaMA-Factory's SharegptDatasetConverter: a first turn tagged ``system_tag`` is the system
    prompt; then odd turns must be the user's, even turns the assistant's; the last is the answer."""
    role = {tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system"}
    messages = example[columns["messages"]]
    system = ""
    if tags.get("system_tag") and messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        system, messages = messages[0][tags["content_tag"]], messages[1:]
    elif "system" in columns:
        system = example[columns["system"]]
    accept = ((tags["user_tag"],), (tags["assistant_tag"],))
    aligned = []
    for i, m in enumerate(messages):
        assert m[tags["role_tag"]] in accept[i % 2], f"LLaMA-Factory drops this example: invalid role tag in {messages}"
        aligned.append({"role": role[m[tags["role_tag"]]], "content": m[tags["content_tag"]]})
    assert len(aligned) % 2 == 0, "LLaMA-Factory drops this example: invalid message count"
    return system, aligned[:-1], aligned[-1:]


def as_lf(rec):
    msgs = [m.model_dump() for m in rec.messages]
    system = msgs.pop(0)["content"] if msgs[0]["role"] == "system" else ""
    return system, msgs[:-1], msgs[-1:]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_alpaca_export_reads_in_llamafactory_as_declared(cli, tmp_path, suffix):
    src = write_jsonl(tmp_path / "in.jsonl", ALPACA)
    out = tmp_path / "lf" / f"train{suffix}"
    r = cli("convert", "--input", src, "--to", "alpaca", "--out", out)
    assert r.returncode == 0, r.stderr
    info = json.loads((out.parent / "dataset_info.json").read_text())
    entry = info["train"]
    assert entry == {"file_name": out.name, "formatting": "alpaca",
                     "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}}
    rows = load(out.parent / entry["file_name"])
    assert len(rows) == 3
    for row, src_row in zip(rows, ALPACA):
        want = as_lf(to_record(src_row, "alpaca"))
        got = lf_alpaca(row, entry["columns"])
        if src_row["input"]:  # LLaMA-Factory joins instruction and input with one newline, the record with a blank line
            assert got[1][-1]["content"] == f"{src_row['instruction']}\n{src_row['input']}" != want[1][-1]["content"]
            got[1][-1]["content"] = want[1][-1]["content"]
        assert got == want


def test_merge_input_gives_llamafactory_the_records_prompt(cli, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ALPACA)
    out = tmp_path / "train.jsonl"
    r = cli("convert", "--input", src, "--to", "alpaca", "--out", out, "--merge-input")
    assert r.returncode == 0, r.stderr
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["train"]
    for row, src_row in zip(load(out), ALPACA):
        rec = to_record(src_row, "alpaca")
        assert lf_alpaca(row, entry["columns"]) == as_lf(rec)
        assert row["input"] == "" and to_record({k: v for k, v in row.items() if v is not None}, "alpaca").id == rec.id


def test_alpaca_columns_declared_only_when_present():
    recs = [to_record(r, "alpaca") for r in ALPACA[:2]]
    assert llamafactory_entry("alpaca", "a.jsonl", recs)["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    assert alpaca_merged(recs[0]) == {"instruction": "Translate to French.\n\nGood morning", "input": "", "output": "Bonjour"}


def test_sharegpt_export_reads_in_llamafactory(cli, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", SHAREGPT)
    out = tmp_path / "chat.json"
    r = cli("convert", "--input", src, "--to", "sharegpt", "--out", out)
    assert r.returncode == 0, r.stderr
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["chat"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "conversations"}
    for row, src_row in zip(load(out), SHAREGPT):
        assert lf_sharegpt(row, entry["columns"], entry["tags"]) == as_lf(to_record(src_row, "sharegpt"))


def test_dataset_info_keeps_other_entries_and_refuses_a_damaged_one(cli, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", SHAREGPT)
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"mine": {"file_name": "mine.json"}, "chat": {"file_name": "other.json"}}))
    r = cli("convert", "--input", src, "--to", "sharegpt", "--out", tmp_path / "chat.jsonl")
    assert r.returncode == 0, r.stderr
    doc = json.loads(info.read_text())
    assert doc["mine"] == {"file_name": "mine.json"} and doc["chat"] == {"file_name": "other.json"}
    assert doc["chat.jsonl"]["file_name"] == "chat.jsonl"  # the stem is taken by another file
    info.write_text("{not json")
    r = cli("convert", "--input", src, "--to", "alpaca", "--out", tmp_path / "new.jsonl")
    assert r.returncode == 2 and "dataset_info.json" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "new.jsonl").exists() and info.read_text() == "{not json"
    r = cli("convert", "--input", src, "--to", "alpaca", "--out", tmp_path / "new.jsonl", "--no-dataset-info")
    assert r.returncode == 0 and info.read_text() == "{not json"


# -- TRL prompt-completion ------------------------------------------------------------------------------
def test_prompt_completion_shapes():
    rec = to_record({"messages": MESSAGES}, "messages")
    row = to_prompt_completion(rec)
    assert row == {"prompt": MESSAGES[:-1], "completion": MESSAGES[-1:]}
    single = to_record(ALPACA[0], "alpaca")
    assert to_prompt_completion_text(single) == {"prompt": "Translate to French.\n\nGood morning", "completion": "Bonjour"}
    with pytest.raises(FieldError, match="system message"):
        to_prompt_completion_text(rec)
    with pytest.raises(FieldError, match="2 user turns"):
        to_prompt_completion_text(to_record(SHAREGPT[1], "sharegpt").with_messages(rec.messages[1:]))
    unanswered = to_record({"messages": MESSAGES[:4]}, "messages")
    with pytest.raises(FieldError, match="does not end with an assistant turn") as e:
        to_prompt_completion(unanswered)
    assert e.value.code == "no_final_answer"


def test_plain_prompt_completion_refuses_multi_turn_with_its_line(cli, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ALPACA)
    out = tmp_path / "pc.jsonl"
    r = cli("convert", "--input", src, "--to", "prompt-completion-text", "--out", out)
    assert r.returncode == 2 and "in.jsonl:3" in r.stderr and "system message" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    r = cli("convert", "--input", src, "--to", "prompt-completion-text", "--out", out, "--on-error", "skip")
    assert r.returncode == 0, r.stderr
    assert [row["completion"] for row in load(out)] == ["Bonjour", "Eat well, sleep, move."]
    skipped = [json.loads(line) for line in (tmp_path / "pc.rejected.jsonl").read_text().splitlines()]
    assert [(s["reason"], s["location"].endswith("in.jsonl:3")) for s in skipped] == [("not_single_turn", True)]


@pytest.mark.slow
def test_prompt_completion_renders_in_trl_as_our_trainer_renders(cli, tmp_path):
    pytest.importorskip("trl")
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    from datagen.llm.models import resolve_model
    from train.data import assistant_spans

    recs = [to_record(row, "alpaca") for row in ALPACA] + [to_record(row, "sharegpt") for row in SHAREGPT]
    src = write_jsonl(tmp_path / "in.jsonl", [to_row(rec, "messages") for rec in recs])
    out = tmp_path / "pc.parquet"
    r = cli("convert", "--input", src, "--to", "prompt-completion", "--out", out)
    assert r.returncode == 0, r.stderr
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2"))
    rows = load(out)
    assert len(rows) == len(recs)
    for row, rec in zip(rows, recs):
        assert is_conversational(row)
        rendered = apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tokenizer)
        text, spans = assistant_spans(tokenizer, rec.messages)
        # TRL trains on the completion: exactly the final answer our trainer's loss mask covers
        assert rendered["prompt"] + rendered["completion"] == text
        assert len(rendered["prompt"]) == spans[-1][0]
