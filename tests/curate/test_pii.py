"""The pii stage of ``datagen filter``: flag, drop and redact end to end, masked evidence, the
trail of a redacted record, the turns scanned and configuration errors."""

import json

import pytest

from datagen.core import pii
from datagen.core.record import Record, content_hash
from datagen.core.source import InputSpec
from datagen.curate import registry
from datagen.curate.config import FilterConfig, PiiConfig
from datagen.curate.pipeline import run_filter
from datagen.curate.stages.pii import PiiStage
from datagen.report.data import build

SECRETS = ["jane.doe@gmail.com", "4111 1111 1111 1111", "+44 20 7946 0958", "AKIAQ3EGRTW5JH2KLX7P", "81.2.69.142", "GB82 WEST 1234 5698 7654 32"]


def rows():
    return [
        {"messages": [{"role": "user", "content": "Draft a reply to jane.doe@gmail.com about her refund."},
                      {"role": "assistant", "content": "Dear Jane, the card 4111 1111 1111 1111 was refunded. Call us on +44 20 7946 0958."}]},
        {"messages": [{"role": "system", "content": "Deploy with AKIAQ3EGRTW5JH2KLX7P."}, {"role": "user", "content": "Where does the app run?"},
                      {"role": "assistant", "content": "It runs on 81.2.69.142; the router at 192.168.0.1 is private."}]},
        {"messages": [{"role": "user", "content": "Pay the invoice to GB82 WEST 1234 5698 7654 32, please."},
                      {"role": "assistant", "content": "Done: the transfer of 120 EUR was sent on 2024-01-15."}]},
        {"messages": [{"role": "user", "content": "What is new in version 1.2.3?"},
                      {"role": "assistant", "content": "Version 1.2.3 fixes the parser and updates the docs at example.com."}]},
    ]


def write(path, data):
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def src(tmp_path):
    return write(tmp_path / "in.jsonl", rows())


def test_flag_keeps_every_record_with_masked_evidence(tmp_path, cli, src):
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--pii", "flag", "--stages", "heuristics")
    assert r.returncode == 0, r.stderr
    kept = lines(tmp_path / "run" / "records.jsonl")
    assert len(kept) == 4 and not (tmp_path / "run" / "rejected.jsonl").read_text()
    assert [k["flags"].get("pii", []) for k in kept] == [["email", "credit_card", "phone"], ["api_key", "ip_address"], ["iban"], []]
    assert [k["scores"]["pii_matches"] for k in kept] == [3, 2, 1, 0]
    ev = kept[0]["flags"]["pii_evidence"]["credit_card"]
    at = rows()[0]["messages"][1]["content"].index("4111")
    assert ev["count"] == 1 and ev["matches"] == [{"role": "assistant", "turn": 1, "start": at, "end": at + 19, "rule": "visa", "text": "\u20261111"}]
    evidence = json.dumps([k["flags"].get("pii_evidence") for k in kept])
    assert not [s for s in SECRETS if s in evidence]  # the evidence is no leak itself
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["stages"]["pii"]["in"] == stats["stages"]["pii"]["out"] == 4


def test_drop_rejects_with_the_first_kind_and_its_evidence(tmp_path, cli, src):
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--pii", "drop", "--stages", "pii")
    assert r.returncode == 0, r.stderr
    kept, rejected = lines(tmp_path / "run" / "records.jsonl"), lines(tmp_path / "run" / "rejected.jsonl")
    assert [k["messages"][0]["content"] for k in kept] == ["What is new in version 1.2.3?"]
    assert [(x["stage"], x["reason"]) for x in rejected] == [("pii", "pii_email"), ("pii", "pii_api_key"), ("pii", "pii_iban")]
    first = rejected[0]["evidence"]
    assert first["kind"] == "email" and first["kinds"] == ["email", "credit_card", "phone"] and first["count"] == 1
    assert first["matches"][0]["text"] == "j\u2026.com" and first["matches"][0]["role"] == "user"
    # the dropped copy is redacted too: no output of the run holds the values
    out = "".join((tmp_path / "run" / name).read_text() for name in ("records.jsonl", "rejected.jsonl", "stats.json", "manifest.json"))
    assert not [s for s in SECRETS if s in out]
    assert rejected[0]["record"]["messages"][0]["content"] == "Draft a reply to <EMAIL_ADDRESS> about her refund."
    assert [x["record"]["meta"]["redacted_from"] for x in rejected] == [content_hash(r["messages"]) for r in rows()[:3]]
    assert json.loads((tmp_path / "run" / "stats.json").read_text())["stages"]["pii"]["rejected"] == {"pii_api_key": 1, "pii_email": 1, "pii_iban": 1}


def test_redact_replaces_the_text_and_keeps_the_trail(tmp_path, cli, src):
    before = tmp_path / "before"
    assert cli("filter", "--input", src, "--out", before, "--stages", "heuristics").returncode == 0
    r = cli("filter", "--input", before / "records.jsonl", "--out", tmp_path / "run", "--pii", "redact", "--stages", "heuristics,exact")
    assert r.returncode == 0, r.stderr
    kept = lines(tmp_path / "run" / "records.jsonl")
    text = json.dumps([k["messages"] for k in kept])
    assert not [s for s in SECRETS if s in text]
    assert kept[0]["messages"][1]["content"] == "Dear Jane, the card <CREDIT_CARD> was refunded. Call us on <PHONE_NUMBER>."
    assert kept[1]["messages"][0]["content"] == "Deploy with <API_KEY>."
    assert "192.168.0.1" in kept[1]["messages"][2]["content"]  # a private address is not personal
    originals = [content_hash(row["messages"]) for row in rows()]
    assert [k["meta"].get("redacted_from") for k in kept] == originals[:3] + [None]
    assert [k["id"] == content_hash(k["messages"]) for k in kept] == [True] * 4 and kept[3]["id"] == originals[3]
    assert kept[0]["flags"]["pii_redacted"] == {"email": 1, "credit_card": 1, "phone": 1}
    # the report follows each record from the run before into the redacted one
    index = build([before, tmp_path / "run"], embeddings=False).index
    assert len(index) == 4 and not index.aliases.keys() - set(originals)
    for k in kept:
        e = index.entries[k["id"]]
        assert [(ev.run, ev.status) for ev in e.events] == [("before", "kept"), ("run", "kept")]
        assert index.resolve(originals[kept.index(k)]) == k["id"]


def test_only_the_configured_roles_are_scanned():
    rec = Record.from_turns("My mail is jane.doe@gmail.com", "Noted: I will write to jane.doe@gmail.com.", system="Server 81.2.69.142")
    stage = PiiStage(PiiConfig(roles=["assistant"], action="redact"))
    records = [rec]
    stage.annotate(records, None)
    out = records[0]
    assert out.flags["pii"] == ["email"] and out.flags["pii_evidence"]["email"]["matches"][0]["turn"] == 2
    assert [m.content for m in out.messages] == ["Server 81.2.69.142", "My mail is jane.doe@gmail.com", "Noted: I will write to <EMAIL_ADDRESS>."]
    # an earlier run's flags are replaced, and the first id before redaction is kept
    again = [out.with_messages([*out.messages[:2], out.messages[2].model_copy(update={"content": "Or bob@posteo.de"})])]
    stage.annotate(again, None)
    assert again[0].meta["redacted_from"] == rec.id and again[0].flags["pii_redacted"] == {"email": 1}


def test_the_same_output_on_two_workers(tmp_path, monkeypatch):
    from datagen.core import shards

    monkeypatch.setattr(shards, "SHARD_BYTES", 2000)  # a dozen shards, redacted in two worker processes
    big = write(tmp_path / "big.jsonl", [{"messages": [{**r["messages"][0], "content": f"Note {k}: " + r["messages"][0]["content"]}, *r["messages"][1:]]}
                                         for k, r in enumerate(rows() * 10)])
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_filter(InputSpec(str(big)), out, stages="heuristics,pii", sets=["pii.action=redact"], cache_dir=tmp_path / "cache", workers=workers)
        outs.append((out / "records.jsonl").read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"<CREDIT_CARD>") == 10 and outs[0].count(b"redacted_from") == 30


@pytest.mark.parametrize("args,needle", [
    (["--set", "pii.kinds=[email,passport]"], "pii.kinds.1"),
    (["--set", "pii.acton=drop"], "pii.acton: unknown key (did you mean 'action'?)"),
    (["--set", "pii.roles=[]"], "pii.roles"),
])
def test_config_errors_name_the_key(tmp_path, cli, src, args, needle):
    r = cli("filter", "--input", src, "--out", tmp_path / "run", "--pii", "flag", *args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_the_stage_is_opt_in_and_runs_after_heuristics():
    assert "pii" not in registry.parse_stages(None)
    assert registry.parse_stages("minhash,pii,heuristics") == ["heuristics", "pii", "minhash"]
    assert set(PiiConfig().kinds) == set(pii.KINDS)
    assert registry.build_stage("pii", FilterConfig()).describe()["placeholders"]["email"] == "<EMAIL_ADDRESS>"
