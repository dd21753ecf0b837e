"""The report follows a record through a redaction (a new id, the old one in meta.redacted_from)."""

from pathlib import Path

from datagen.core.record import Message, Record
from datagen.report.index import build_index, lineage
from datagen.report.runs import Run


def run(label, records, rejected=()):
    return Run(Path(label), label, {}, {}, [r.model_dump(mode="json") for r in records], list(rejected))


def redact(rec: Record, old: str, new: str) -> Record:
    msgs = [Message(role=m.role, content=m.content.replace(old, new)) for m in rec.messages]
    return rec.with_messages(msgs, meta={**rec.meta, "redacted_from": rec.meta.get("redacted_from", rec.id)})


def test_one_entry_across_a_redaction_and_lineage_through_the_old_id():
    parent = Record.from_turns("Write to jane.doe@gmail.com about the refund.", "Dear Jane, the refund is on its way.")
    child = Record.from_turns("Write a longer note to jane's team about the refund.", "Dear team, ...", parent_id=parent.id)
    once = redact(parent, "jane.doe@gmail.com", "<EMAIL_ADDRESS>")
    twice = redact(once, "Jane", "<NAME>")  # a second redaction keeps the first id
    assert twice.meta["redacted_from"] == parent.id and len({parent.id, once.id, twice.id}) == 3
    dropped = {"stage": "minhash", "reason": "near_duplicate", "evidence": {}, "record": twice.model_dump(mode="json")}
    index = build_index([run("evolve", [parent, child]), run("filter", [once, child]), run("select", [child], [dropped])])
    assert len(index) == 2 and set(index.entries) == {twice.id, child.id}
    e = index.entries[twice.id]
    assert [(ev.run, ev.status) for ev in e.events] == [("evolve", "kept"), ("filter", "kept"), ("select", "rejected")]
    assert e.record["messages"][1]["content"] == "Dear <NAME>, the refund is on its way."
    assert index.resolve(parent.id) == index.resolve(once.id) == twice.id
    assert lineage(index, child.id) == [(twice.id, True)]
