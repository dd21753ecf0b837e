"""Hugging Face datasets as input: ``save_to_disk`` folders (Dataset, DatasetDict), ``.arrow`` files
(stream and file format), and ``hf:ORG/NAME`` from the local caches, offline; the reading flags
(``--split``, ``--map``, ``--roles``) on every command that reads records."""

import json

import pytest

from datagen.commands import COMMANDS
from datagen.core.hfdata import split_of

DOLLY = [{"instruction": f"Question {i}?", "context": "" if i % 2 else f"Context {i}.", "response": f"Answer {i}.", "category": "open_qa"}
         for i in range(4)]
KOALA = [{"id": f"koala_{i}", "prompt": f"Write a line about {w}."} for i, w in enumerate(("rain", "snow", "wind"))]


def save(rows, path):
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def read_out(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_save_to_disk_folder_and_its_arrow_file(cli, tmp_path):
    folder = save(DOLLY, tmp_path / "dolly")
    r = cli("convert", "--input", folder, "--to", "alpaca", "--out", tmp_path / "a.jsonl")
    assert r.returncode == 0, r.stderr
    rows = read_out(tmp_path / "a.jsonl")
    assert [(x["instruction"], x["input"], x["output"], x["category"]) for x in rows] == [
        (d["instruction"], d["context"], d["response"], d["category"]) for d in DOLLY]
    # the folder's .arrow file alone (the IPC stream format datasets writes)
    arrow = next(folder.glob("*.arrow"))
    r = cli("convert", "--input", arrow, "--to", "alpaca", "--out", tmp_path / "b.jsonl")
    assert r.returncode == 0, r.stderr
    assert read_out(tmp_path / "b.jsonl") == rows


def test_no_file_of_a_dataset_folder_is_overwritten(cli, tmp_path):
    folder = save(DOLLY, tmp_path / "dolly")
    before = (folder / "state.json").read_bytes()
    r = cli("convert", "--input", folder, "--to", "alpaca", "--out", folder / "state.json")
    assert r.returncode == 2 and "is inside the input folder" in r.stderr
    assert (folder / "state.json").read_bytes() == before


def test_an_arrow_file_in_the_file_format(tmp_path):
    import pyarrow as pa

    from datagen.core.io import read_records

    path = tmp_path / "t.arrow"
    table = pa.Table.from_pylist(DOLLY)
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table, max_chunksize=3)  # two record batches
    assert [r.response for r in read_records(path)] == [d["response"] for d in DOLLY]


def test_a_bad_row_in_an_arrow_file_is_located_by_row(cli, tmp_path):
    folder = save(DOLLY[:2] + [dict(DOLLY[2], response=None)] + DOLLY[3:], tmp_path / "dolly")
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", folder, "--to", "messages", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "data-00000-of-00001.arrow (row 3): field 'response': missing required field" in r.stderr, r.stderr
    assert "read as dolly" in r.stderr and not out.exists()


def test_a_dataset_dict_needs_its_split(cli, tmp_path):
    import datasets

    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(DOLLY), "test": datasets.Dataset.from_list(DOLLY[:1])}).save_to_disk(str(folder))
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", folder, "--to", "messages", "--out", out)
    assert r.returncode == 2 and "has the splits train, test; pick one with --split" in r.stderr and not out.exists()
    r = cli("convert", "--input", folder, "--split", "dev", "--to", "messages", "--out", out)
    assert r.returncode == 2 and "no split 'dev'" in r.stderr and not out.exists()
    r = cli("convert", "--input", folder, "--split", "test", "--to", "messages", "--out", out)
    assert r.returncode == 0, r.stderr
    assert len(read_out(out)) == 1


def test_split_of_a_single_file_is_refused(tmp_path):
    from datagen.core.errors import UserError
    from datagen.core.io import read_records

    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    with pytest.raises(UserError, match="--split train: .* is a file"):
        list(read_records(src, split="train"))


def test_a_plain_directory_is_refused(cli, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.jsonl").write_text("{}\n")
    r = cli("convert", "--input", tmp_path / "d", "--to", "messages", "--out", tmp_path / "o.jsonl")
    assert r.returncode == 2 and "is a directory, but not a dataset saved by save_to_disk" in r.stderr and "Traceback" not in r.stderr


def prepared_cache(root, repo_id, splits):
    """The datasets cache as load_dataset leaves it: ORG___NAME/CONFIG/VERSION/HASH/NAME-SPLIT.arrow."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    d = root / repo_id.replace("/", "___") / "default" / "0.0.0" / "0123abcd"
    d.mkdir(parents=True)
    for split, rows in splits.items():
        with ArrowWriter(path=str(d / f"{repo_id.split('/')[-1]}-{split}.arrow")) as w:
            w.write_table(datasets.Dataset.from_list(rows).data.table)
            w.finalize()
    (d / "dataset_info.json").write_text("{}")


def hub_snapshot(root, repo_id, files):
    """The hub cache as huggingface_hub leaves it: datasets--ORG--NAME/{refs/main, snapshots/REV/...}."""
    import datasets

    repo = root / ("datasets--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("5f3e")
    snap = repo / "snapshots" / "5f3e"
    for rel, rows in files.items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".parquet"):
            datasets.Dataset.from_list(rows).to_parquet(str(snap / rel))
        else:
            (snap / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (snap / "README.md").write_text("---\nlicense: mit\n---\n")


def test_a_dataset_id_from_the_datasets_cache(cli, tmp_path):
    prepared_cache(tmp_path / "dc", "databricks/dolly-mini", {"train": DOLLY, "test": DOLLY[:1]})
    unfinished = tmp_path / "dc" / "databricks___dolly-mini" / "default" / "0.0.0" / "99ff.incomplete"
    unfinished.mkdir()
    (unfinished / "dolly-mini-train.arrow").write_bytes(b"")  # a load_dataset that was stopped: never read
    env = {"HF_DATASETS_CACHE": str(tmp_path / "dc"), "HF_HUB_CACHE": str(tmp_path / "hc")}
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", "hf:databricks/dolly-mini", "--to", "alpaca", "--out", out, env=env)
    assert r.returncode == 2 and "has the splits test, train; pick one with --split" in r.stderr
    r = cli("convert", "--input", "hf:databricks/dolly-mini", "--split", "train", "--to", "alpaca", "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    assert [x["output"] for x in read_out(out)] == [d["response"] for d in DOLLY]


def test_a_dataset_id_from_the_hub_cache_and_a_bare_id(cli, tmp_path):
    hub_snapshot(tmp_path / "hc", "HuggingFaceH4/mini_chat", {
        "data/train_sft-00000-of-00001.parquet": [{"prompt": "q", "prompt_id": "1", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
        "data/test_sft-00000-of-00001.parquet": [{"prompt": "q2", "prompt_id": "2", "messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}]})
    env = {"HF_DATASETS_CACHE": str(tmp_path / "dc"), "HF_HUB_CACHE": str(tmp_path / "hc")}
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", "HuggingFaceH4/mini_chat", "--split", "test_sft", "--to", "messages", "--out", out, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert read_out(out) == [{"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}], "prompt": "q2", "prompt_id": "2"}]


def test_a_dataset_id_that_is_not_cached(cli, tmp_path):
    env = {"HF_DATASETS_CACHE": str(tmp_path / "dc"), "HF_HUB_CACHE": str(tmp_path / "hc")}
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input", "hf:nobody/nothing", "--to", "messages", "--out", out, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not in the local Hugging Face cache" in r.stderr and str(tmp_path / "dc") in r.stderr and str(tmp_path / "hc") in r.stderr
    assert not out.exists()
    r = cli("convert", "--input", "nobody/nothing", "--to", "messages", "--out", out, env=env, cwd=tmp_path)  # a path, or an id
    assert r.returncode == 2 and "nobody/nothing: no such file or folder, and as a dataset id it is not in the local" in r.stderr
    r = cli("convert", "--input", "nobody/nothing.jsonl", "--to", "messages", "--out", out, env=env)  # a file path stays a file path
    assert r.returncode == 2 and "no such file" in r.stderr and "cache" not in r.stderr


@pytest.mark.parametrize("rel,split", [("data/train-00000-of-00002.parquet", "train"), ("data/train_sft-00001-of-00003.parquet", "train_sft"),
                                       ("valid.jsonl", "validation"), ("test/part.json", "test"), ("all.jsonl", "train"),
                                       ("default/dev-x.parquet", "validation")])
def test_the_split_of_a_data_file(rel, split):
    assert split_of(rel) == split


READERS = [name for name, _ in COMMANDS if name in ("convert", "filter", "select", "distill", "evolve")]


@pytest.mark.parametrize("command", READERS)
def test_every_command_that_reads_records_takes_the_reading_flags(cli, command):
    r = cli(command, "--help")
    assert r.returncode == 0
    for flag in ("--format", "--split", "--map", "--roles"):
        assert flag in r.stdout, (command, flag)
    assert "prompt-completion" in r.stdout and "ultrachat" in r.stdout


def test_filter_reads_with_map_and_refuses_prompt_only_rows_naming_distill(cli, tmp_path):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."}) + "\n" for i in range(5)))
    out = tmp_path / "run"
    r = cli("filter", "--input", src, "--out", out, "--stages", "heuristics", "--workers", "1")
    assert r.returncode == 2 and "--map question=prompt,answer=completion" in r.stderr and not out.exists()
    r = cli("filter", "--input", src, "--out", out, "--stages", "heuristics", "--workers", "1", "--map", "question=prompt,answer=completion")
    assert r.returncode == 0, r.stderr
    kept = read_out(out / "records.jsonl")
    assert len(kept) + json.loads((out / "stats.json").read_text())["rejected"] == 5 and all(k["messages"][1]["role"] == "assistant" for k in kept)
    assert json.loads((out / "manifest.json").read_text())["settings"]["map"] == "question=prompt,answer=completion"
    prompts = tmp_path / "koala.jsonl"
    prompts.write_text("".join(json.dumps(k) + "\n" for k in KOALA))
    r = cli("filter", "--input", prompts, "--out", tmp_path / "run2", "--stages", "heuristics", "--workers", "1")
    assert r.returncode == 2 and "koala.jsonl:1" in r.stderr and "datagen distill" in r.stderr and not (tmp_path / "run2").exists()


def test_distill_answers_a_prompt_only_dataset_folder(cli, tmp_path):
    from openai_server import OpenAIServer

    folder = save(KOALA, tmp_path / "koala")
    out = tmp_path / "run"
    with OpenAIServer() as srv:
        r = cli("distill", "--input", folder, "--out", out, "--llm", "openai", "--model", "m", "--base-url", srv.url, "--no-cache",
                env={"OPENAI_API_KEY": "k"})
    assert r.returncode == 0, r.stderr
    recs = read_out(out / "records.jsonl")
    assert [r["messages"][0]["content"] for r in recs] == [k["prompt"] for k in KOALA]
    assert all(r["messages"][1]["role"] == "assistant" and r["messages"][1]["content"] for r in recs)
    assert [r["meta"]["extra"]["id"] for r in recs] == [k["id"] for k in KOALA]
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["input"] == str(folder) and len(settings["input_sha256"]) == 64
