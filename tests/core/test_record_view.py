"""The read-only view a dedup stage's keys are computed from gives what the record gives."""

from __future__ import annotations

from datagen.core.record import Message, Record, RecordView
from datagen.curate.dedup.groups import record_text


def test_the_view_has_the_records_id_scores_flags_and_text():
    recs = [
        Record.from_turns("What is 2+2?", "4", system="Be brief.", scores={"judge": 4.5}, flags={"exact": {"duplicates": 1}}),
        Record(messages=[Message(role="user", content="first"), Message(role="assistant", content="one"),
                         Message(role="user", content="second, «ünïcode»"), Message(role="assistant", content="two")]),
        Record.from_turns("a prompt awaiting its answer"),
    ]
    for rec in recs:
        view = RecordView(rec.to_json())
        assert (view.id, view.scores, view.flags) == (rec.id, rec.scores, rec.flags)
        assert (view.instruction, view.response) == (rec.instruction, rec.response)
        for which in ("instruction+response", "instruction", "response", "conversation"):
            assert record_text(view, which) == record_text(rec, which)
