"""One way to declare settings: flags derived from a pydantic model, layers merged in one order."""

from __future__ import annotations

import argparse
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from datagen.core.errors import UserError
from datagen.core.settings import add_flags, build, given


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: int = Field(..., ge=1, description="records to keep")
    tau: float = Field(0.9, ge=-1, le=1, description="most similarity")
    mode: Literal["fast", "slow"] = Field("fast", description="how")
    answer: bool = Field(True, description="answer them")
    ops: list[str] = Field(default_factory=lambda: ["a", "b"], description="operations")
    note: str | None = Field(None, description="a note")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, Example, flags={"ops": "--op"})
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[], dest="sets")
    return p


def settle(argv: list[str]) -> Example:
    a = parser().parse_args(argv)
    return build(Example, file=a.config, sets=a.sets, flags=given(a, Example))


def test_flags_come_from_the_fields_with_their_help_and_defaults():
    text = parser().format_help()
    assert "--budget N" in text and "records to keep (required)" in text and "Undefined" not in text
    assert "{fast,slow}" in text and "--answer, --no-answer" in text and "(default: a,b)" in text and "--op" in text
    with pytest.raises(SystemExit):
        parser().parse_args(["--mode", "medium"])  # choices from the Literal


def test_layers_defaults_then_file_then_set_then_flags(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text("budget: 5\ntau: 0.5\nops: [x]\nanswer: false\n")
    s = settle(["--config", str(cfg)])
    assert (s.budget, s.tau, s.ops, s.answer, s.mode) == (5, 0.5, ["x"], False, "fast")
    s = settle(["--config", str(cfg), "--set", "tau=0.7", "--set", "budget=6", "--budget", "7", "--op", "p,q", "--op", "r", "--answer"])
    assert (s.budget, s.tau, s.ops, s.answer) == (7, 0.7, ["p", "q", "r"], True)


def test_errors_name_the_key_and_where_it_was_set(tmp_path):
    with pytest.raises(UserError, match="--budget is required"):
        settle([])
    with pytest.raises(UserError, match=r"command line: --tau: Input should be less than or equal to 1"):
        settle(["--budget", "1", "--tau", "2"])
    cfg = tmp_path / "s.yaml"
    cfg.write_text("budgt: 3\n")
    with pytest.raises(UserError, match=r"s.yaml: unknown key 'budgt' \(did you mean 'budget'\?\)"):
        settle(["--config", str(cfg)])
    cfg.write_text("- budget\n")
    with pytest.raises(UserError, match="is a mapping of settings"):
        settle(["--config", str(cfg)])
    with pytest.raises(UserError, match=r"--set 'tau': expected KEY=VALUE"):
        settle(["--budget", "1", "--set", "tau"])
    with pytest.raises(UserError, match=r"--set: 'mode': Input should be 'fast' or 'slow'"):
        settle(["--budget", "1", "--set", "mode=medium"])
