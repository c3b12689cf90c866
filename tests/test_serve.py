"""charnn serve over HTTP: the run list, the log, generation as server-sent events, beam
search, look-inside, and every bad request answered with a 4xx and a JSON message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="httpx (for Starlette's TestClient) is not installed")

from starlette.testclient import TestClient  # noqa: E402

from charnn import cli  # noqa: E402
from charnn.run_folder import RunFolder  # noqa: E402
from charnn.serve.app import create_app  # noqa: E402
from charnn.serve.runs import RunTable  # noqa: E402

from _serve_fixtures import running_server, train_run  # noqa: E402


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    runs = root / "runs"
    runs.mkdir()
    train_run(runs / "small")
    broken = runs / "broken"                        # a run whose checkpoint is corrupt
    broken.mkdir()
    for name in ("config.json", "log.csv"):
        (broken / name).write_bytes((runs / "small" / name).read_bytes())
    (broken / "best.npz").write_bytes((runs / "small" / "best.npz").read_bytes()[:2000])
    (root / "secret.txt").write_text("not for the server")
    return runs


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(create_app(RunTable([], runs_dir), backend="numpy")) as c:
        yield c


def sse(text: str) -> list[tuple[str, object]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_runs_are_listed_with_their_losses(client):
    runs = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(runs) == {"small", "broken"}
    small = runs["small"]
    assert small["network"] == "vanilla RNN, m = 16, K = 28"
    assert small["iteration"] == 300 and small["total_updates"] == 300
    assert 0 < small["best_loss"] <= small["latest_loss"] + 1e-9
    assert 0 < small["best_val_bpc"] <= small["val_bpc"] and small["training"] is False


def test_the_log_has_training_and_validation_rows(client):
    doc = client.get("/api/runs/small/log").json()
    assert [p[0] for p in doc["train"]] == list(range(0, 301, 10))
    assert [p[0] for p in doc["val"]] == [0, 100, 200, 300]


def test_a_run_that_trains_shows_as_training(client, runs_dir):
    folder = RunFolder(runs_dir / "small")
    folder.acquire()
    try:
        runs = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
        assert runs["small"]["training"] is True
    finally:
        folder.release()


def test_generation_streams_what_generate_draws(client, runs_dir):
    import charnn
    r = client.get("/api/runs/small/generate",
                   params={"prime": "He", "length": 150, "seed": 3, "temperature": 0.7})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == ("done", None)
    text = "".join(data for kind, data in events if kind == "text")
    model = charnn.load(runs_dir / "small", backend="numpy")
    assert text == model.generate(150, prime="He", temperature=0.7, seed=3)
    assert len([k for k, _ in events if k == "text"]) == 3       # blocks of 64 characters


def test_beam_search_over_http(client):
    doc = client.get("/api/runs/small/beam", params={"prime": "She", "length": 20,
                                                     "beams": 3}).json()
    assert len(doc["beams"]) == 3 and doc["beams"][0]["logprob"] >= doc["beams"][1]["logprob"]


def test_look_inside_gives_states_top5_losses_and_units(client):
    text = 'He said "no" (one).\nShe sang.\n'
    doc = client.post("/api/runs/small/analyse", json={"text": text}).json()
    assert doc["chars"] == list(text)
    (layer,) = doc["layers"]
    assert layer["units"] == 16 and len(layer["states"]) == 16
    assert all(len(row) == len(text) for row in layer["states"])
    assert doc["loss"][0] is None and all(x >= 0 for x in doc["loss"][1:])
    assert all(len(t) == 5 for t in doc["top"])
    assert {u["feature"] for u in doc["units"]} >= {"in_quotes", "in_parentheses"}
    default = client.get("/api/runs/small/text").json()
    assert default["text"] and "sample" in default["source"]


@pytest.mark.parametrize("path, status, message", [
    ("/api/runs/nope/log", 404, "no run named 'nope'"),
    ("/api/runs/small/generate?temperature=0", 400, "temperature is 0.0"),
    ("/api/runs/small/generate?temperature=-1", 400, "temperature is -1.0"),
    ("/api/runs/small/generate?temperature=nan", 400, "finite"),
    ("/api/runs/small/generate?top_p=1.5", 400, "top-p is 1.5"),
    ("/api/runs/small/generate?top_k=-2", 400, "top_k is -2"),
    ("/api/runs/small/generate?length=10000000", 400, "length is 10000000"),
    ("/api/runs/small/generate?length=ten", 400, "length is 'ten'"),
    ("/api/runs/small/generate?prime=XYZ", 400, "never saw"),
    ("/api/runs/small/beam?beams=1000", 400, "beams is 1000"),
    ("/api/runs/broken/generate", 422, "not a readable checkpoint"),
    ("/api/runs/broken/text", 422, "not a readable checkpoint"),
])
def test_bad_requests_get_a_4xx_with_a_json_message(client, path, status, message):
    r = client.get(path)
    assert r.status_code == status and message in r.json()["error"]


def test_bad_look_inside_requests(client):
    assert client.post("/api/runs/small/analyse", content=b"{").status_code == 400
    r = client.post("/api/runs/small/analyse", json={"text": "x" * 6000})
    assert r.status_code == 400 and "at most" in r.json()["error"]
    r = client.post("/api/runs/small/analyse", json={"text": "Zebra"})
    assert r.status_code == 400 and "'Zb'" in r.json()["error"]


@pytest.mark.parametrize("name", [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "..%252F..%252Fetc%252Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "..", ".", "%2e%2e", "..%5c..%5csecret.txt",
    "%2Fetc%2Fpasswd", "small%2F..%2F..%2Fsecret.txt", "small/../../secret.txt"])
def test_no_request_reaches_outside_the_run_folders(client, runs_dir, name):
    for what in ("log", "text", "generate", "beam"):
        r = client.get(f"/api/runs/{name}/{what}")
        assert r.status_code == 404, (name, what, r.text)
        assert "root:" not in r.text and "not for the server" not in r.text
    index = client.get("/").text
    for path in (f"/{name}", f"/static/{name}", f"/{name}/secret.txt"):
        r = client.get(path)               # the client folds "/.." into "/": the page
        assert r.status_code == 404 or r.text == index, path
        assert "root:" not in r.text and "not for the server" not in r.text


def test_raw_traversal_paths_are_refused(runs_dir):
    """Paths sent byte for byte (no client normalises the dots away)."""
    import http.client
    app = create_app(RunTable([], runs_dir), backend="numpy")
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        for path in ("/../../etc/passwd", "/api/runs/../../etc/passwd/log",
                     "/api/runs/..%2f..%2fetc%2fpasswd/log", "/..%2f..%2fsecret.txt",
                     "/api/runs/small/../../../secret.txt"):
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            conn.close()
            assert response.status == 404 and "root:" not in body, path
            assert "not for the server" not in body


def test_a_slow_request_does_not_block_others(runs_dir, monkeypatch):
    from charnn.trained import TrainedModel
    analyse = TrainedModel.analyse

    def slow_analyse(self, *args, **kwargs):
        time.sleep(2.0)
        return analyse(self, *args, **kwargs)

    monkeypatch.setattr(TrainedModel, "analyse", slow_analyse)
    app = create_app(RunTable([], runs_dir), backend="numpy")
    with running_server(app) as url:
        urllib.request.urlopen(f"{url}/api/runs/small/text", timeout=30).read()  # loads it
        slow = threading.Thread(target=lambda: urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/runs/small/analyse", data=b'{"text": "He said"}',
            headers={"Content-Type": "application/json"}), timeout=30).read())
        slow.start()
        time.sleep(0.3)
        start = time.monotonic()
        urllib.request.urlopen(f"{url}/api/runs", timeout=30).read()
        urllib.request.urlopen(f"{url}/api/runs/small/beam?length=5", timeout=30).read()
        assert time.monotonic() - start < 1.5
        assert slow.is_alive()
        slow.join(30)


def test_a_stream_stops_when_the_client_goes_away(runs_dir, monkeypatch):
    from charnn.trained import TrainedModel

    def slow_generate(self, length, *args, on_text=None, **kwargs):
        for _ in range(length):                 # a character every 10 ms: 10 s in all
            on_text("a")
            time.sleep(0.01)
        return "a" * length

    monkeypatch.setattr(TrainedModel, "generate", slow_generate)
    app = create_app(RunTable([], runs_dir), backend="numpy")
    with running_server(app) as url:
        response = urllib.request.urlopen(f"{url}/api/runs/small/generate?length=1000",
                                          timeout=30)
        assert response.readline().startswith(b"event: text")
        assert app.state.active_streams == 1
        response.close()
        start = time.monotonic()
        while app.state.active_streams and time.monotonic() - start < 5:
            time.sleep(0.05)
        assert app.state.active_streams == 0 and time.monotonic() - start < 2


def test_serve_command_prints_the_url_and_stops_on_ctrl_c(runs_dir, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "charnn.cli", "serve", str(runs_dir / "small"), "--runs-dir",
         str(tmp_path), "--port", str(port), "--backend", "numpy"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "small" in line
        deadline = time.monotonic() + 15
        while True:
            try:
                doc = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs",
                                                       timeout=5))
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert [r["name"] for r in doc["runs"]] == ["small"]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "app.js" in page and "http" not in page.replace("http-equiv", "")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "charnn[serve]"' in err


def test_static_files_are_package_data_and_fetch_nothing_from_elsewhere():
    from importlib import resources
    web = resources.files("charnn").joinpath("web")
    for name in ("index.html", "app.js", "style.css"):
        text = web.joinpath(name).read_text()
        assert "://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_a_given_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
