"""The package's import graph (every import, function-local ones too): no cycle between units,
the report never imports the ablation, and only the ablation imports the trainer."""

from __future__ import annotations

from tests.import_graph import cycles, graph


def test_no_cycle_between_subpackages_and_top_level_modules():
    assert cycles(graph()) == []


def test_the_report_reads_what_the_ablation_wrote_without_importing_it():
    assert "datagen.ablate" not in graph()["datagen.report"]


def test_only_the_ablation_imports_the_trainer():
    assert sorted(src for src, targets in graph().items() if "train" in targets) == ["datagen.ablate"]


def test_the_checker_sees_cycles_and_function_local_imports(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    edges = graph()
    assert "train" in edges["datagen.ablate"]  # ablate imports train only inside functions
