"""`datagen report` in a real headless Chromium: the page renders offline, shows the numbers of
stats.json, never runs a record's text, and its record browser finds records.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the ``selenium`` package
(dev extra); skipped, saying so, where they are missing."""

from __future__ import annotations

import json
import time

import browser
import pytest
from report_fixtures import NEEDLE, XSS, pipeline

why = browser.missing()
pytestmark = pytest.mark.skipif(why is not None, reason=f"browser tests need Chromium: {why}")


@pytest.fixture(scope="module")
def report(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("report")
    paths, named = pipeline(root)
    train = root / "train"
    train.mkdir()
    (train / "log_history.json").write_text(json.dumps([{"loss": 2.0, "step": 1}, {"loss": 1.2, "step": 2}, {"eval_loss": 1.5, "step": 2}]))
    results = root / "results.json"
    results.write_text(json.dumps({"eval_loss": 1.5, "samples": [{"prompt": "Say <b>hi</b>", "generation": "<script>alert(3)</script>hi"}]}))
    from conftest import run_cli

    r = run_cli("report", *paths, "--train", train, "--eval", results, "--cache-dir", root / "cache")
    assert r.returncode == 0, r.stderr
    return paths, named, paths[-1] / "report.html"


@pytest.fixture(scope="module")
def page(report):
    d = browser.chrome()
    d.get_log("performance")  # drop what the browser fetched for itself before the test
    d.get(browser.file_url(report[2]))
    for _ in range(200):
        if d.execute_script("return window.__reportReady"):
            break
        time.sleep(0.05)
    yield d
    browser.quit(d)


def _wait(cond, timeout: float = 10.0):
    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _shown(page) -> list[str]:
    """Ids of the records the browser lists now."""
    return page.execute_script("return Array.from(document.querySelectorAll('#list .row')).map(r => r.getAttribute('data-id'))")


def test_renders_offline_without_errors(page, report):
    assert page.execute_script("return window.__reportReady") is not None
    assert browser.console_errors(page) == []
    urls = browser.page_requests(page, browser.file_url(report[2]))
    assert urls == [browser.file_url(report[2])], urls
    for section in ("funnel", "scores", "minhash", "duplicates", "map", "breakdown", "browser", "training", "eval"):
        assert page.find_element("id", section).is_displayed()
    assert page.find_elements("id", "ablation") == []  # no --ablation, no section


def test_funnel_numbers_match_stats_json(page, report):
    paths = report[0]
    shown = {}
    for tr in page.find_elements("css selector", "table.funnel tbody tr"):
        reasons = {s.get_attribute("data-reason"): int(s.get_attribute("data-count")) for s in tr.find_elements("css selector", ".reason")}
        cells = [int(tr.find_element("css selector", c).text) for c in (".f-in", ".f-out", ".f-rej")]
        shown[(tr.get_attribute("data-run"), tr.get_attribute("data-stage"))] = (*cells, reasons)
    expected = {}
    for p in paths:
        for name, s in json.loads((p / "stats.json").read_text())["stages"].items():
            if name != "read" or s["rejected_total"]:
                expected[(p.name, name)] = (s["in"], s["out"], s["rejected_total"], s["rejected"])
    assert shown == expected
    assert page.find_element("id", "total-curated").text == "3"


def test_script_in_a_record_is_text_and_never_runs(page, report):
    named = report[1]
    q = page.find_element("id", "q")
    q.clear()
    q.send_keys("alert(1)")
    _wait(lambda: _shown(page) == [named["xss"].id])
    (row,) = page.find_elements("css selector", "#list .row")
    row.find_element("css selector", ".sum").click()
    text = row.find_element("css selector", ".detail").text
    assert "<script>alert(1)</script>" in text and "</script><img src=x onerror=alert(2)>" in text
    assert page.execute_script("return document.querySelectorAll('img').length") == 0
    assert page.execute_script("return document.scripts.length") == 4  # the three JSON blocks and the page script
    assert page.execute_script("return document.getElementById('details').textContent.indexOf('</script>')") == -1
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.text  # noqa: B018
    assert XSS.split("\u2028")[0] in page.execute_script("return JSON.parse(document.getElementById('details').textContent).map(d => d.m[0][1]).join('|')")
    assert "<script>alert(3)</script>hi" in page.find_element("id", "eval").text  # eval samples are text too


def test_search_finds_a_record_and_filters_narrow(page, report):
    named = report[1]
    q = page.find_element("id", "q")
    q.clear()
    q.send_keys(NEEDLE.upper())
    _wait(lambda: _shown(page) == [named["b"].id])
    assert page.find_element("id", "count").text == "1 of 12 records"
    q.clear()
    q.send_keys(" ")
    _wait(lambda: page.find_element("id", "count").text == "12 of 12 records")
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "f-reason")).select_by_visible_text("near_duplicate")
    _wait(lambda: page.find_element("id", "count").text == "2 of 12 records")
    Select(page.find_element("id", "f-reason")).select_by_index(0)
    Select(page.find_element("id", "f-status")).select_by_value("curated")
    _wait(lambda: page.find_element("id", "count").text == "3 of 12 records")
    Select(page.find_element("id", "f-status")).select_by_index(0)


def test_cluster_link_opens_the_record_with_its_lineage(page, report):
    named = report[1]
    link = page.find_element("css selector", f'#duplicates a.rid[data-id="{named["near1"].id}"]')
    page.execute_script("arguments[0].click()", link)
    _wait(lambda: _shown(page) == [named["near1"].id])
    detail = page.find_element("css selector", "#list .row .detail")
    assert "near_duplicate" in detail.text and "0.86" in detail.text
    assert page.find_element("id", "last-eval-loss").text == "1.5"


def test_ablation_section_shows_the_arms(tmp_path):
    """--ablation (a real-shaped ablation.json plus an arm whose name is markup): the page loads
    without console errors, the section is in the navigation and its table shows every arm."""
    from conftest import DATA, run_cli

    paths, _ = pipeline(tmp_path)
    doc = json.loads((DATA / "ablation" / "ablation.json").read_text(encoding="utf-8"))
    doc["arms"]["<script>alert(9)</script>"] = doc["arms"]["curated"]
    (tmp_path / "ablation.json").write_text(json.dumps(doc), encoding="utf-8")
    r = run_cli("report", *paths, "--ablation", tmp_path / "ablation.json", "--no-map")
    assert r.returncode == 0, r.stderr
    d = browser.chrome()
    try:
        d.get(browser.file_url(paths[-1] / "report.html"))
        _wait(lambda: d.execute_script("return window.__reportReady"))
        assert browser.console_errors(d) == []
        assert d.find_element("css selector", 'nav a[href="#ablation"]').text == "Ablation"
        assert d.find_element("id", "ablation").is_displayed()
        rows = d.find_elements("css selector", "#ablation table.arms tbody tr")
        assert [tr.get_attribute("data-arm") for tr in rows] == ["curated", "random", "<script>alert(9)</script>"]
        cells = [td.text for td in rows[0].find_elements("css selector", "td")]
        assert cells[:3] == ["curated", "60", "12"] and "1.9718 ± 0.0005 [1.9715, 1.9722]" in cells
        assert len(d.find_elements("css selector", "#ablation svg circle")) == 6  # one dot per (arm, seed)
        assert "lower gold loss than random in 2 of 2 seeds" in d.find_element("css selector", "#ablation .verdict").text
        assert d.execute_script("return document.scripts.length") == 4
    finally:
        browser.quit(d)
