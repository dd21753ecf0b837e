"""Screenshots of the quality report's main views for docs/img/ (headless Chromium).

    .venv/bin/python scripts/report_screenshots.py REPORT.html [DUPLICATES_REPORT.html] [--ablation ABLATION_REPORT.html] [--out docs/img]

The first report gives the funnel, score histograms, MinHash curve, embedding map and record
browser; the second, when given, the duplicate clusters (a demo run without duplicates has none);
``--ablation``, the ablation section of a ``datagen ablate`` report (``DIR/report.html``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import browser

VIEWS = {"funnel": "funnel", "scores": "scores", "minhash": "minhash", "map": "map", "browser": "browser"}


def shoot(report: Path, sections: dict[str, str], out: Path, open_first: bool = False) -> None:
    from selenium.webdriver.common.by import By

    d = browser.chrome(1280, 1000)
    try:
        d.get(browser.file_url(report))
        for _ in range(100):
            if d.execute_script("return window.__reportReady"):
                break
            time.sleep(0.05)
        if open_first:
            d.find_element(By.CSS_SELECTOR, "#list .row .sum").click()
        for section, name in sections.items():
            el = d.find_element(By.ID, section)
            d.execute_script("arguments[0].scrollIntoView()", el)
            el.screenshot(str(out / f"report-{name}.png"))
            print(out / f"report-{name}.png")
    finally:
        browser.quit(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=Path)
    ap.add_argument("duplicates", type=Path, nargs="?")
    ap.add_argument("--ablation", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    shoot(a.report, {k: v for k, v in VIEWS.items() if k != "browser"}, a.out)
    shoot(a.report, {"browser": "browser"}, a.out, open_first=True)
    if a.duplicates:
        shoot(a.duplicates, {"duplicates": "duplicates"}, a.out)
    if a.ablation:
        shoot(a.ablation, {"ablation": "ablation"}, a.out)


if __name__ == "__main__":
    main()
