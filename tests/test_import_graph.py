"""The package's import graph (every import, function-local ones too): no cycle between units,
each layer imports only the layers below it, the report never imports the ablation, only the
ablation imports the trainer, and the trainer uses only datagen's core, model layer and scorers."""

from __future__ import annotations

from tests.import_graph import cycles, graph


def test_no_cycle_between_subpackages_and_top_level_modules():
    assert cycles(graph()) == []


def test_the_report_reads_what_the_ablation_wrote_without_importing_it():
    assert "datagen.ablate" not in graph()["datagen.report"]


def test_only_the_ablation_imports_the_trainer():
    assert sorted(src for src, targets in graph().items() if "train" in targets) == ["datagen.ablate"]


# bottom to top: a unit may import the units before it, never one after it
LAYERS = ["datagen.core", "datagen.llm", "datagen.score", "datagen.curate", "datagen.generate", "datagen.report",
          "datagen.ablate", "datagen.commands", "datagen.cli"]


def test_each_layer_imports_only_the_layers_below_it():
    edges = graph()
    assert set(LAYERS) | {"train"} == set(edges) - {"datagen"}  # a new unit takes its place here
    for i, unit in enumerate(LAYERS):
        above = set(LAYERS[i + 1:])
        assert not edges[unit] & above, f"{unit} imports {sorted(edges[unit] & above)}"


def test_the_trainer_uses_only_the_core_the_model_layer_and_the_scorers():
    assert graph()["train"] <= {"datagen.core", "datagen.llm", "datagen.score"}  # score: the pairwise judge of train eval --judge


def test_the_checker_sees_cycles_and_function_local_imports(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    edges = graph()
    assert "train" in edges["datagen.ablate"]  # ablate imports train only inside functions
