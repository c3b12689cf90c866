"""charnn serve in a real browser: headless Chromium, driven through Playwright, loads the
page from a server on a free local port and checks what a user sees.

Set CHARNN_CHROMIUM to choose the browser binary; set CHARNN_SCREENSHOT_DIR to keep a
screenshot of each view (serve-runs.png, serve-generate.png, serve-inside.png). Skipped only
where Playwright's Python package or a Chromium cannot be found.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright's Python package is not installed "
    '(pip install -e ".[test]")')

from charnn.run_folder import LOG_FIELDS  # noqa: E402
from charnn.serve.app import AccessPolicy, create_app  # noqa: E402
from charnn.serve.runs import RunTable  # noqa: E402

from _serve_fixtures import running_server, train_run  # noqa: E402
from _browser import CHROMIUM, needs_chromium  # noqa: E402

pytestmark = needs_chromium
SHOTS = os.environ.get("CHARNN_SCREENSHOT_DIR")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("browser") / "runs"
    runs.mkdir()
    train_run(runs / "small")                 # first by name: the run the page opens on
    train_run(runs / "stacked-rnn", updates=20, layers=2, hidden=6)
    train_run(runs / "stacked-mlstm", updates=20, model="mlstm", layers=2, hidden=6)
    return runs


@pytest.fixture(scope="module")
def url(runs_dir):
    with running_server(create_app(RunTable([], runs_dir), backend="numpy")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        # Two made-up names for this machine: a page on another site (evil.test), and a
        # DNS-rebinding page (rebind.test) whose name resolves to the server's own address.
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu",
                                          "--disable-dev-shm-usage",
                                          "--host-resolver-rules=MAP evil.test 127.0.0.1, "
                                          "MAP rebind.test 127.0.0.1"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(10_000)
    yield page
    page.close()


def shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_runs_list_and_a_loss_curve_that_grows_with_the_log(page, url, runs_dir):
    page.goto(f"{url}/?poll=300")
    row = page.locator("#runs-table tbody tr[data-run=small]")
    playwright_api.expect(row).to_contain_text("vanilla RNN, m = 16")
    playwright_api.expect(row).to_contain_text("300 / 300")
    curve = page.locator("#curve")
    playwright_api.expect(curve).to_have_attribute("data-points", "31")
    assert page.locator("#train-line").get_attribute("points").count(",") == 31
    shot(page, "serve-runs.png")
    with open(runs_dir / "small" / "log.csv", "a", newline="") as f:     # training goes on
        writer = csv.DictWriter(f, LOG_FIELDS)
        for it in range(310, 410, 10):
            writer.writerow({"iteration": it, "epoch": 3, "loss": 50.0, "smooth_loss": 55.0,
                             "val_loss": "", "val_bpc": "", "elapsed": 1.0})
    playwright_api.expect(curve).to_have_attribute("data-points", "41")
    playwright_api.expect(curve).to_have_attribute("data-last-iteration", "400")
    playwright_api.expect(row).to_contain_text("400 / 300")


def test_each_run_is_named_by_its_network(page, url):
    page.goto(f"{url}/?poll=300")
    for run, label in (("small", "vanilla RNN, m = 16"),
                       ("stacked-rnn", "vanilla RNN, 2 layers, m = 6"),
                       ("stacked-mlstm", "multiplicative LSTM, 2 layers, m = 6")):
        playwright_api.expect(page.locator(f"#runs-table tbody tr[data-run={run}]")
                              ).to_contain_text(label)


def test_generated_text_appears(page, url):
    page.goto(f"{url}/#run=small&view=generate")
    page.fill("#prime", "He said")
    page.fill("#length", "300")
    page.fill("#seed", "2")
    page.click("#generate")
    playwright_api.expect(page.locator("#gen-status")).to_have_text("done")
    text = page.locator("#gen-output").text_content()
    assert text.startswith("He said") and len(text) == len("He said") + 300
    page.fill("#beam-length", "30")
    page.click("#beam")
    playwright_api.expect(page.locator("#beam-output li")).to_have_count(5)
    assert "total log-probability" in page.locator("#beam-output li").first.text_content()
    shot(page, "serve-generate.png")


def test_a_bad_request_shows_its_message(page, url):
    page.goto(f"{url}/#run=small&view=generate")
    page.fill("#temperature", "0")
    page.click("#generate")
    error = page.locator("#error")
    playwright_api.expect(error).to_be_visible()
    playwright_api.expect(error).to_contain_text("temperature is 0.0")
    page.fill("#temperature", "1")
    page.fill("#prime", "Zebra")
    page.click("#generate")
    playwright_api.expect(error).to_contain_text("never saw")
    page.goto(f"{url}/?reload=1#run=nope&view=runs")
    playwright_api.expect(error).to_contain_text("no run named 'nope'")


def test_look_inside_hover_top5_and_another_unit_changes_the_colours(page, url):
    page.goto(f"{url}/#run=small&view=inside")
    spans = page.locator("#inside-view span")
    playwright_api.expect(spans.first).to_be_visible()
    assert "sample" in page.locator("#inside-source").text_content()
    text = 'He said "no, not now" (quietly).\nShe sang.\n'
    page.fill("#inside-text", text)
    page.click("#analyse")
    playwright_api.expect(spans).to_have_count(len(text))
    colours = lambda: spans.evaluate_all(  # noqa: E731
        "ss => ss.map(s => getComputedStyle(s).backgroundColor)")
    before = colours()
    spans.nth(5).hover()
    tip = page.locator("#tip")
    playwright_api.expect(tip).to_be_visible()
    playwright_api.expect(tip.locator("table.top5 tr")).to_have_count(5)
    assert "loss" in tip.text_content()
    shot(page, "serve-inside.png")
    page.fill("#unit", "7")
    playwright_api.expect(page.locator("#inside-view")).to_have_attribute("data-unit", "7")
    assert colours() != before
    found = page.locator("#units-found button")
    assert found.count() >= 3
    found.first.click()
    playwright_api.expect(page.locator("#inside-view")).to_have_attribute(
        "data-unit", found.first.get_attribute("data-unit"))
    page.check("input[name=colour][value=surprise]")
    assert "bits per character" in page.locator("#inside-legend").text_content()


# -- only this machine's own page may use the API ---------------------------------------------

def recording(app, seen: list):
    """The app, noting (method, path, status) of each answer it gives."""
    async def recorded(scope, receive, send):
        async def noted(message):
            if message["type"] == "http.response.start":
                seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)
        return await app(scope, receive, noted)
    return recorded


@pytest.fixture(scope="module")
def watched(runs_dir):
    """A server whose answers are noted: (its URL, the list of answers)."""
    seen: list = []
    app = create_app(RunTable([], runs_dir), backend="numpy")
    with running_server(recording(app, seen)) as url:
        yield url, seen


@pytest.fixture(scope="module")
def other_site():
    """A second server on this machine: another origin, with a page of its own."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(
        "<!doctype html><title>another site</title><p>nothing to see</p>"))])
    with running_server(app) as url:
        yield url


# What a page on another origin tries: read the runs (a CORS request, and a no-cors one),
# start a beam search with a "simple" POST that needs no preflight and with a GET, look inside
# with a text/plain POST and with JSON (preflighted), and load the default text as an image
# (no Origin header at all).
ATTACKS = """async (api) => {
  const out = {};
  const attempt = async (name, request) => {
    try {
      const r = await request();
      out[name] = { status: r.status, type: r.type,
                    body: r.type === "opaque" ? "" : await r.text() };
    } catch (e) { out[name] = { error: String(e) }; }
  };
  await attempt("list", () => fetch(api + "/api/runs"));
  await attempt("list-no-cors", () => fetch(api + "/api/runs", { mode: "no-cors" }));
  await attempt("beam", () => fetch(api + "/api/runs/small/beam", {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
    body: JSON.stringify({ length: 5 }) }));
  await attempt("beam-get", () => fetch(api + "/api/runs/small/beam?length=5",
                                       { mode: "no-cors" }));
  await attempt("analyse-text", () => fetch(api + "/api/runs/small/analyse", {
    method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" },
    body: JSON.stringify({ text: "He" }) }));
  await attempt("analyse", () => fetch(api + "/api/runs/small/analyse", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text: "He" }) }));
  await attempt("image", () => new Promise((resolve) => {
    const img = new Image();
    img.onload = img.onerror = () => resolve({ status: 0, type: "image" });
    img.src = api + "/api/runs/small/text";
  }));
  return out;
}"""


@pytest.mark.parametrize("site", ["same machine, another port", "another site"])
def test_a_page_on_another_origin_cannot_use_the_api(page, watched, other_site, site):
    url, seen = watched
    origin = other_site if site.startswith("same") else \
        other_site.replace("127.0.0.1", "evil.test")
    page.goto(f"{origin}/")
    seen.clear()
    out = page.evaluate(ATTACKS, url)
    assert all(not r.get("body") for r in out.values()), out      # nothing was read
    assert "small" not in str(out)
    api = [s for s in seen if s[1].startswith("/api/")]
    assert len(api) >= 6, seen           # the requests reached the server, which refused each
    assert all(status == 403 for _, _, status in api), seen
    assert ("POST", "/api/runs/small/beam", 403) in api
    assert ("POST", "/api/runs/small/analyse", 403) in api             # the text/plain one
    assert ("OPTIONS", "/api/runs/small/analyse", 403) in api          # the JSON one's preflight


def test_a_dns_rebinding_page_gets_nothing(page, watched):
    """A name that resolves to this machine (as an attacker's DNS answers, once its page has
    loaded) makes the API the page's own origin: the Host header is what tells them apart."""
    url, seen = watched
    port = url.rsplit(":", 1)[1]
    response = page.goto(f"http://rebind.test:{port}/")
    assert response.status == 403 and "does not name this server" in response.text()
    out = page.evaluate("""async () => {
      const r = await fetch("/api/runs");
      return { status: r.status, body: await r.text() };
    }""")
    assert out["status"] == 403 and "small" not in out["body"]


def test_a_server_with_a_token_works_from_its_token_address_only(browser, runs_dir):
    policy = AccessPolicy.for_address("0.0.0.0", token="browser-token")
    with running_server(create_app(RunTable([], runs_dir), backend="numpy",
                                   policy=policy)) as url:
        with_token = browser.new_context()
        page = with_token.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{url}/?token=browser-token#view=runs")
        row = page.locator("#runs-table tbody tr[data-run=small]")
        playwright_api.expect(row).to_contain_text("vanilla RNN, m = 16")
        assert "token" not in page.url                       # it left the address bar
        page.reload()                                        # the cookie keeps it
        playwright_api.expect(row).to_contain_text("vanilla RNN, m = 16")
        with_token.close()
        without = browser.new_context()
        page = without.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{url}/")
        playwright_api.expect(page.locator("#error")).to_contain_text("needs its token")
        assert page.locator("#runs-table tbody tr").count() == 0
        without.close()
