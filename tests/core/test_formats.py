"""Converters round-trip, and the record id is a stable content hash."""

import json

import pytest

from datagen.core.errors import FieldError
from datagen.core.formats import detect_format, to_record, to_row
from datagen.core.record import Record

ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Continue.", "input": "", "output": "Done.", "system": "Be terse.", "history": [["Hi", "Hello"]]},
    {"instruction": "把这句话翻译成英文。", "input": "你好", "output": "Hello", "category": "translation"},
]
SHAREGPT = [
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
    {"conversations": [{"from": "system", "value": "You are terse."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}, {"from": "human", "value": "and 3+3?"}, {"from": "gpt", "value": "6"}], "id": "abc"},
]
MESSAGES = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]},
]
SEED = [
    {"id": "seed_task_0", "name": "sentiment", "instruction": "Classify the sentiment.", "instances": [{"input": "I love it", "output": "positive"}], "is_classification": True},
    {"id": "seed_task_1", "name": "haiku", "instruction": "Write a haiku about rain.", "instances": [{"input": "", "output": "Soft rain on the roof"}], "is_classification": False},
]


@pytest.mark.parametrize("fmt,rows", [("alpaca", ALPACA), ("sharegpt", SHAREGPT), ("messages", MESSAGES), ("seed", SEED)])
def test_round_trip(fmt, rows):
    for row in rows:
        assert detect_format(row) == fmt
        rec = to_record(row, fmt)
        assert to_row(rec, fmt) == {k: v for k, v in row.items()}
        # and through the record format itself
        again = to_record(json.loads(json.dumps(to_row(rec, "record"))), "record")
        assert again == rec
        assert to_row(again, fmt) == row


def test_cross_format_preserves_conversation():
    rec = to_record(SHAREGPT[1], "sharegpt")
    via_messages = to_record(to_row(rec, "messages"), "messages")
    via_alpaca = to_record(to_row(rec, "alpaca"), "alpaca")
    assert [m.model_dump() for m in via_messages.messages] == [m.model_dump() for m in rec.messages]
    assert [m.model_dump() for m in via_alpaca.messages] == [m.model_dump() for m in rec.messages]
    assert via_messages.id == rec.id == via_alpaca.id


def test_id_is_content_hash_and_follows_edits():
    a = to_record(ALPACA[1], "alpaca")
    b = to_record(dict(ALPACA[1], category="x"), "alpaca")
    assert a.id == b.id and len(a.id) == 16
    edited = a.with_answer("Salut")
    assert edited.id != a.id
    # a stale id in the input is replaced by the true hash
    row = to_row(a, "record")
    row["id"] = "deadbeef"
    assert to_record(row, "record").id == a.id


def test_alpaca_input_joins_instruction():
    rec = to_record(ALPACA[1], "alpaca")
    assert rec.instruction == "Translate to French.\n\nGood morning"
    assert rec.response == "Bonjour"


@pytest.mark.parametrize(
    "row,fmt,field,code",
    [
        ({"instruction": "x"}, "alpaca", "output", "missing_field"),
        ({"instruction": "x", "output": 3}, "alpaca", "output", "wrong_type"),
        ({"instruction": "x", "output": "y", "inptu": "z"}, "alpaca", "inptu", "unknown_field"),
        ({"conversations": [{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}]}, "sharegpt", "conversations[1].from", "unknown_role"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "sharegpt", "conversations", "no_assistant_turn"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}, "messages", "messages[1]", "invalid_field"),
        ({"messages": [{"role": "user", "content": ["x"]}, {"role": "assistant", "content": "y"}]}, "messages", "messages[0].content[0]", "invalid_field"),
        ({"instruction": "x", "instances": []}, "seed", "instances", "invalid_field"),
        ({"id": "1", "messages": [{"role": "bot", "content": "x"}], "source": "s"}, "record", "messages[0].role", "unknown_role"),
    ],
)
def test_field_errors_name_the_field(row, fmt, field, code):
    with pytest.raises(FieldError) as ei:
        to_record(row, fmt)
    assert ei.value.field == field
    assert ei.value.code == code


def test_prompt_only_allowed_when_asked():
    rec = to_record({"instruction": "Write a limerick."}, "alpaca", require_answer=False)
    assert not rec.has_answer and rec.response == ""
    assert to_row(rec, "alpaca") == {"instruction": "Write a limerick.", "input": ""}


def test_openai_text_parts():
    rec = to_record({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, {"role": "assistant", "content": "c"}]}, "messages")
    assert rec.instruction == "ab"


def test_record_rejects_system_in_middle():
    with pytest.raises(Exception):
        Record(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
