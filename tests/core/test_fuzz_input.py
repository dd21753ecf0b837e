"""Fuzz: many kinds of bad input through convert, filter, select and ``train run``.

Every kind is generated here (not stored), plus random byte-level damage of a good file with a
fixed seed. For each input and each command the promise is the same: exit 0 or 2, never a
traceback, no partial output after an error, the input file unchanged.

The commands run in this process through their real entry points (``datagen.cli.main``,
``train.cli.main``), which is what makes hundreds of runs affordable; the nastiest kinds also run
as real processes, where a crash of the interpreter itself would show.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT

OK = {"instruction": "Name a prime number.", "input": "", "output": "7 is a prime number."}
OK_LINE = json.dumps(OK)
MSG = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def _parquet(rows: list[dict], path: Path) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, compression="NONE")
    return path.read_bytes()


def _corrupt(data: bytes, at: int, n: int = 48) -> bytes:
    b = bytearray(data)
    b[at:at + n] = b"\xff" * min(n, len(b) - at)
    return bytes(b)


def _record_row(**over) -> dict:
    row = {"id": "", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
           "source": "input", "parent_id": None, "scores": "{}", "flags": "{}", "meta": "{}"}
    row.update(over)
    return row


def jsonl(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode("utf-8", errors="surrogatepass")


# name -> (file suffix, contents). Each is a distinct way for input to be bad.
KINDS: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "empty": (".jsonl", lambda p: b""),
    "whitespace_only": (".jsonl", lambda p: b"  \n\n\t\n"),
    "bom_only": (".jsonl", lambda p: b"\xef\xbb\xbf"),
    "not_utf8": (".jsonl", lambda p: jsonl(OK_LINE) + b'{"instruction": "caf\xe9", "output": "x"}\n'),
    "cut_utf8_sequence": (".jsonl", lambda p: jsonl(OK_LINE) + '{"instruction": "日本'.encode()[:-1]),
    "nul_bytes": (".jsonl", lambda p: jsonl(OK_LINE) + b'{"instruction": "a\x00", "output": "b"}\n'),
    "malformed_line": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": }')),
    "cut_line": (".jsonl", lambda p: jsonl(OK_LINE, OK_LINE[: len(OK_LINE) // 2])),
    "single_quotes": (".jsonl", lambda p: jsonl(OK_LINE, "{'instruction': 'a', 'output': 'b'}")),
    "comments": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b"} // note')),
    "raw_control_char": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a\tb\u0001", "output": "b"}'.replace("\\u0001", "\x01"))),
    "top_level_number": (".jsonl", lambda p: jsonl("42", OK_LINE)),
    "top_level_string": (".jsonl", lambda p: jsonl('"just text"')),
    "top_level_null": (".jsonl", lambda p: jsonl(OK_LINE, "null")),
    "array_line_in_jsonl": (".jsonl", lambda p: jsonl(OK_LINE, "[1, 2, 3]")),
    "deep_array_100k": (".jsonl", lambda p: jsonl(OK_LINE, "[" * 100_000 + "]" * 100_000)),
    "deep_object_100k": (".jsonl", lambda p: jsonl(OK_LINE, '{"a":' * 100_000 + "1" + "}" * 100_000)),
    "deep_extra_field_200": (".jsonl", lambda p: jsonl(OK_LINE, json.dumps({**OK, "extra": json.loads("[" * 200 + "]" * 200)}))),
    "lone_high_surrogate": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a\\ud800", "output": "b"}')),
    "lone_low_surrogate": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b\\udfff"}')),
    "surrogate_in_key": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "k\\ud801": 1}')),
    "nan": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "score": NaN}')),
    "infinity": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "score": Infinity}')),
    "minus_infinity": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "score": -Infinity}')),
    "float_overflow": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "score": 1e400}')),
    "nan_score_in_record": (".jsonl", lambda p: jsonl(json.dumps({**MSG, "source": "s"}), '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "source": "s", "scores": {"judge": NaN}}')),
    "duplicate_key": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "output": "c"}')),
    "missing_output": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "input": ""}')),
    "output_is_number": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": 3}')),
    "output_is_null": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": null}')),
    "instruction_is_list": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": ["a"], "output": "b"}')),
    "misspelt_field": (".jsonl", lambda p: jsonl(OK_LINE, '{"instrution": "a", "output": "b"}')),
    "unknown_format": (".jsonl", lambda p: jsonl('{"question": "a", "answer": "b"}')),
    "history_not_pairs": (".jsonl", lambda p: jsonl(OK_LINE, '{"instruction": "a", "output": "b", "history": [["only one"]]}')),
    "sharegpt_unknown_role": (".jsonl", lambda p: jsonl('{"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}')),
    "sharegpt_not_a_list": (".jsonl", lambda p: jsonl('{"conversations": {"from": "human", "value": "a"}}')),
    "sharegpt_empty": (".jsonl", lambda p: jsonl('{"conversations": []}')),
    "messages_system_in_middle": (".jsonl", lambda p: jsonl('{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]}')),
    "messages_not_alternating": (".jsonl", lambda p: jsonl('{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}')),
    "messages_content_object": (".jsonl", lambda p: jsonl('{"messages": [{"role": "user", "content": {"x": 1}}, {"role": "assistant", "content": "b"}]}')),
    "messages_image_part": (".jsonl", lambda p: jsonl('{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}, {"role": "assistant", "content": "b"}]}')),
    "no_assistant_turn": (".jsonl", lambda p: jsonl('{"messages": [{"role": "user", "content": "a"}]}')),
    "record_scores_not_numbers": (".jsonl", lambda p: jsonl('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "source": "s", "scores": {"judge": "high"}}')),
    "seed_no_instances": (".jsonl", lambda p: jsonl('{"instruction": "a", "instances": [], "is_classification": false}')),
    "array_trailing_garbage": (".json", lambda p: ("[\n" + OK_LINE + "\n]\nnot json\n").encode()),
    "array_second_array": (".json", lambda p: ("[" + OK_LINE + "]\n[" + OK_LINE + "]\n").encode()),
    "array_not_closed": (".json", lambda p: ("[\n" + OK_LINE + ",\n" + OK_LINE + "\n").encode()),
    "array_non_object_item": (".json", lambda p: ("[\n" + OK_LINE + ",\n7\n]\n").encode()),
    "array_deep": (".json", lambda p: ("[" + OK_LINE + ", " + "[" * 50_000 + "]" * 50_000 + "]").encode()),
    "array_nan": (".json", lambda p: ("[" + OK_LINE + ', {"instruction": "a", "output": "b", "x": NaN}]').encode()),
    "parquet_random_bytes": (".parquet", lambda p: b"PAR1" + bytes(random.Random(1).randrange(256) for _ in range(600)) + b"PAR1"),
    "parquet_truncated": (".parquet", lambda p: _parquet([OK] * 50, p)[:-100]),
    "parquet_corrupt_page": (".parquet", lambda p: _corrupt(_parquet([OK] * 200, p), 4)),
    "parquet_bad_meta_json": (".parquet", lambda p: _parquet([_record_row(meta="{not json")], p)),
    "parquet_nan_in_scores_json": (".parquet", lambda p: _parquet([_record_row(scores='{"judge": NaN}')], p)),
    "parquet_nan_float_column": (".parquet", lambda p: _parquet([{**OK, "weight": float("nan")}], p)),
    "parquet_wrong_type": (".parquet", lambda p: _parquet([{"instruction": "a", "output": 5}], p)),
}


def damaged(seed: int) -> tuple[str, Callable[[Path], bytes]]:
    """A good JSONL file with a few random bytes flipped, deleted or inserted (fixed seed)."""
    def make(p: Path) -> bytes:
        rng = random.Random(seed)
        data = bytearray(jsonl(*[json.dumps({**OK, "output": f"{OK['output']} ({i})"}) for i in range(6)]))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            op = rng.choice(("flip", "delete", "insert"))
            if op == "flip":
                data[at] ^= 1 << rng.randrange(8)
            elif op == "delete":
                del data[at]
            else:
                data.insert(at, rng.choice(b'{}[]",:\\\x00\xff\n'))
        return bytes(data)
    return ".jsonl", make


ALL = {**KINDS, **{f"damaged_{k}": damaged(k) for k in range(12)}}


def test_there_are_at_least_forty_kinds():
    assert len(KINDS) >= 40


def argv_for(command: str, src: Path, out: Path) -> tuple[Callable, list[str]]:
    from datagen.cli import main as datagen_main
    from train.cli import main as train_main

    return {
        "convert": (datagen_main, ["convert", "--input", str(src), "--to", "sharegpt", "--out", str(out / "converted.jsonl")]),
        "filter": (datagen_main, ["filter", "--input", str(src), "--out", str(out / "filter"), "--stages", "heuristics,exact,minhash"]),
        "select": (datagen_main, ["select", "--input", str(src), "--out", str(out / "select"), "--budget", "2", "--no-embed", "--tau", "1", "--score", "judge", "--min", "judge=1"]),
        "train": (train_main, ["run", "--data", str(src), "--out", str(out / "train"), "--max-steps", "1", "--max-length", "64", "--batch-size", "1", "--method", "lora"]),
    }[command]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fuzz")
    out = {}
    for name, (suffix, make) in ALL.items():
        p = d / f"{name}{suffix}"
        data = make(p)
        p.write_bytes(data)
        out[name] = p
    return out


@pytest.mark.parametrize("command", ["convert", "filter", "select", "train"])
def test_every_bad_input_exits_0_or_2_without_traceback_or_partial_output(command, inputs, tmp_path, capsys):
    outcomes: dict[str, int] = {}
    for name, src in inputs.items():
        before = sha(src)
        out = tmp_path / name
        out.mkdir()
        main, argv = argv_for(command, src, out)
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
        except BaseException as e:  # noqa: BLE001 - this is what the test is for
            pytest.fail(f"{command} on {name}: {type(e).__name__}: {e}"[:2000])
        err = capsys.readouterr().err
        outcomes[name] = rc
        assert rc in (0, 2), f"{command} on {name}: exit {rc}: {err[-1500:]}"
        assert "Traceback" not in err, f"{command} on {name}: {err[-1500:]}"
        assert sha(src) == before, f"{command} changed its input {name}"
        if rc == 2:
            assert err.startswith("error: ") or "error:" in err, f"{command} on {name}: {err[-500:]}"
            left = [str(p.relative_to(out)) for p in out.rglob("*")]
            assert left == [], f"{command} on {name} left partial output: {left}"
    # the hand-made kinds are all bad; only random damage may happen to leave a valid file
    assert all(outcomes[name] == 2 for name in KINDS), {k: v for k, v in outcomes.items() if k in KINDS and v != 2}


@pytest.mark.parametrize("name", ["deep_array_100k", "deep_object_100k", "lone_high_surrogate", "parquet_corrupt_page", "array_trailing_garbage", "nan"])
def test_nastiest_kinds_as_real_processes(name, inputs, tmp_path):
    src = inputs[name]
    env = {**os.environ, "DATAGEN_PROGRESS": "0"}
    for module, argv in (("datagen.cli", ["convert", "--input", src, "--to", "messages", "--out", tmp_path / "o.jsonl"]),
                         ("train.cli", ["run", "--data", src, "--out", tmp_path / "t", "--max-steps", "1"])):
        r = subprocess.run([sys.executable, "-m", module, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (module, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and str(src) in r.stderr, (module, r.stderr[-2000:])
    assert list(tmp_path.iterdir()) == []
