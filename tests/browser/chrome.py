"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver: for the browser tests and for the
README's screenshot (`python -m tests.browser.chrome URL OUT.png`, e.g. the console of `make run`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1440, 900)


def missing() -> list[str]:
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


def chrome() -> Any:
    """A headless Chromium of a fixed window size (screenshots of the same page look the same)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1", "--lang=en-US",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(30)
    return browser


def screenshot(url: str, out: Path, view: str = "dashboard", timeout: float = 30.0) -> None:
    """Open `url`, wait until the console has loaded `view`, and save the window as PNG."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chrome()
    try:
        browser.get(url)
        WebDriverWait(browser, timeout).until(
            lambda d: d.execute_script("return document.body.dataset.loaded") == view, f"the {view} view loaded")
        WebDriverWait(browser, timeout).until(  # the health pill answers on its own (Service Bus takes a second)
            lambda d: d.execute_script("return document.getElementById('health').textContent") != "\u2026",
            "the health pill")
        out.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(out))
    finally:
        browser.quit()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m tests.browser.chrome URL OUT.png [VIEW]")
    screenshot(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
