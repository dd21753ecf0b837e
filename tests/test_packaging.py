"""prompts/ and seeds/ are found from a built wheel, not only from the source checkout."""

import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(d), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    if r.returncode != 0:
        pytest.fail(f"wheel build failed:\n{r.stdout}\n{r.stderr}")
    (whl,) = d.glob("*.whl")
    return whl


def test_wheel_carries_assets_and_finds_them(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    assert "datagen/_assets/prompts/distill/system.j2" in names
    assert "datagen/_assets/seeds/175.jsonl" in names
    assert any(n.startswith("train/") for n in names)
    assert "train/recipes/lora-smollm2-cpu.yaml" in names and "datagen/_assets/prompts/train/pairwise.j2" in names
    assert {"datagen/report/report.html", "datagen/report/report.css", "datagen/report/report.js"} <= set(names)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import datagen.core.assets as a, datagen.core.prompts as p;"
        "assert str(a.prompts_dir()).startswith(%r), a.prompts_dir();"
        "assert (a.seeds_dir() / '175.jsonl').exists();"
        "print(p.load('distill/system').sha)" % str(target)
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) == 12
