"""Screenshots of charnn serve's three views for the README (docs/serve-*.png).

    python scripts/serve_screenshots.py runs/shakespeare-m100 docs/

Serves the run on a free local port, opens the page in headless Chromium (Debian's, through
Playwright) and saves serve-runs.png, serve-generate.png and serve-inside.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from _serve_fixtures import running_server  # noqa: E402
from charnn.serve.app import create_app  # noqa: E402
from charnn.serve.runs import RunTable  # noqa: E402


def main(run: str, out: str, chromium: str = "/usr/bin/chromium") -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = Path(run).name
    with running_server(create_app(RunTable([run], None))) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1150, "height": 800})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/#run={name}&view=runs")
        expect(page.locator("#train-line")).to_have_count(1)
        page.screenshot(path=str(out_dir / "serve-runs.png"), full_page=True)
        page.click("#tabs button[data-view=generate]")
        page.fill("#prime", "ROMEO:")
        page.fill("#length", "400")
        page.fill("#seed", "1")
        page.click("#generate")
        expect(page.locator("#gen-status")).to_have_text("done")
        page.fill("#prime", "ROMEO:\nI")
        page.fill("#beam-length", "60")
        page.fill("#beams", "3")
        page.click("#beam")
        expect(page.locator("#beam-output li")).to_have_count(3)
        page.screenshot(path=str(out_dir / "serve-generate.png"), full_page=True)
        page.click("#tabs button[data-view=inside]")
        expect(page.locator("#units-found button").first).to_be_visible()
        page.locator("#units-found button").first.click()
        page.locator("#inside-view span").nth(60).hover()
        page.screenshot(path=str(out_dir / "serve-inside.png"), full_page=False)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
