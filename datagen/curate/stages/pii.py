"""Personal data and secrets in the conversation (:mod:`datagen.core.pii`): flag, drop or redact.

``annotate`` scans the turns of the configured roles and writes ``flags["pii"]`` (the kinds
found, in :data:`~datagen.core.pii.KINDS` order), ``flags["pii_evidence"]`` (kind -> ``count`` and
the first ``max_evidence`` matches: role, turn, start, end, rule and the matched text *masked*, so
that ``rejected.jsonl`` is no leak itself) and the score ``pii_matches``. Then, by ``action``:

* ``flag`` (default): nothing else; the verdict keeps every record.
* ``redact``: each match is replaced by its placeholder (``<EMAIL_ADDRESS>``, ``<PHONE_NUMBER>``,
  ``<IP_ADDRESS>``, ``<CREDIT_CARD>``, ``<IBAN>``, ``<API_KEY>``) and the record kept. Its messages
  change, so its id (a content hash) does too: ``meta["redacted_from"]`` keeps the id it had
  before its first redaction, which the report follows, and ``flags["pii_redacted"]`` counts the
  replacements per kind. The evidence's spans are those of the text before redaction.
* ``drop``: the verdict drops a record with reason ``pii_<kind>`` (its first kind) and the
  evidence. The copy that goes to ``rejected.jsonl`` (and from there into the report) is redacted
  as above, so that no output of the run holds the values; the input still does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from datagen.core import pii
from datagen.core.progress import bar as progress_bar
from datagen.core.record import Message, Record
from datagen.curate.base import FilterContext, Verdict
from datagen.curate.config import PiiConfig

FLAGS = ("pii", "pii_evidence", "pii_redacted")


class PiiStage:
    name = "pii"
    streaming = "records"  # runs over shards of its input on disk (datagen.curate.shards)
    score_names = ("pii_matches",)

    def __init__(self, config: PiiConfig | None = None) -> None:
        self.config = config or PiiConfig()
        self.detector = pii.Detector(self.config.kinds, self.config.private_ips)
        self.roles = set(self.config.roles)

    def scan(self, rec: Record) -> list[tuple[int, pii.Match]]:
        """(turn, match) for every match in the turns of the configured roles."""
        return [(i, m) for i, msg in enumerate(rec.messages) if msg.role in self.roles for m in self.detector.find(msg.content)]

    def evidence(self, rec: Record, found: list[tuple[int, pii.Match]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for turn, m in found:
            ev = out.setdefault(m.kind, {"count": 0, "matches": []})
            ev["count"] += 1
            if len(ev["matches"]) < self.config.max_evidence:
                text = rec.messages[turn].content[m.start:m.end]
                ev["matches"].append({"role": rec.messages[turn].role, "turn": turn, "start": m.start, "end": m.end,
                                      "rule": m.rule, "text": pii.mask(m.kind, text)})
        return {k: out[k] for k in pii.KINDS if k in out}

    def annotate(self, records: list[Record], ctx: FilterContext | None) -> None:
        """Flags every record; under ``redact`` and ``drop``, replaces the records with PII in
        ``records`` by their redacted copies."""
        with progress_bar(len(records), self.name, show=ctx is None or ctx.progress, leave=False) as bar:
            for i, rec in enumerate(records):
                for key in FLAGS:
                    rec.flags.pop(key, None)  # an earlier run's
                found = self.scan(rec)
                rec.scores["pii_matches"] = float(len(found))
                if found:
                    evidence = self.evidence(rec, found)
                    rec.flags[self.name] = list(evidence)
                    rec.flags["pii_evidence"] = evidence
                    if self.config.action != "flag":
                        records[i] = redacted(rec, found)
                bar.update(1)

    def verdict(self, record: Record) -> Verdict:
        kinds = record.flags.get(self.name) or []
        if not kinds or self.config.action != "drop":
            return None
        evidence = record.flags.get("pii_evidence", {})
        return f"pii_{kinds[0]}", {"kind": kinds[0], "kinds": list(kinds), **evidence.get(kinds[0], {})}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "placeholders": {k: pii.PLACEHOLDERS[k] for k in self.config.kinds}, **self.config.model_dump()}


def redacted(rec: Record, found: list[tuple[int, pii.Match]]) -> Record:
    """``rec`` with every match replaced by its placeholder; its old id in ``meta.redacted_from``
    (kept from an earlier redaction), the counts per kind in ``flags.pii_redacted``."""
    by_turn: dict[int, list[pii.Match]] = {}
    for turn, m in found:
        by_turn.setdefault(turn, []).append(m)
    messages = [Message(role=msg.role, content=pii.redact(msg.content, by_turn[i])) if i in by_turn else msg
                for i, msg in enumerate(rec.messages)]
    counts = Counter(m.kind for _, m in found)
    flags = {**rec.flags, "pii_redacted": {k: counts[k] for k in pii.KINDS if k in counts}}
    return rec.with_messages(messages, flags=flags, meta={**rec.meta, "redacted_from": rec.meta.get("redacted_from", rec.id)})
