"""Dataset cards: every finished run directory has one, ``convert --card`` writes one, and the Hub's
and ``datasets``' own readers accept them (offline: the Hub's YAML validation endpoint cannot be
reached, so the metadata is checked against the Hub's documented values here)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from datagen.core.card import GENERATORS, languages_of, render, size_category
from tests.conftest import DATA

SEEDS = DATA / "seed_tasks.jsonl"
HUB_SIZES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B", "n>1T"}


def front_matter(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def filter_run(cli, src, out):
    r = cli("filter", "--input", src, "--out", out, "--stages", "heuristics,exact")
    assert r.returncode == 0, r.stderr
    return out


def test_every_finished_run_has_a_card_the_hub_and_datasets_read(cli, tmp_path):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    first = filter_run(cli, SEEDS, tmp_path / "first")
    second = filter_run(cli, first / "records.jsonl", tmp_path / "second")
    meta, body = front_matter(second / "README.md")
    assert meta["license"] == "unknown"  # nobody stated it: not invented
    assert meta["language"] == ["en", "zh"]  # identified (8 English seed tasks, 1 Chinese), and the card says how
    assert meta["size_categories"] == ["n<1K"] and set(meta["size_categories"]) <= HUB_SIZES
    assert meta["task_categories"] == ["text-generation"] and "synthetic" not in meta["tags"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "records.jsonl"}]}]
    card = DatasetCard.load(second / "README.md")
    assert card.data.license == "unknown" and card.data.pretty_name == "second"
    ds = load_dataset(str(second), split="train")  # datasets reads the card's configs to find the data
    assert len(ds) == json.loads((second / "stats.json").read_text())["records"] == 9
    # both steps, oldest first, each with its command line and its funnel
    assert body.index("### 1. filter (`first`)") < body.index("### 2. filter")
    assert f"datagen filter --input {SEEDS} --out {tmp_path / 'first'}" in body
    assert "| heuristics | 9 | 9 | 0 | - |" in body
    assert "Licence:** not stated" in body and "Languages:** en, zh (identified in 9 records by fastText lid.176" in body


def test_a_readme_someone_else_wrote_is_kept(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "README.md").write_text("my notes\n")
    r = cli("filter", "--input", SEEDS, "--out", out, "--stages", "heuristics", "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "README.md").read_text() == "my notes\n" and (out / "manifest.json").is_file()


def test_card_names_models_reasons_and_languages():
    runs = [
        {"dir": "/x/gen", "manifest": {"command": "self-instruct", "argv": ["datagen", "self-instruct", "--num", "5"],
                                       "models": {"generator": {"backend": "local", "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}}},
         "stats": {"stages": {"self-instruct": {"in": 9, "out": 5, "rejected": {"too_similar": 3, "refusal": 1}}}}},
        {"manifest": {"command": "filter", "models": {"judge": {"backend": "openai", "model": "judge-7b"}},
                      "argv": ["cli.py", "filter", "--base-url", "https://user:secret@judge.example:8000/v1?token=abc"]},
         "stats": {"stages": {"quality": {"in": 5, "out": 4, "rejected": {"low_quality": 1}}}}},
    ]
    text = render(n=4, data_file="records.jsonl", name="demo", runs=runs, counts=Counter({"zh": 3, "ja": 1}))
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["language"] == ["zh", "ja"] and "synthetic" in meta["tags"] and "self-instruct" in GENERATORS
    assert "| self-instruct | generator | `HuggingFaceTB/SmolLM2-135M-Instruct` |" in text
    assert "| filter | judge | `judge-7b` |" in text
    assert "| self-instruct | 9 | 5 | 4 | too_similar (3), refusal (1) |" in text
    assert "datagen self-instruct --num 5" in text
    assert "datagen filter --base-url https://judge.example:8000/v1\n" in text and "secret" not in text and "token" not in text
    assert languages_of(Counter({"en": 97, "fr": 3, "none": 40})) == ["en", "fr"]
    assert languages_of(Counter({"en": 99, "fr": 1})) == ["en"]  # a stray answer does not make it bilingual
    assert languages_of(Counter({"none": 5})) == []


def test_card_languages_from_the_records():
    from datagen.core.card import language_counts
    from datagen.core.record import Message, Record

    def rec(q, a, **flags):
        return Record(messages=[Message(role="user", content=q), Message(role="assistant", content=a)], flags=flags)

    counts = language_counts([rec("Explain photosynthesis.", "Plants turn light, water and carbon dioxide into sugar and oxygen."),
                              rec("Explique la photosynthese.", "Les plantes transforment la lumiere en energie chimique."),
                              rec("x", "y", language="de"), rec("1 + 1", "2")])
    assert counts == {"en": 1, "fr": 1, "de": 1, "none": 1}  # flags.language where the filter wrote it


@pytest.mark.parametrize("n,label", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M"), (2_000_000_000, "1B<n<10B")])
def test_size_categories(n, label):
    assert size_category(n) == label in HUB_SIZES


def test_convert_card_beside_the_export(cli, tmp_path):
    run = filter_run(cli, SEEDS, tmp_path / "run")
    out = tmp_path / "export" / "train.parquet"
    r = cli("convert", "--input", run / "records.jsonl", "--to", "sharegpt", "--out", out, "--card", "--license", "apache-2.0",
            "--language", "en", "--language", "zh")
    assert r.returncode == 0, r.stderr
    meta, body = front_matter(out.parent / "README.md")
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en", "zh"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "train.parquet"}]
    assert "### 1. filter (`run`)" in body and "### 2. convert" in body and "--to sharegpt" in body
    from datasets import load_dataset

    assert len(load_dataset(str(out.parent), split="train")) == 9
    # a README.md the tool did not write is never replaced; nothing else is written either
    other = tmp_path / "other"
    other.mkdir()
    (other / "README.md").write_text("hand-written\n")
    r = cli("convert", "--input", run / "records.jsonl", "--to", "messages", "--out", other / "x.jsonl", "--card")
    assert r.returncode == 2 and "was not written by datagen" in r.stderr and "Traceback" not in r.stderr
    assert (other / "README.md").read_text() == "hand-written\n" and not (other / "x.jsonl").exists()
    r = cli("convert", "--input", run / "records.jsonl", "--to", "messages", "--out", other / "x.jsonl", "--license", "mit")
    assert r.returncode == 2 and "--card" in r.stderr
