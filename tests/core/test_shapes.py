"""The shapes of public datasets (Dolly, UltraChat, TRL prompt/completion, prompt-only sets, tool
calls, ShareGPT dumps of other services), ``--map`` / ``--roles``, and the fix each refusal names."""

import json

import pytest

from datagen.core.errors import FieldError, InputError, UserError
from datagen.core.formats import to_row
from datagen.core.io import read_records
from datagen.core.formats import detect_format
from datagen.core.shapes import RowMap, detect, explain, read_row
from test_formats import ALPACA, MESSAGES, SEED, SHAREGPT

DOLLY = {"instruction": "When did Virgin Australia start operating?", "context": "Virgin Australia commenced services on 31 August 2000.",
         "response": "On 31 August 2000.", "category": "closed_qa"}
ULTRACHAT = {"id": "0", "data": ["How do I boil an egg?", "Put it in boiling water for 8 minutes.", "And soft?", "6 minutes."]}
LIMA = {"conversations": ["Can brain cells move?", "Yes, some can migrate.", "How far?", "Long distances, in development."], "source": "stackexchange"}
ULTRACHAT_200K = {"prompt": "How do I boil an egg?", "prompt_id": "ab12",
                  "messages": [{"role": "user", "content": "How do I boil an egg?"}, {"role": "assistant", "content": "8 minutes."}]}
TRL_PLAIN = {"prompt": "The sky is", "completion": " blue."}
TRL_CHAT = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What color is the sky?"}],
            "completion": [{"role": "assistant", "content": "Blue."}]}
# prompt-only sets, as their rows look
KOALA = {"id": "koala_1", "prompt": "Write a haiku about the sea."}
VICUNA = {"question_id": 1, "text": "How can I improve my time management skills?", "category": "generic"}
MT_BENCH = {"question_id": 81, "category": "writing", "turns": ["Compose a travel blog post about Hawaii.", "Rewrite it starting every sentence with A."]}
ARENA_HARD = {"question_id": "q1", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "Explain monads."}]}
WIZARDLM_TEST = {"idx": 1, "Skills": "Math", "Difficulty": 3, "Instruction": "Solve x^2 = 4."}
TRL_PROMPT_ONLY = {"prompt": [{"role": "user", "content": "What color is the sky?"}]}
PROMPTS = [KOALA, VICUNA, MT_BENCH, ARENA_HARD, WIZARDLM_TEST, TRL_PROMPT_ONLY]


def test_detection_is_unchanged_for_the_core_formats_and_one_shape_per_fixture():
    for row in ALPACA + SHAREGPT + MESSAGES + SEED:
        assert detect(row) == detect_format(row)
    shapes = {"dolly": [DOLLY], "ultrachat": [ULTRACHAT, LIMA], "messages": [ULTRACHAT_200K], "prompt-completion": [TRL_PLAIN, TRL_CHAT], "prompt": PROMPTS}
    for fmt, rows in shapes.items():
        assert [detect(r) for r in rows] == [fmt] * len(rows)
    assert detect({"text": "a web page"}) is None  # a pretraining document is no prompt


def test_dolly_context_joins_the_instruction_and_category_is_kept():
    assert detect(DOLLY) == "dolly"
    rec = read_row(DOLLY, "dolly")
    assert rec.instruction == f"{DOLLY['instruction']}\n\n{DOLLY['context']}" and rec.response == DOLLY["response"]
    assert rec.meta["extra"] == {"category": "closed_qa"}
    # exported as alpaca: context is the input, the category travels along
    assert to_row(rec, "alpaca") == {"instruction": DOLLY["instruction"], "input": DOLLY["context"], "output": DOLLY["response"], "category": "closed_qa"}
    assert read_row(dict(DOLLY, context=""), "dolly").instruction == DOLLY["instruction"]


def test_ultrachat_turns_alternate_and_ultrachat_200k_reads_as_messages():
    assert detect(ULTRACHAT) == "ultrachat"
    rec = read_row(ULTRACHAT, "ultrachat")
    assert [m.role for m in rec.messages] == ["user", "assistant", "user", "assistant"] and rec.response == "6 minutes."
    assert rec.meta["extra"] == {"id": "0"}
    assert detect(LIMA) == "ultrachat"  # LIMA: ShareGPT's key, UltraChat's strings
    rec = read_row(LIMA, "ultrachat")
    assert [m.role for m in rec.messages] == ["user", "assistant"] * 2 and rec.meta["extra"] == {"source": "stackexchange"}
    assert detect(ULTRACHAT_200K) == "messages"
    rec = read_row(ULTRACHAT_200K, "messages")
    assert rec.response == "8 minutes." and rec.meta["extra"] == {"prompt": "How do I boil an egg?", "prompt_id": "ab12"}
    with pytest.raises(FieldError) as e:
        read_row({"id": "1", "data": ["q", 3]}, "ultrachat")
    assert e.value.field == "data[1]"


def test_prompt_completion_plain_and_conversational():
    assert detect(TRL_PLAIN) == detect(TRL_CHAT) == "prompt-completion"
    rec = read_row(TRL_PLAIN, "prompt-completion")
    assert [(m.role, m.content) for m in rec.messages] == [("user", "The sky is"), ("assistant", " blue.")]
    rec = read_row(TRL_CHAT, "prompt-completion")
    assert [m.role for m in rec.messages] == ["system", "user", "assistant"] and rec.system == "Be brief."
    for bad, field in [(dict(TRL_CHAT, completion="Blue."), "completion"),
                       (dict(TRL_CHAT, completion=[{"role": "user", "content": "x"}]), "completion[0].role")]:
        with pytest.raises(FieldError) as e:
            read_row(bad, "prompt-completion")
        assert e.value.field == field


@pytest.mark.parametrize("row", PROMPTS, ids=["koala", "vicuna", "mt_bench", "arena_hard", "wizardlm_test", "trl_prompt_only"])
def test_prompt_only_sets_are_read_for_distill_and_refused_elsewhere(row):
    assert detect(row) == "prompt"
    rec = read_row(row, "prompt", require_answer=False)
    assert not rec.has_answer and rec.instruction.strip()
    with pytest.raises(FieldError) as e:
        read_row(row, "prompt")
    assert e.value.code == "no_assistant_turn" and "datagen distill" in e.value.message


def test_prompt_only_keeps_what_it_does_not_read():
    rec = read_row(MT_BENCH, "prompt", require_answer=False)
    assert rec.instruction == MT_BENCH["turns"][0]
    assert rec.meta["extra"] == MT_BENCH  # the second turn, the id and the category stay
    rec = read_row(WIZARDLM_TEST, "prompt", require_answer=False)
    assert rec.instruction == "Solve x^2 = 4." and rec.meta["extra"] == {"idx": 1, "Skills": "Math", "Difficulty": 3}


@pytest.mark.parametrize("row,fix", [({"question": "2+2?", "answer": "4"}, "--map question=prompt,answer=completion"),
                                     ({"prompt": "p", "chosen": "a", "rejected": "b"}, "--map chosen=completion")])
def test_a_pair_is_never_read_as_a_bare_prompt(row, fix):
    assert detect(row) == "prompt"
    with pytest.raises(FieldError) as e:
        read_row(row, "prompt", require_answer=False)
    assert fix in e.value.message
    # and the fix works
    rec = read_row(RowMap.parse(fix.split()[1], None).apply(row), "prompt-completion")
    assert rec.has_answer


def test_sharegpt_dumps_of_other_services():
    row = {"conversations": [{"from": "human", "value": "q"}, {"from": "chatgpt", "value": "a"}, {"from": "human", "value": "q2"},
                             {"from": "bing", "value": "a2"}, {"from": "human", "value": "q3"}, {"from": "bard", "value": "a3"},
                             {"from": "user", "value": "q4"}, {"from": "model", "value": "a4"}]}
    rec = read_row(row, "sharegpt")
    assert [m.role for m in rec.messages] == ["user", "assistant"] * 4
    with pytest.raises(FieldError) as e:
        read_row({"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}, "sharegpt")
    assert "--roles bot=assistant" in e.value.message
    mapped = RowMap.parse(None, "bot=assistant,customer=user").apply(
        {"conversations": [{"from": "customer", "value": "q"}, {"from": "bot", "value": "a"}]})
    assert [m.role for m in read_row(mapped, "sharegpt").messages] == ["user", "assistant"]


def test_openai_developer_messages_are_system_messages():
    rec = read_row({"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "messages")
    assert rec.system == "Be brief."


TOOL_CALL = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "18C, sunny"},
    {"role": "assistant", "content": "18C and sunny."}]}


@pytest.mark.parametrize("row,field", [
    (TOOL_CALL, "messages[1].tool_calls"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}]}, "messages[1].role"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{}"}, {"from": "observation", "value": "{}"},
                        {"from": "gpt", "value": "a"}]}, "conversations[1].from"),
])
def test_tool_calls_are_refused_with_the_reason(row, field):
    with pytest.raises(FieldError) as e:
        read_row(row, detect(row))
    assert e.value.code == "tool_calls" and e.value.field == field
    assert "calls tools" in e.value.message and "--on-error skip" in e.value.message


def test_row_map_renames_columns_and_refuses_a_clash():
    m = RowMap.parse("response=output,context=input", None)
    assert m.apply(DOLLY) == {"instruction": DOLLY["instruction"], "input": DOLLY["context"], "output": DOLLY["response"], "category": "closed_qa"}
    with pytest.raises(FieldError) as e:
        RowMap.parse("response=output", None).apply({"instruction": "i", "response": "r", "output": "o"})
    assert e.value.field == "output"
    assert RowMap.parse(None, None) is None and RowMap.parse("", "") is None
    for bad in ("response", "a=b=c", "a=b,a=c", "=x"):
        with pytest.raises(UserError):
            RowMap.parse(bad, None)


def test_refusals_name_the_format_and_the_fix():
    def why(row, fmt, detected=True):
        with pytest.raises(FieldError) as e:
            read_row(row, fmt)
        return explain(e.value, row, fmt, detected).message

    msg = why(DOLLY, "alpaca", detected=False)
    assert "read as alpaca, as --format says" in msg and "--format dolly" in msg and "--map response=output" in msg
    msg = why({"instruction": "i", "completion": "c"}, "alpaca")
    assert "read as alpaca, detected from the first row" in msg and "--map completion=output" in msg
    assert "datagen distill" in why({"instruction": "Write a poem."}, "alpaca")
    assert "--map src=dst" in why({"conversations": "x"}, "sharegpt")


def test_a_mixed_file_names_the_row_and_the_fix(tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text(json.dumps({"instruction": "a", "input": "", "output": "b"}) + "\n" + json.dumps(DOLLY) + "\n")
    with pytest.raises(InputError) as e:
        list(read_records(src))
    assert e.value.location.endswith("mixed.jsonl:2") and e.value.field == "output"
    assert "read as alpaca, detected from the first row" in e.value.message and "--map response=output" in e.value.message
    recs = list(read_records(src, mapping=RowMap.parse("response=output,context=input", None)))
    assert [r.response for r in recs] == ["b", DOLLY["response"]]
