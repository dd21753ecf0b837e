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


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "openai"] = Field("local", json_schema_extra={"flag": "--llm"}, description="which")
    concurrency: int = Field(16, ge=1, description="in flight")
    no_cache: bool = Field(False, json_schema_extra={"negatable": False}, description="no cache")


def test_several_models_share_one_file_and_a_flag_may_have_its_own_name(tmp_path):
    from datagen.core.settings import build_all

    p = parser()
    add_flags(p, Backend)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("budget: 5\nllm: openai\nconcurrency: 4\n")  # the flag's name (llm) or the field's (backend)
    a = p.parse_args(["--config", str(cfg), "--set", "concurrency=8", "--no-cache"])
    ex, be = build_all((Example, Backend), file=a.config, sets=a.sets, flags=[given(a, Example), given(a, Backend)])
    assert (ex.budget, be.backend, be.concurrency, be.no_cache) == (5, "openai", 8, True)
    assert "--no-no-cache" not in p.format_help() and "--llm {local,openai}" in p.format_help()
    cfg.write_text("budget: 5\nconcurency: 4\n")
    with pytest.raises(UserError, match=r"unknown key 'concurency' \(did you mean 'concurrency'\?\)"):
        build_all((Example, Backend), file=cfg)
    with pytest.raises(UserError, match=r"command line: --llm: Input should be"):
        build_all((Example, Backend), flags=[{"budget": 1}, {"backend": "remote"}])


def test_a_prefix_puts_the_same_settings_beside_a_commands_own():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    add_flags(p, Backend, only=("backend", "concurrency"), prefix="judge_")
    a = p.parse_args(["--model", "mine", "--judge-llm", "openai", "--judge-concurrency", "2"])
    assert given(a, Backend, prefix="judge_") == {"backend": "openai", "concurrency": 2}


def test_every_generating_command_reads_its_backend_and_sampling_from_the_same_file(tmp_path):
    from datagen.cli import build_parser
    from datagen.commands.common import llm_config, settings_from
    from datagen.generate.distill import Settings
    from datagen.llm import LLMConfig, Sampling

    cfg = tmp_path / "distill.yaml"
    cfg.write_text("n: 3\nllm: openai\nmodel: teacher\nbase_url: http://127.0.0.1:9/v1\nmax_tokens: 1000\ntemperature: 0.2\n")
    args = build_parser().parse_args(["distill", "-i", "x.jsonl", "-o", str(tmp_path / "o"), "--config", str(cfg), "--temperature", "0.4"])
    s, llm, sampling = settings_from(args, Settings, LLMConfig, Sampling)
    assert (s.n, llm.backend, llm.model, llm.max_tokens_budget) == (3, "openai", "teacher", 1000)
    assert sampling.params().temperature == 0.4 and sampling.params().top_p == 0.95
    assert llm.to_manifest()["api_key_env"] == "OPENAI_API_KEY"
    args = build_parser().parse_args(["filter", "-i", "x.jsonl", "-o", str(tmp_path / "f"), "--max-cost", "1"])
    with pytest.raises(UserError, match="--max-cost needs --price-in"):
        llm_config(args)


def test_the_ablation_reads_its_settings_from_flags_or_a_file(tmp_path):
    from datagen.ablate import AblationSettings
    from datagen.cli import build_parser
    from datagen.core.settings import build

    cfg = tmp_path / "ablate.yaml"
    cfg.write_text(f"pool: p.jsonl\ngold: g.jsonl\nbudget: 8\nout: {tmp_path / 'abl'}\nseeds: 2\nset: [lr=1e-4, 'target_modules=[q_proj,v_proj]']\n")
    args = build_parser().parse_args(["ablate", "--config", str(cfg), "--seeds", "1", "--set", "epochs=1,2", "--full"])
    s = build(AblationSettings, file=args.config, flags=given(args, AblationSettings))
    assert (s.pool, s.budget, s.seeds, s.full, s.out) == ("p.jsonl", 8, 1, True, tmp_path / "abl")
    assert s.sets == ["epochs=1,2"] and s.arm_names() == ["curated", "random", "full"]
    args = build_parser().parse_args(["ablate", "--gold", "g.jsonl"])
    with pytest.raises(UserError, match="--pool is required"):
        build(AblationSettings, flags=given(args, AblationSettings))
