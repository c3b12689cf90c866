"""charnn export RUN --html OUT.html in a real browser: headless Chromium, driven through
Playwright, opens the page from a file (no server, no network) and checks that it is the model.

Set CHARNN_SCREENSHOT_DIR to keep a screenshot of the shipped model's page (export-page.png).
Skipped only where Playwright's Python package or a Chromium cannot be found.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is not installed "
    '(pip install -e ".[test]")')

import charnn  # noqa: E402
from charnn.cli import main  # noqa: E402

from _tiny_runs import NETWORKS, train_tiny  # noqa: E402
from _browser import CHROMIUM, needs_chromium  # noqa: E402

pytestmark = needs_chromium
SHOTS = os.environ.get("CHARNN_SCREENSHOT_DIR")
PRIMES = ["The ", "The king said to the queen: co", ""]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # offline: a page that tried to fetch anything would fail here
    context = browser.new_context(viewport={"width": 1100, "height": 760}, offline=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def open_page(page, source, out: Path):
    assert main(["export", str(source), "--html", str(out)]) == 0
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    assert not errors
    return errors


def charnn_probabilities(model, prime: str) -> np.ndarray:
    h, x = model.start_state(prime)
    return np.exp(model.log_probabilities(model.advance(h, x)))


@pytest.mark.parametrize("model,layers", NETWORKS)
def test_the_page_is_the_model(page, tmp_path, model, layers):
    run = train_tiny(tmp_path / model, model, layers)
    errors = open_page(page, run, tmp_path / "page.html")
    ours = charnn.load(run, backend="numpy")
    for prime in PRIMES:
        theirs = np.array(page.evaluate("p => charnnProbabilities(p)", prime))
        assert np.abs(theirs - charnn_probabilities(ours, prime)).max() < 1e-5
    # the page writes 500 characters of the model's vocabulary
    page.fill("#length", "500")
    page.fill("#seed", "3")
    page.click("#go")
    playwright_api.expect(page.locator("#out")).to_have_attribute("data-done", "true")
    written = page.locator("#out").inner_text()[len("The "):]
    assert len(written) == 500 and set(written) <= set(ours.vocab.chars)
    assert page.evaluate("() => charnnGenerate('The ', 200, 0.8, 0.9, 5)") == \
        page.evaluate("() => charnnGenerate('The ', 200, 0.8, 0.9, 5)")
    page.fill("#prime", "Zebra")                           # Z is not in its vocabulary
    page.click("#go")
    playwright_api.expect(page.locator("#error")).to_contain_text("never saw")
    assert not errors


def test_the_shipped_models_page(page, tmp_path):
    open_page(page, "shakespeare", tmp_path / "shakespeare.html")
    ours = charnn.load("shakespeare", backend="numpy")
    prime = "ROMEO:\nBut soft, what light "
    theirs = np.array(page.evaluate("p => charnnProbabilities(p)", prime))
    assert np.abs(theirs - charnn_probabilities(ours, prime)).max() < 1e-5
    page.fill("#prime", "ROMEO:\n")
    page.fill("#temperature", "0.7")
    page.fill("#seed", "1")
    page.click("#go")
    playwright_api.expect(page.locator("#out")).to_have_attribute("data-done", "true")
    assert len(page.locator("#out").inner_text()) == len("ROMEO:\n") + 500
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / "export-page.png"), full_page=True)
