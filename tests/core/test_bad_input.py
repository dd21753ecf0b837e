"""Every kind of bad input names the file, the line and the field, exits 2 and writes nothing;
``--on-error skip`` routes the bad rows to rejected.jsonl and carries on."""

import json

import pytest

from conftest import DATA

BAD = DATA / "bad"

CASES = [
    # file, line, field (None: the line itself), words expected in the message
    ("malformed_json.jsonl", 2, None, "malformed JSON"),
    ("misspelt_field.jsonl", 2, "instrution", "did you mean 'instruction'"),
    ("misspelt_nested.jsonl", 2, "conversations[0].valu", "did you mean 'value'"),
    ("missing_field.jsonl", 2, "output", "missing required field"),
    ("wrong_type.jsonl", 2, "output", "expected a string, got int"),
    ("wrong_type_array.json", 3, "output", "expected a string, got array"),
    ("empty.jsonl", 1, None, "file is empty"),
    ("blank_lines_only.jsonl", 1, None, "file is empty"),
    ("not_utf8.jsonl", 2, None, "not valid UTF-8"),
    ("unknown_role_sharegpt.jsonl", 2, "conversations[1].from", "unknown role 'bot'"),
    ("unknown_role_messages.jsonl", 2, "messages[1].role", "unknown role 'bot'"),
    ("no_assistant_turn.jsonl", 2, "messages", "no assistant turn"),
    ("tool_calls.jsonl", 2, "messages[1].tool_calls", "calls tools"),
    ("ultrachat_turn_not_text.jsonl", 2, "data[1]", "expected a string (turns alternate user, assistant), got int (read as ultrachat"),
    ("prompt_completion_mixed.jsonl", 2, "completion", "must both be strings or both arrays of messages (read as prompt-completion"),
    ("dolly_among_alpaca.jsonl", 2, "output", "(read as alpaca, detected from the first row; this row looks like dolly: --format dolly; or --map response=output)"),
]


@pytest.mark.parametrize("name,line,field,words", CASES)
def test_bad_input_is_located_and_nothing_is_written(cli, tmp_path, name, line, field, words):
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", BAD / name, "--to", "messages", "--out", out)
    assert r.returncode == 2, r.stderr
    msg = r.stderr.strip()
    assert "Traceback" not in msg
    # a JSON array's item is located by its line and its position: data.json:3 (item 2)
    where = f"{BAD / name}:{line}" if name.endswith(".jsonl") else f"{BAD / name}:{line} (item {line - 1})"
    assert where in msg, msg
    if field:
        assert f"field '{field}'" in msg, msg
    assert words in msg, msg
    assert list(tmp_path.iterdir()) == []  # no partial output, no temp file left behind


@pytest.mark.parametrize("name,line", [(c[0], c[1]) for c in CASES if c[0].endswith(".jsonl") and "empty" not in c[0] and "blank" not in c[0]])
def test_skip_routes_bad_rows_to_rejected(cli, tmp_path, name, line):
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", BAD / name, "--to", "messages", "--out", out, "--on-error", "skip")
    assert r.returncode == 0, r.stderr
    good = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(good) == 1  # every corpus file has one good row on line 1
    rejected = [json.loads(x) for x in (tmp_path / "out.rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 1
    rej = rejected[0]
    assert rej["stage"] == "read" and rej["reason"] and rej["evidence"]["error"]
    assert rej["location"].endswith(f"{name}:{line}")
    assert "raw" in rej


def test_distill_rejects_bad_input_before_any_work(cli, tmp_path):
    out = tmp_path / "run"
    r = cli("distill", "--input", BAD / "malformed_json.jsonl", "--out", out, "--llm", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1")
    assert r.returncode == 2
    assert "malformed_json.jsonl:2" in r.stderr
    assert not out.exists()


def test_input_is_never_overwritten(cli, tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    before = src.read_bytes()
    r = cli("convert", "--input", src, "--to", "alpaca", "--out", src)
    assert r.returncode == 2 and "input file" in r.stderr
    assert src.read_bytes() == before
