"""Validate the bundled Self-Instruct seed file ``seeds/175.jsonl``.

Uses only the standard library and pytest, so it runs without the model stack.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

SEED_PATH = Path(__file__).resolve().parents[2] / "seeds" / "175.jsonl"

EXPECTED_TASKS = 175
MIN_CLASSIFICATION = 25
MIN_CJK_INSTRUCTIONS = 20
MIN_INPUT_SHARE = 0.30  # both with-input and without-input tasks must reach this share

REQUIRED_FIELDS = {
    "id": str,
    "name": str,
    "instruction": str,
    "instances": list,
    "is_classification": bool,
}

CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
SNAKE_CASE_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
BLACKLIST_RE = re.compile(
    r"\b(?:image|graph|picture|file|map|draw|plot|video|audio|music|flowchart|diagram)\b",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def raw_lines() -> list[str]:
    assert SEED_PATH.is_file(), f"seed file missing: {SEED_PATH}"
    text = SEED_PATH.read_bytes().decode("utf-8")  # must be valid UTF-8
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tasks(raw_lines: list[str]) -> list[dict]:
    parsed = []
    for lineno, line in enumerate(raw_lines, start=1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - failure path
            pytest.fail(f"line {lineno} is not valid JSON: {exc}")
        assert isinstance(obj, dict), f"line {lineno} is not a JSON object"
        parsed.append(obj)
    return parsed


def test_task_count(tasks: list[dict]) -> None:
    assert len(tasks) == EXPECTED_TASKS


def test_no_blank_lines_inside_file() -> None:
    lines = SEED_PATH.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]  # a single trailing newline is fine
    assert all(line.strip() for line in lines), "blank line inside the JSONL file"


def test_required_fields_and_types(tasks: list[dict]) -> None:
    for task in tasks:
        for field, typ in REQUIRED_FIELDS.items():
            assert field in task, f"{task.get('id')}: missing field {field!r}"
            assert isinstance(task[field], typ), (
                f"{task.get('id')}: field {field!r} should be {typ.__name__}"
            )
        assert task["instruction"].strip(), f"{task['id']}: empty instruction"
        assert SNAKE_CASE_RE.match(task["name"]), f"{task['id']}: name not snake_case"


def test_instances_shape(tasks: list[dict]) -> None:
    for task in tasks:
        instances = task["instances"]
        assert instances, f"{task['id']}: instances must be non-empty"
        for inst in instances:
            assert isinstance(inst, dict), f"{task['id']}: instance is not an object"
            assert isinstance(inst.get("input"), str), f"{task['id']}: input must be str"
            assert isinstance(inst.get("output"), str), f"{task['id']}: output must be str"
            assert inst["output"].strip(), f"{task['id']}: output must be non-empty"


def test_ids_are_sequential_and_unique(tasks: list[dict]) -> None:
    ids = [task["id"] for task in tasks]
    assert len(set(ids)) == len(ids), "duplicate ids"
    assert ids == [f"seed_task_{i}" for i in range(len(tasks))]


def test_names_unique(tasks: list[dict]) -> None:
    names = [task["name"] for task in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"duplicate names: {dupes}"


def test_no_duplicate_instructions(tasks: list[dict]) -> None:
    seen: dict[str, str] = {}
    for task in tasks:
        key = task["instruction"].strip()
        assert key not in seen, f"{task['id']} duplicates the instruction of {seen[key]}"
        seen[key] = task["id"]


def test_enough_classification_tasks(tasks: list[dict]) -> None:
    n_cls = sum(task["is_classification"] for task in tasks)
    assert n_cls >= MIN_CLASSIFICATION, f"only {n_cls} classification tasks"


def test_enough_cjk_tasks(tasks: list[dict]) -> None:
    n_cjk = sum(bool(CJK_RE.search(task["instruction"])) for task in tasks)
    assert n_cjk >= MIN_CJK_INSTRUCTIONS, f"only {n_cjk} instructions contain CJK characters"


def test_mix_of_with_and_without_input(tasks: list[dict]) -> None:
    with_input = sum(
        any(inst["input"].strip() for inst in task["instances"]) for task in tasks
    )
    without_input = len(tasks) - with_input
    assert with_input >= MIN_INPUT_SHARE * len(tasks), f"only {with_input} tasks with input"
    assert without_input >= MIN_INPUT_SHARE * len(tasks), (
        f"only {without_input} tasks without input"
    )


def test_no_blacklisted_words_in_instructions(tasks: list[dict]) -> None:
    offenders = {
        task["id"]: BLACKLIST_RE.findall(task["instruction"])
        for task in tasks
        if BLACKLIST_RE.search(task["instruction"])
    }
    assert not offenders, f"blacklisted words in instructions: {offenders}"


def test_cjk_stored_literally(raw_lines: list[str]) -> None:
    # The file is written with ensure_ascii=False: no \uXXXX escapes for CJK text.
    assert not any(re.search(r"\\u[0-9a-fA-F]{4}", line) for line in raw_lines)
