"""``datagen filter --config filter.yaml``: one section per stage, validated strictly.

Every knob has its default here (``examples/filter.yaml`` lists them all, with what they do). An
unknown or misspelt key is an error that names the file and the key's path
(``filter.yaml: minhash.treshold: unknown key (did you mean 'threshold'?)``), never silently
ignored. The model-based stages (``semantic``, ``quality``) live in modules imported only when
they run; their sections are checked there, by the stage class's own ``Config`` model.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic import field_validator

from datagen.core import checks

from datagen.core.errors import UserError

TextField = Literal["instruction+response", "instruction", "response", "conversation"]
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeuristicsConfig(Section):
    """Cheap per-record checks; set a check to false (or a limit to null) to switch it off."""

    empty_response: bool = True
    min_response_words: Optional[int] = Field(1, ge=1, description="response_too_short below this (CJK characters count one each)")
    max_response_words: Optional[int] = Field(4000, ge=1, description="response_too_long above this")
    refusal: bool = True
    refusal_max_words: int = Field(checks.REFUSAL_MAX_WORDS, ge=1, description="a refusal phrase counts anywhere in a response this short; in longer ones only at its start")
    echo: bool = True
    echo_jaccard: float = Field(0.9, gt=0, le=1, description="token-set Jaccard of instruction and response at or above which the response echoes")
    truncated: bool = True
    truncated_min_words: int = Field(checks.TRUNCATED_MIN_WORDS, ge=1, description="ending mid-sentence counts only in responses at least this long")
    language_mismatch: bool = True
    language_min_letters: int = Field(checks.LANGUAGE_MIN_LETTERS, ge=1, description="letters (outside code) a response needs before its language is judged")
    language_min_confidence: float = Field(checks.LANGUAGE_MIN_CONFIDENCE, ge=0, le=1, description="the language model's confidence a text's language needs before it is judged")
    languages: Optional[list[str]] = Field(None, description="keep-list of language codes (ISO 639-1: en, zh, ja...; 'en,zh' or a list): a record whose instruction or response is in another language is dropped (language_not_allowed)")
    length_unit: Literal["words", "tokens"] = Field("words", description="what min/max_response_words count: words (CJK characters one each) or tokens of heuristics.tokenizer")
    tokenizer: Optional[str] = Field(None, description="the tokenizer for length_unit: tokens: an embedded model's name or a local model folder (default: the trainer's default model)")
    blacklisted_task: bool = Field(False, description="Self-Instruct's blacklist (image, file, map, graph...): for generated instructions; off by default, it would drop 'hash map' tasks")

    @field_validator("languages", mode="before")
    @classmethod
    def _language_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [x for x in (p.strip() for p in v.split(",")) if x]
        if isinstance(v, list):
            bad = [x for x in v if not (isinstance(x, str) and _LANGUAGE_CODE.fullmatch(x.strip().lower()))]
            if bad:
                raise ValueError(f"{bad[0]!r} is not a language code (two or three letters: en, zh, ja...)")
            if not v:
                raise ValueError("name at least one language, or leave it out")
            v = [x.strip().lower() for x in v]
        return v


class ExactConfig(Section):
    text: TextField = "instruction+response"
    score_key: Optional[str] = Field("judge", description="score that picks the survivor (highest wins, then lowest id); present when the input was scored before, e.g. by an earlier filter run")


class MinHashConfig(Section):
    threshold: float = Field(0.7, gt=0, lt=1, description="verified Jaccard at or above which two records are near duplicates")
    num_perm: int = Field(128, ge=2, le=1024)
    ngram: int = Field(5, ge=1, description="words per shingle; characters per shingle in CJK text")
    weights: tuple[float, float] = Field((0.05, 0.95), description="(false positive, false negative) weights for choosing bands and rows")
    bands: Optional[int] = Field(None, ge=2, description="override the computed banding (with rows)")
    rows: Optional[int] = Field(None, ge=1)
    seed: int = 1
    engine: Literal["auto", "datasketch", "rensa"] = "auto"
    text: TextField = "instruction+response"
    score_key: Optional[str] = "judge"

    @model_validator(mode="after")
    def _banding(self) -> "MinHashConfig":
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class PiiConfig(Section):
    """Personal data and secrets (:mod:`datagen.core.pii`): flagged with masked evidence, dropped, or redacted."""

    kinds: list[Literal["api_key", "email", "iban", "credit_card", "ip_address", "phone"]] = Field(
        default_factory=lambda: ["api_key", "email", "iban", "credit_card", "ip_address", "phone"], min_length=1,
        description="what to look for: api_key (keys, tokens, private keys), email, iban, credit_card, ip_address, phone")
    action: Literal["flag", "drop", "redact"] = Field("flag", description="flag: flags with evidence, nothing dropped; drop: reason pii_<kind>, the copy in rejected.jsonl redacted; "
                                                     "redact: each match replaced by <EMAIL_ADDRESS>, <PHONE_NUMBER>... and the record kept, its old id in meta.redacted_from")
    roles: list[Literal["system", "user", "assistant"]] = Field(default_factory=lambda: ["system", "user", "assistant"], min_length=1,
                                                                description="the turns to scan")
    private_ips: bool = Field(False, description="count private, loopback, documentation and reserved IP addresses and public DNS resolvers too")
    max_evidence: int = Field(3, ge=1, description="matches shown (masked) per kind in the evidence")


class FilterConfig(Section):
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    exact: ExactConfig = Field(default_factory=ExactConfig)
    minhash: MinHashConfig = Field(default_factory=MinHashConfig)
    semantic: dict[str, Any] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    decontaminate: dict[str, Any] = Field(default_factory=dict)  # datagen.curate.stages.decontaminate:DecontaminateConfig


def _describe(err: dict[str, Any], model: type[BaseModel], prefix: str) -> str:
    loc = [str(x) for x in err["loc"]]
    path = ".".join(([prefix] if prefix else []) + loc) or prefix or "(top level)"
    if err["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else (f" (expected one of {', '.join(known)})" if known else "")
        return f"{path}: unknown key{hint}"
    return f"{path}: {err['msg']}"


def _known_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def validate_section(model: type[BaseModel], data: Any, source: str, prefix: str = "") -> Any:
    """``model.model_validate(data)``, turning errors into a UserError naming ``source`` and the
    key path (``prefix`` is prepended, e.g. the stage name)."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        msgs = [_describe(err, model, prefix) for err in e.errors()]
        raise UserError(f"{source}: " + "; ".join(msgs)) from None


def load_config(path: str | Path | None, sets: Sequence[str] = ()) -> FilterConfig:
    """The filter configuration: the defaults, then ``path`` (YAML) when given, then each ``--set
    stage.key=value`` of ``sets`` (values parsed as YAML), as :mod:`datagen.core.settings` merges
    every command's layers."""
    data = _read_config(path) if path is not None else {}
    if not sets:
        return validate_section(FilterConfig, data, str(path)) if path is not None else FilterConfig()
    from datagen.core.settings import parse_set

    for key, value in parse_set(sets).items():
        stage, dot, name = key.partition(".")
        if not dot or not name:
            raise UserError(f"--set {key}: expected STAGE.KEY=VALUE (e.g. minhash.threshold=0.8)")
        section = data.setdefault(stage, {})
        if not isinstance(section, dict):
            raise UserError(f"--set {key}: '{stage}' is not a section of stage settings")
        section[name] = value
    return validate_section(FilterConfig, data, f"{path} and --set" if path is not None else "--set")


def _read_config(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {p}: no such file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not UTF-8 text") from None
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of stage name to settings, got {type(data).__name__}")
    return data or {}
