"""Decontamination: drop the records that hold an evaluation set's prompts.

Benchmark files are read as they ship (:mod:`.benchmarks`: JSONL, JSON, Parquet or text lines, the
prompt field found or named). Two checks, in the spirit of GPT-3's and Tulu's decontamination:

* **n-gram overlap** (:mod:`.ngram_index`): the record's instruction (its user turns) and/or answer
  (its assistant turns), as ``fields`` says, are cut into word ``ngram``-grams (13 as in GPT-3;
  Tulu uses 8) and looked up among the benchmark items'. ``rule: any`` drops a record sharing any
  n-gram with an item; ``rule: ratio`` drops one that holds at least ``ratio`` of some item's
  n-grams. Reason ``benchmark_overlap``.
* **embedding** (:mod:`.paraphrase`, ``embedding: true``): the record's instruction (its last user
  turn) against every item; an encoder cosine >= ``embedding_threshold`` is a paraphrase. With
  ``embedding_engine: cascade`` a static model proposes the candidates and the encoder decides
  them. Reason ``benchmark_paraphrase``. Records the n-gram check drops are not embedded.

``annotate`` writes ``flags["decontaminate"]``: ``{"ngram": {...}, "embedding": {...}}``, each the
closest item found (its id, and the shared n-grams or the cosine); a record with neither gets no
flag. ``verdict`` applies ``rule``/``ratio`` and ``embedding_threshold`` to those, and its evidence
names the benchmark file, the item and its text (truncated). The stage runs per record over shards
(``streaming = "records"``); each worker reads the benchmarks and builds the index once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from datagen.core.errors import UserError
from datagen.core.record import Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.stages.benchmarks import Item, file_digest, load_items

FIELDS = {"instruction": ("instruction",), "answer": ("answer",), "both": ("instruction", "answer")}
ROLE = {"instruction": "user", "answer": "assistant"}
ITEM_TEXT_CHARS = 300  # of a benchmark item's text, in the evidence


class DecontaminateConfig(BaseModel):
    """Settings of :class:`Decontaminate` (the ``decontaminate:`` section)."""

    model_config = ConfigDict(extra="forbid")

    files: list[str] = Field(default_factory=list, description="benchmark files: JSONL, JSON, Parquet or text lines (datagen filter --decontaminate adds to these)")
    field: str | None = Field(None, description="the prompt field of the benchmark rows (a dotted path); default: found from the first row")
    fields: Literal["instruction", "answer", "both"] = Field("both", description="what of a record the n-gram check reads: its user turns, its assistant turns, or both")
    ngram: int = Field(13, ge=1, description="words per n-gram (13 as in GPT-3; Tulu uses 8)")
    min_tokens: int = Field(8, ge=1, description="benchmark items shorter than this (words) are not n-gram checked; items shorter than ngram match whole")
    rule: Literal["any", "ratio"] = Field("any", description="any: one shared n-gram drops a record; ratio: a share >= ratio of an item's n-grams does")
    ratio: float = Field(0.5, gt=0, le=1, description="rule ratio: the share of a benchmark item's n-grams a record must hold")
    embedding: bool = Field(True, description="also compare instructions with the benchmark prompts by embedding (paraphrases)")
    embedding_engine: Literal["cascade", "encoder"] = Field("cascade", description="cascade: a static model proposes, the encoder decides; encoder: every instruction through the encoder")
    embedding_threshold: float = Field(0.85, gt=0, le=1, description="encoder cosine at or above which an instruction paraphrases a benchmark prompt")
    candidate_threshold: float = Field(0.7, ge=-1, le=1, description="cascade: centred static cosine at or above which a pair goes to the encoder")
    top_k: int = Field(3, ge=1, description="cascade: candidate items per record, at most")
    model: str = Field("all-MiniLM-L6-v2", description="embedding model: all-MiniLM-L6-v2 or a local sentence-transformers folder")
    batch_size: int = Field(64, ge=1, description="texts per encoder batch")
    device: str | None = None


def _text(rec: Record, field: str) -> str:
    role = ROLE[field]
    return "\n".join(m.content for m in rec.messages if m.role == role)


class Decontaminate:
    name = "decontaminate"
    streaming = "records"  # runs over shards of its input on disk (datagen.curate.shards)
    score_names: tuple[str, ...] = ()

    def __init__(self, config: DecontaminateConfig | None = None) -> None:
        self.config = config or DecontaminateConfig()
        files = list(dict.fromkeys(self.config.files))
        if not files:
            raise UserError("decontaminate: no benchmark files; pass --decontaminate FILE [FILE ...] or set decontaminate.files")
        self.items: list[Item] = load_items(files, self.config.field)
        self.by_id = {it.id: it for it in self.items}
        self.benchmarks = [{"file": f, "sha256": file_digest(f), "items": sum(it.file == str(Path(f)) for it in self.items)} for f in files]
        self._index: Any = None
        self._paraphrase: Any = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(), "benchmarks": self.benchmarks}

    def index(self) -> Any:
        if self._index is None:
            from datagen.curate.stages.ngram_index import NgramIndex

            self._index = NgramIndex([it.text for it in self.items], self.config.ngram, self.config.min_tokens)
        return self._index

    def paraphrase(self, ctx: FilterContext) -> Any:
        if self._paraphrase is None:
            from datagen.curate.stages.paraphrase import ParaphraseCheck

            c = self.config
            self._paraphrase = ParaphraseCheck([it.text for it in self.items], Path(ctx.cache_dir), engine=c.embedding_engine, model=c.model,
                                               candidate_threshold=c.candidate_threshold, top_k=c.top_k, batch_size=c.batch_size,
                                               device=c.device, progress=ctx.progress)
        return self._paraphrase

    def annotate(self, records: list[Record], ctx: FilterContext) -> None:
        cfg = self.config
        found: dict[int, dict[str, Any]] = {}
        for rec in records:
            rec.flags.pop(self.name, None)
        for field in FIELDS[cfg.fields]:
            for i, m in enumerate(self.index().match([_text(r, field) for r in records])):
                if m is not None and (i not in found or (m.overlap, m.shared) > (found[i]["overlap"], found[i]["shared"])):
                    found[i] = {"item": self.items[m.item].id, "field": field, "ngram": m.ngram, "shared": m.shared,
                                "item_ngrams": m.item_ngrams, "overlap": round(m.overlap, 4)}
        for i, ev in found.items():
            records[i].flags[self.name] = {"ngram": ev}
        if not cfg.embedding or cfg.fields == "answer":
            return
        todo = [i for i, r in enumerate(records) if self._ngram_verdict(r) is None and r.instruction.strip()]
        for i, hit in zip(todo, self.paraphrase(ctx).check([records[i].instruction for i in todo])):
            if hit is not None:
                records[i].flags.setdefault(self.name, {})["embedding"] = {"item": self.items[hit[0]].id, "cosine": round(hit[1], 4)}

    def _ngram_verdict(self, record: Record) -> Verdict:
        ev = (record.flags.get(self.name) or {}).get("ngram")
        if ev is None or (self.config.rule == "ratio" and ev["overlap"] < self.config.ratio):
            return None
        return "benchmark_overlap", {**self._item(ev["item"]), **ev, "rule": self.config.rule, "ngram_size": self.config.ngram}

    def _item(self, item_id: str) -> dict[str, Any]:
        it = self.by_id.get(item_id)
        if it is None:
            return {"benchmark": None}
        text = it.text if len(it.text) <= ITEM_TEXT_CHARS else it.text[:ITEM_TEXT_CHARS] + "…"
        return {"benchmark": it.file, "item_text": text}

    def verdict(self, record: Record) -> Verdict:
        found = self._ngram_verdict(record)
        if found is not None:
            return found
        ev = (record.flags.get(self.name) or {}).get("embedding")
        if ev is None or not self.config.embedding or ev["cosine"] < self.config.embedding_threshold:
            return None
        return "benchmark_paraphrase", {**self._item(ev["item"]), **ev, "threshold": self.config.embedding_threshold}
