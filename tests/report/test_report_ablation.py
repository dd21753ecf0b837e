"""The ablation section of `datagen report --ablation`: the tolerant reader of ablation.json, the
verdict computed from its numbers, the section in the page (and only with --ablation), its escaping,
and `datagen ablate` writing the full report.

tests/data/ablation/ablation.json is a trimmed copy of a real `datagen ablate` result (two seeds,
curated vs random on a pool with injected defects)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from conftest import DATA
from report_fixtures import pipeline

from datagen.core.summary import spread
from datagen.core.errors import UserError
from datagen.report import data, html, svg
from datagen.report.ablation_file import parse_ablation, read_ablation
from datagen.report.text import ablation_summary

ABLATION = DATA / "ablation"


def _doc() -> dict:
    return json.loads((ABLATION / "ablation.json").read_text(encoding="utf-8"))


def _arm(losses: dict[int, float]) -> dict:
    """An arm of ablation.json with these per-seed gold losses (and the spread ablate writes)."""
    rows = [{"seed": k, "records": 10, "steps": 5, "loss": v} for k, v in losses.items()]
    return {"records": 10, "steps": 5, "loss": spread(list(losses.values())), "per_seed": rows}


def _sentence(curated: dict[int, float], random: dict[int, float]) -> str:
    (v,) = parse_ablation({"arms": {"curated": _arm(curated), "random": _arm(random)}}).verdicts
    return v.sentence


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    paths, _ = pipeline(tmp_path_factory.mktemp("runs"))
    return paths


def _page(runs: list[Path], ablation=None) -> str:
    return html.render(data.build(runs, embeddings=False, ablation=ablation))


def test_reader_on_a_real_shaped_file():
    for path in (ABLATION, ABLATION / "ablation.json"):  # the directory or the file
        v = read_ablation(path)
        assert v.path == str(ABLATION / "ablation.json")
    assert [a.name for a in v.arms] == ["curated", "random"]
    cur = v.arms[0]
    assert (cur.records, cur.steps, cur.seeds) == (60, 12, 2)
    assert cur.metrics["loss"].format("loss") == "1.9718 ± 0.0005 [1.9715, 1.9722]"
    assert cur.values("loss") == [(0, pytest.approx(1.97217246)), (1, pytest.approx(1.97152461))]
    assert v.metrics == ["epochs", "loss", "win_rate", "perplexity", "train_loss"]
    assert dict(v.settings) == {"pool": "bench/data/noisy_pool.jsonl", "gold": "bench/data/gold.jsonl", "budget": "60",
                                "recipe": "lora-smollm2-cpu", "steps": "12", "seeds": "2", "judge": "the embedded default, 16 prompts"}
    assert v.definitions == [("win rate vs random", _doc()["win_rate_definition"])]
    assert [(d.tag, d.pool, d.after_filter, d.action, d.rate) for d in v.defects] == [
        ("clean", 175, 153, "kept", pytest.approx(0.874, abs=1e-3)), ("near_duplicate", 25, 13, "removed", 0.48), ("refusal", 25, 0, "removed", 1.0)]
    assert v.defects[2].in_arm["random"].mean == 5.5
    assert (v.removed_by_filter_all_defects, v.filter_precision) == (0.656, pytest.approx(0.788, abs=1e-3))
    assert v.notes == [] and v.near_duplicate_pairs == {}


def test_verdict_on_the_real_numbers_is_within_seed_noise():
    (v,) = read_ablation(ABLATION).verdicts
    assert (v.arm, v.lower, v.paired, v.beyond_noise) == ("curated", 2, 2, False)
    assert v.diff == pytest.approx(1.9718485 - 1.9736639, abs=1e-6) and v.noise == pytest.approx(0.0029220, abs=1e-6)
    assert v.sentence == ("curated: lower gold loss than random in 2 of 2 seeds; mean difference -0.00182 (random seed spread 0.00292): "
                          "within seed noise (the larger std is 0.00292)")


def test_verdict_beyond_noise_overlap_and_one_seed():
    assert _sentence({0: 1.0, 1: 1.1}, {1: 1.6, 0: 1.5}) == (  # seeds paired by number, not by position
        "curated: lower gold loss than random in 2 of 2 seeds; mean difference -0.5 (random seed spread 0.0707): "
        "lower beyond seed noise (the difference exceeds the larger std, 0.0707)")
    assert _sentence({0: 1.0, 1: 1.4}, {0: 1.1, 1: 1.3}) == (  # the arms overlap
        "curated: lower gold loss than random in 1 of 2 seeds; mean difference 0 (random seed spread 0.141): "
        "within seed noise (the larger std is 0.283)")
    assert _sentence({0: 2.5, 1: 2.6}, {0: 1.5, 1: 1.6}).endswith("mean difference +1 (random seed spread 0.0707): "
                                                                 "higher beyond seed noise (the difference exceeds the larger std, 0.0707)")
    assert _sentence({0: 1.0}, {0: 2.0}).endswith("in 1 of 1 seeds; mean difference -1 (random seed spread 0): "
                                                  "seed noise unknown with fewer than two seeds")
    assert parse_ablation({"arms": {"curated": _arm({0: 1.0})}}).verdicts == []  # no random arm


def test_verdict_reports_the_item_by_item_comparison():
    curated = _arm({0: 1.0, 1: 1.1})
    curated["paired_vs_random"] = {"items": 40, "seeds": 2, "lower": 30, "higher": 9, "sign_test_p": 0.00096,
                                   "mean_diff": -0.0123, "ci95": [-0.02, -0.004]}
    (v,) = parse_ablation({"arms": {"curated": curated, "random": _arm({0: 1.05, 1: 1.12})}}).verdicts
    assert v.sentence.endswith("within seed noise (the larger std is 0.0707). Item by item (gold items, averaged over seeds): "
                               "lower on 30 of 40 (1 equal) (sign test p = 0.00096); mean difference -0.0123, "
                               "95% CI [-0.02, -0.004]: the interval excludes 0")
    curated["paired_vs_random"].update(ci95=[-0.02, 0.001], lower=20, higher=20)
    (v,) = parse_ablation({"arms": {"curated": curated, "random": _arm({0: 1.05, 1: 1.12})}}).verdicts
    assert v.items_sentence.endswith("lower on 20 of 40 (sign test p = 0.00096); mean difference -0.0123, "
                                     "95% CI [-0.02, 0.001]: the interval includes 0")
    curated["paired_vs_random"] = None  # an ablation from before item-by-item losses
    (v,) = parse_ablation({"arms": {"curated": curated, "random": _arm({0: 1.05, 1: 1.12})}}).verdicts
    assert v.items_sentence == "" and v.sentence.endswith("(the larger std is 0.0707)")


def test_defect_verdict_reports_the_answer_by_answer_comparison():
    curated, random_ = _arm({0: 1.0, 1: 1.1}), _arm({0: 1.05, 1: 1.12})
    for arm, rates in ((curated, (0.2, 0.3)), (random_, (0.25, 0.35))):
        for row, rate in zip(arm["per_seed"], rates):
            row["defect_rate"] = rate
        arm["defect_rate"] = spread(list(rates))
    curated["paired_defects_vs_random"] = {"answers": 80, "seeds": 2, "fewer": 9, "more": 5, "sign_test_p": 0.42}
    loss, defects = parse_ablation({"arms": {"curated": curated, "random": random_}}).verdicts
    assert defects.metric == "defect_rate" and "lower defect rate than random in 2 of 2 seeds" in defects.sentence
    assert defects.sentence.endswith("Answer by answer (80 answers: gold prompt x seed): a defect where random's answer had none in 5, "
                                     "none where random's had one in 9 (sign test p = 0.42)")
    assert "answer by answer" not in loss.sentence


def test_the_untrained_base_models_loss_is_shown_as_the_reference():
    doc = _doc()
    doc["base"] = {"model": "smollm2", "loss": 2.0862318, "perplexity": 8.05}
    assert dict(parse_ablation(doc).settings)["gold loss before training"] == "2.0862"
    assert "gold loss before training" not in dict(parse_ablation(_doc()).settings)


def test_composition_table_shows_each_sets_mix(runs):
    doc = _doc()
    doc["composition"] = {
        "gold": {"share_latin": spread([0.875]), "share_zh": spread([0.125]), "answer_words": spread([23.4])},
        "random": {"share_latin": spread([0.85, 0.80]), "share_zh": spread([0.15, 0.20]), "answer_words": spread([40.0, 42.0])},
    }
    page = _page(runs, doc)
    table = page[page.index('<table class="composition">'):]
    table = table[: table.index("</table>")]
    assert "zh share" in table and "answer words (mean)" in table
    assert "88%" in table and "12%" in table and "18% ± 4%" in table and "41.0 ± 1.4" in table
    assert 'class="composition"' not in _page(runs, _doc())  # an older ablation.json has none


def test_reader_tolerates_missing_and_extra_fields():
    doc = {
        "arms": {
            "curated": {"per_seed": [{"seed": 0, "loss": 2.0, "note": "x"}, {"seed": 1, "loss": "n/a"}, "junk"],
                        "calibrated_win_rate": {"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7, "n": 2},
                        "weird_metric": {"mean": 3, "std": None}, "list": [1, 2], "records": "many"},
            "random": {"per_seed": [{"seed": 0, "loss": 2.5}]},
            "broken": "not an arm",
        },
        "curation": {"defects": {"refusal": {"pool": 3}, "odd": 5}, "notes": ["filter ran twice", 3],
                     "near_duplicate_pairs": {"pairs": 4, "mean_jaccard": 0.81}},
        "win_rate_definition": ["not", "text"], "something_new": {"x": 1},
    }
    v = parse_ablation(doc)
    assert [a.name for a in v.arms] == ["curated", "random"]
    assert v.metrics == ["loss", "win_rate", "calibrated_win_rate", "weird_metric"]
    assert v.arms[0].records is None and v.arms[0].metrics["weird_metric"].format("weird_metric") == "3.000"
    assert v.arms[0].values("loss") == [(0, 2.0)]
    (verdict,) = v.verdicts  # the loss spread comes from the per-seed rows when the arm has none
    assert (verdict.lower, verdict.paired, verdict.diff) == (1, 1, -0.5)
    assert [(d.tag, d.pool, d.after_filter, d.action, d.rate, d.in_arm) for d in v.defects] == [("refusal", 3, None, "", None, {})]
    assert v.notes == ["filter ran twice", "3"] and v.near_duplicate_pairs == {"pairs": 4, "mean_jaccard": 0.81}
    assert v.settings == [] and v.definitions == []
    empty = parse_ablation({})
    assert (empty.arms, empty.verdicts, empty.metrics) == ([], [], ["loss", "win_rate"])


def test_bad_paths_name_the_path(tmp_path):
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "nope"))):
        read_ablation(tmp_path / "nope")
    with pytest.raises(UserError, match="a directory without ablation.json"):
        read_ablation(tmp_path)
    (tmp_path / "ablation.json").write_text('{"arms": {', encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(str(tmp_path / "ablation.json")) + ".*not valid JSON"):
        read_ablation(tmp_path)
    (tmp_path / "ablation.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError, match="expected a JSON object"):
        read_ablation(tmp_path / "ablation.json")


def test_section_shows_the_numbers_only_with_ablation(runs):
    page = _page(runs, ABLATION)
    section = page[page.index('<section id="ablation">'):page.index('<section id="funnel">')]
    assert '<a href="#ablation">Ablation</a>' in page
    assert "Ablation: does curation help?" in section
    assert "curated: lower gold loss than random in 2 of 2 seeds; mean difference -0.00182" in section
    assert "1.9718 ± 0.0005 [1.9715, 1.9722]" in section and "1.9737 ± 0.0029 [1.9716, 1.9757]" in section
    assert "0.50 ± 0.00 [0.50, 0.50]" in section and "7.184 ± 0.003 [7.182, 7.186]" in section
    assert 'data-arm="curated"' in section and 'data-arm="random"' in section
    assert "removed 48%" in section and "kept 87%" in section and ">66%<" in section and ">79%<" in section
    assert "lora-smollm2-cpu" in section and "in both answer orders" in section
    assert section.count('<circle class="dot') == 4  # the dot chart: one per (arm, seed)
    assert section.count("<tr") == 1 + 2 + 1 + 4 + 1 + 3  # arms table, every-seed table, defects table
    plain = _page(runs)
    assert 'id="ablation"' not in plain and 'href="#ablation"' not in plain


def test_section_renders_extra_fields_generically(runs):
    doc = _doc()
    for name, arm in doc["arms"].items():
        arm["calibrated_win_rate"] = {"mean": 0.625 if name == "curated" else 0.5, "std": 0.05, "min": 0.55, "max": 0.7, "n": 2}
        arm["new_score"] = {"mean": 1.23456, "std": 0.1, "min": 1.1, "max": 1.3, "n": 2}
    doc["curation"]["notes"] = ["the judge is a 135M model"]
    doc["curation"]["near_duplicate_pairs"] = {"pairs_in_pool": 25, "mean_jaccard": 0.81}
    doc["curation"]["removed_by"] = {"refusal": {"heuristics/refusal": 24, "exact/exact_duplicate": 1}, "clean": "?"}
    page = _page(runs, doc)  # the document itself, as datagen ablate passes it
    assert "<th>calibrated win rate</th>" in page and "0.62 ± 0.05 [0.55, 0.70]" in page
    assert "<th>new_score</th>" in page and "1.235 ± 0.100 [1.100, 1.300]" in page
    assert "<li>the judge is a 135M model</li>" in page
    assert "<td>pairs_in_pool</td><td class=\"n\">25</td>" in page and "0.81" in page
    assert "<span>heuristics/refusal <b>24</b></span><span>exact/exact_duplicate <b>1</b></span>" in page


def test_arm_names_and_notes_are_text(runs):
    doc = _doc()
    evil = "<script>alert(9)</script>"
    doc["arms"][evil] = copy.deepcopy(doc["arms"]["curated"])
    doc["curation"]["notes"] = ["<img src=x onerror=alert(8)>"]
    doc["curation"]["defects"]["clean"]["in_arm"][evil] = doc["curation"]["defects"]["clean"]["in_arm"]["curated"]
    page = _page(runs, doc)
    assert evil not in page and "<img" not in page
    assert "&lt;script&gt;alert(9)&lt;/script&gt;: lower gold loss than random in 2 of 2 seeds" in page  # the verdict
    assert 'data-arm="&lt;script&gt;alert(9)&lt;/script&gt;"' in page and "<title>&lt;script&gt;alert(9)&lt;/script&gt;" in page  # table, chart
    assert "&lt;img src=x onerror=alert(8)&gt;" in page
    assert page.count("<script") == _page(runs).count("<script")


def test_dot_chart_shows_every_value_with_distinct_ticks():
    chart = str(svg.dot_chart([("a", [(1.9715, "a0"), (1.9722, "a1")], "c2"), ("b<", [(1.9757, "b0")], "c7")], "t", "gold loss"))
    assert chart.count("<circle") == 3 and chart.count('class="meantick"') == 2 and "b&lt;" in chart
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]*)</text>', chart)
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks)  # 3 significant digits would print 1.97 for each
    assert svg.distinct_format([1.972, 1.974, 1.976])(1.972) == "1.972" and svg.distinct_format([0.0, 5.0])(5.0) == "5"


def test_text_summary():
    out = ablation_summary(read_ablation(ABLATION))
    assert "curated  60       12     1.9718 ± 0.0005 [1.9715, 1.9722]" in out
    assert "verdict:\n  curated: lower gold loss than random in 2 of 2 seeds" in out


def test_cli_ablation_option(runs, cli, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", *runs, "--ablation", ABLATION, "--no-map", "--out", out)
    assert r.returncode == 0, r.stderr
    assert 'id="ablation"' in out.read_text(encoding="utf-8")
    r = cli("report", *runs, "--ablation", ABLATION / "ablation.json", "--text")
    assert r.returncode == 0 and "top reasons:" in r.stdout and "within seed noise" in r.stdout
    r = cli("report", *runs, "--ablation", tmp_path / "missing", "--no-map")
    assert r.returncode == 2 and str(tmp_path / "missing") in r.stderr and "Traceback" not in r.stderr


def _arm_with_defects(losses: dict[int, float], defects: dict[int, float]) -> dict:
    arm = _arm(losses)
    for row in arm["per_seed"]:
        row["defect_rate"] = defects[row["seed"]]
    arm["defect_rate"] = spread(list(defects.values()))
    return arm


def test_the_verdict_reads_gold_loss_and_defect_rate_together():
    from datagen.report.ablation import overall

    def found(curated_defects: dict[int, float]) -> list:
        doc = {"arms": {"curated": _arm_with_defects({0: 1.0, 1: 1.01, 2: 0.99}, curated_defects),
                        "random": _arm_with_defects({0: 1.2, 1: 1.21, 2: 1.19}, {0: 0.5, 1: 0.52, 2: 0.48})}}
        return parse_ablation(doc).verdicts

    both = found({0: 0.2, 1: 0.22, 2: 0.18})
    assert [v.metric for v in both] == ["loss", "defect_rate"]
    assert both[1].sentence.startswith("curated: lower defect rate than random in 3 of 3 seeds; mean difference -0.3")
    assert both[1].beyond_noise and "lower beyond seed noise" in both[1].sentence
    assert overall(both) == ["Overall: curated beats random beyond seed noise on both gold loss and defect rate."]
    mixed = found({0: 0.8, 1: 0.82, 2: 0.78})  # lower loss, more defects
    assert overall(mixed) == ["Overall: curated is mixed against random: better on gold loss, worse on defect rate, both beyond seed noise."]
    noisy = found({0: 0.1, 1: 0.9, 2: 0.5})  # the same mean as random's, a wide spread
    assert overall(noisy) == ["Overall: curated beats random beyond seed noise on gold loss only; the other is within seed noise."]
    # without defect rates (an older ablation.json): the loss verdict alone, no overall line
    plain = parse_ablation({"arms": {"curated": _arm({0: 1.0}), "random": _arm({0: 1.1})}}).verdicts
    assert [v.metric for v in plain] == ["loss"] and overall(plain) == []
