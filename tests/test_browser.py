"""The web page in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by selenium.

Skipped, with the reason, where Chromium, its driver or selenium is missing; `.ci/run` installs them where
it can.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import kdiqa
from kdiqa.predict import TorchBackend
from kdiqa.serve import create_app
from kdiqa.serve.local import serve_in_thread

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def chromium():
    """A headless Chromium session (no sandbox: CI runs as root)."""
    if not CHROMIUM or not DRIVER:
        pytest.skip("needs Chromium and its driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def test_the_page_scores_photos_shows_their_maps_and_sorts_them():
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    backend = TorchBackend(kdiqa.load("edge"))
    photos = [EXAMPLES / "coffee_blur.jpg", EXAMPLES / "coffee.jpg"]
    expected = {p.name: backend.score(p) for p in photos}
    browser = chromium()
    try:
        with serve_in_thread(create_app(backend)) as url:
            browser.get(url + "/")
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: b.find_element(By.ID, "model").text == backend.name)
            browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in photos))
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".card[data-score]")) == 2)
            cards = browser.find_elements(By.CSS_SELECTOR, ".card")
            seen = {c.find_element(By.CSS_SELECTOR, ".name").text: c for c in cards}
            assert set(seen) == set(expected)
            for name, c in seen.items():
                assert float(c.find_element(By.CSS_SELECTOR, ".score").text) == pytest.approx(expected[name], abs=0.06)
                overlay = c.find_element(By.CSS_SELECTOR, "img.overlay")
                assert overlay.get_attribute("src").startswith("data:image/png;base64,") and overlay.is_displayed()
                assert browser.execute_script("return arguments[0].naturalWidth", overlay) > 0  # the PNG decoded
                assert not c.find_element(By.CSS_SELECTOR, "img.photo").is_displayed()  # the map replaces the photo
            browser.find_element(By.ID, "sort").click()
            names = [
                c.find_element(By.CSS_SELECTOR, ".name").text for c in browser.find_elements(By.CSS_SELECTOR, ".card")
            ]
            assert names == sorted(expected, key=expected.get, reverse=True)  # best first
            assert names[0] == "coffee.jpg"
            browser.find_element(By.ID, "show-map").click()  # maps off: the photos come back
            assert all(img.is_displayed() for img in browser.find_elements(By.CSS_SELECTOR, "img.photo"))
            assert not any(img.is_displayed() for img in browser.find_elements(By.CSS_SELECTOR, "img.overlay"))
    finally:
        browser.quit()
