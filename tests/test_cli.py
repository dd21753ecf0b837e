"""Start-up stays fast: --help for every command answers without importing torch."""

import subprocess
import sys

from datagen.cli import build_parser

HEAVY = ("torch", "transformers", "openai", "sentence_transformers", "datasketch", "pandas", "pyarrow", "numpy")


def test_help_imports_nothing_heavy():
    commands = list(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert "convert" in commands and "distill" in commands
    code = f"""
import sys
from datagen.cli import main
for argv in [["--help"]] + [[c, "--help"] for c in {commands!r}]:
    try:
        main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
heavy = [m for m in {HEAVY!r} if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_no_command_prints_help_and_fails(cli):
    r = cli()
    assert r.returncode == 2
    assert "convert" in r.stdout
