"""Regenerates docs/images/serve_page.png: the web page of `kdiqa serve` with the README's examples, sorted.

Needs Chromium, its driver and selenium (see tests/test_browser.py). Run from the repository root:
    python docs/screenshot.py [--model default]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from kdiqa.cli_serve import _description
from kdiqa.hub import load
from kdiqa.predict import TorchBackend
from kdiqa.serve import create_app
from kdiqa.serve.local import serve_in_thread

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "serve_page.png"))
    args = ap.parse_args()
    photos = sorted((ROOT / "examples" / "images").glob("*.jpg"))
    opts = Options()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1120", "--hide-scrollbars"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        with serve_in_thread(
            create_app(TorchBackend(load(args.model), channels_last=True), description=_description(args.model))
        ) as url:
            browser.get(url + "/")
            browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in photos))
            WebDriverWait(browser, 120).until(
                lambda b: len(b.find_elements(By.CSS_SELECTOR, ".card[data-score]")) == len(photos)
            )
            browser.find_element(By.ID, "sort").click()
            browser.save_screenshot(args.out)
    finally:
        browser.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
