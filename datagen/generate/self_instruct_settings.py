"""Self-Instruct's settings, what ``datagen self-instruct``'s flags are derived from
(:mod:`datagen.core.settings`); apart from the generator, so that building the command line
imports no more than this."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from datagen.curate.stages.instructions import MAX_WORDS, MIN_WORDS


class Settings(BaseModel):
    """Self-Instruct's settings; the command's flags are derived from these fields
    (:func:`datagen.core.settings.add_flags`)."""

    model_config = ConfigDict(extra="forbid")

    num: int = Field(100, ge=1, description="machine-generated tasks to accept (each gives one record per instance; seeds are not written)",
                     json_schema_extra={"metavar": "N"})
    mode: Literal["bootstrap", "alpaca"] = Field("bootstrap", description=(
        "bootstrap: Self-Instruct (tasks, then classification and instances); alpaca: Stanford Alpaca's one-pass variant "
        "(instruction, input and output in one completion)"))
    num_seed_examples: int = Field(6, ge=1, description="seed tasks shown per request (bootstrap)")
    num_machine_examples: int = Field(2, ge=0, description="generated tasks shown per request, once the pool has them (bootstrap)")
    requests_per_round: int = Field(8, ge=1, description="requests per round; a round is one resumable part")
    rouge_threshold: float = Field(0.7, ge=0, le=1, description="reject a task whose ROUGE-L F against any pool task exceeds this")
    min_words: int = Field(MIN_WORDS, ge=0, description="shortest instruction, in words (CJK: characters)")
    max_words: int = Field(MAX_WORDS, ge=0, description="longest instruction, in words (CJK: characters)")
    alpaca_examples: int = Field(3, ge=1, description="seed tasks shown per request (alpaca)")
    alpaca_tasks: int = Field(20, ge=1, description="length of the task list a request asks for (alpaca)")
    max_rounds: int | None = Field(None, ge=1, description="safety limit on rounds (default: 5 + 3 x the rounds needed at one task per request)")
    patience: int = Field(5, ge=1, description="stop after this many rounds in a row accept no task")
    classify_max_tokens: int = Field(16, ge=1, description="longest answer to the is-it-a-classification-task question")

    @model_validator(mode="after")
    def _word_limits(self) -> Settings:
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")
        return self

    def rounds_limit(self) -> int:
        if self.max_rounds is not None:
            return self.max_rounds
        return 5 + 3 * math.ceil(self.num / self.requests_per_round)
