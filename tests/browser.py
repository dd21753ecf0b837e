"""Headless Chromium for tests and screenshots, driven by Selenium through /usr/bin/chromedriver.

Network requests are logged through the DevTools performance log (``goog:loggingPrefs``), so a
test can assert that a page fetched nothing but itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio")


def missing() -> str | None:
    """Why no browser can be started here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    return None


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A fresh headless Chromium (own temporary profile) with performance and browser logs on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    profile = tempfile.mkdtemp(prefix="datagen-chromium-")
    for flag in FLAGS + (f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver._datagen_profile = profile  # removed by quit()
    return driver


def quit(driver: Any) -> None:
    profile = getattr(driver, "_datagen_profile", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)


def requests(driver: Any) -> list[tuple[str, str]]:
    """``(url, document url)`` of every request sent since the last call (DevTools performance
    log). The document url tells the page's own requests from the browser's (its new-tab page)."""
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            p = msg["params"]
            out.append((p["request"]["url"], p.get("documentURL", "")))
    return out


def page_requests(driver: Any, page_url: str) -> list[str]:
    """URLs the page at ``page_url`` requested (itself included), and any network request at
    all (http, https, ws, wss) whoever sent it."""
    return [u for u, doc in requests(driver) if doc == page_url or u.split(":", 1)[0] in ("http", "https", "ws", "wss")]


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def file_url(path: str | Path) -> str:
    return Path(path).resolve().as_uri()
