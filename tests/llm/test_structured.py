"""Structured output: the schemas the generators ask for, and reading replies in either form."""

import json

from datagen.generate.evol_instruct import EQUALITY_SCHEMA, parse_equality
from datagen.generate.evol_rules import EVOLUTION_SCHEMA, parse_evolution
from datagen.generate.self_instruct_parsing import CLASSIFY_SCHEMA, parse_yes_no
from datagen.llm.structured import field_of, one_field_schema
from datagen.score.pairwise import JUDGE_PARAMS, parse_verdict


def test_one_field_schemas_are_canonical_and_strict():
    schema = json.loads(one_field_schema("verdict", enum=("equal", "not_equal")))
    assert schema == {"additionalProperties": False, "properties": {"verdict": {"enum": ["equal", "not_equal"], "type": "string"}},
                      "required": ["verdict"], "type": "object"}
    assert json.loads(EVOLUTION_SCHEMA)["properties"]["instruction"] == {"minLength": 1, "type": "string"}
    assert one_field_schema("a") == one_field_schema("a")  # part of the cache key: stable text
    assert json.loads(CLASSIFY_SCHEMA)["properties"]["answer"]["enum"] == ["yes", "no"]
    assert json.loads(EQUALITY_SCHEMA)["required"] == ["verdict"]
    assert json.loads(JUDGE_PARAMS["json_schema"])["properties"]["verdict"]["enum"] == ["A", "B", "tie"]


def test_field_of_reads_whole_and_cut_replies():
    assert field_of('{"instruction": "Write a poem.\\nTwo lines."}', "instruction") == "Write a poem.\nTwo lines."
    assert field_of('{"instruction": "Write a po', "instruction") is None
    assert field_of('{"instruction": "Write a po\\u00e9', "instruction", partial=True) == "Write a poé"
    assert field_of('{"instruction": "cut in an escape \\', "instruction", partial=True) == "cut in an escape "
    assert field_of("Write a poem.", "instruction", partial=True) is None
    assert field_of('["a"]', "instruction") is None


def test_the_generators_read_both_forms():
    assert parse_evolution('{"instruction": "Rewrite the text in French."}') == "Rewrite the text in French."
    assert parse_evolution('{"instruction": "#Rewritten Prompt#: Rewrite the text"') == "Rewrite the text"  # cut, label stripped
    assert parse_evolution("#Rewritten Prompt#: Rewrite the text in French.") == "Rewrite the text in French."
    assert parse_equality('{"verdict": "not_equal"}') == "not_equal" and parse_equality('{"verdict": "equal"}') == "equal"
    assert parse_equality("Not Equal") == "not_equal"
    assert parse_yes_no('{"answer": "no"}') is False and parse_yes_no("Yes.") is True
    assert parse_verdict('{"verdict": "tie"}') == "tie" and parse_verdict("B") == "B"
