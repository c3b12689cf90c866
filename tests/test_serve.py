"""charnn serve over HTTP: the run list, the log, generation as server-sent events, beam
search, look-inside, and every bad request answered with a 4xx and a JSON message; bodies
and model work bounded, and only this machine's own page (or a browser with the token)
answered."""

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

BASE = "http://127.0.0.1:8000"            # the address a browser on this machine uses


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
    with open(broken / "log.csv", "a") as f:       # and a log row that is not numbers
        f.write("310,3,x,y,,,1.0\n")
    (root / "secret.txt").write_text("not for the server")
    return runs


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(create_app(RunTable([], runs_dir), backend="numpy"), base_url=BASE) as c:
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


def test_the_settings_line_states_the_network(client):
    doc = client.get("/api/runs/small/log").json()
    settings = doc["summary"]["settings"]
    assert list(settings)[:3] == ["model", "layers", "hidden"]
    assert settings["model"] == "rnn" and settings["layers"] == 1 and settings["hidden"] == 16
    assert settings["dtype"] == "float64"


def test_a_stacked_run_is_labelled_as_what_it_is(tmp_path):
    import charnn
    from _serve_fixtures import SERVE_TEXT
    text = tmp_path / "t.txt"
    text.write_text(SERVE_TEXT, encoding="utf-8")
    corpus = charnn.load_corpus(text)
    config = charnn.TrainConfig(model="gru", layers=2, hidden=6, dropout=0.1, updates=4,
                                backend="numpy", sample_every=4, log_every=2,
                                checkpoint_every=4, dtype="float32")
    charnn.Trainer(corpus, config, tmp_path / "runs" / "gru").run()
    summary = RunTable([], tmp_path / "runs").get("gru").summary()
    assert summary["network"] == f"GRU, 2 layers, m = 6, K = {len(corpus.vocab)}, dropout 0.1"
    assert summary["settings"]["model"] == "gru" and summary["settings"]["layers"] == 2
    assert summary["settings"]["dropout"] == 0.1 and summary["settings"]["dtype"] == "float32"


def test_a_run_whose_config_is_unreadable_is_still_listed(tmp_path):
    (tmp_path / "runs" / "odd").mkdir(parents=True)
    (tmp_path / "runs" / "odd" / "config.json").write_text("{not json")
    summary = RunTable([], tmp_path / "runs").get("odd").summary()
    assert summary["network"] == "?" and summary["settings"] == {}


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
    r = client.post("/api/runs/small/generate",
                    json={"prime": "He", "length": 150, "seed": 3, "temperature": 0.7})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == ("done", None)
    text = "".join(data for kind, data in events if kind == "text")
    model = charnn.load(runs_dir / "small", backend="numpy")
    assert text == model.generate(150, prime="He", temperature=0.7, seed=3)
    assert len([k for k, _ in events if k == "text"]) == 3       # blocks of 64 characters


def test_beam_search_over_http(client):
    doc = client.post("/api/runs/small/beam", json={"prime": "She", "length": 20,
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


@pytest.mark.parametrize("path, body, status, message", [
    ("/api/runs/nope/log", None, 404, "no run named 'nope'"),
    ("/api/runs/small/generate", {"temperature": 0}, 400, "temperature is 0.0"),
    ("/api/runs/small/generate", {"temperature": -1}, 400, "temperature is -1.0"),
    ("/api/runs/small/generate", {"temperature": "nan"}, 400, "finite"),
    ("/api/runs/small/generate", {"temperature": 1e6}, 400, "temperature is 1000000.0"),
    ("/api/runs/small/generate", {"top_p": 1.5}, 400, "top-p is 1.5"),
    ("/api/runs/small/generate", {"top_k": -2}, 400, "top_k is -2"),
    ("/api/runs/small/generate", {"length": 10000000}, 400, "length is 10000000"),
    ("/api/runs/small/generate", {"length": "ten"}, 400, "length is 'ten'"),
    ("/api/runs/small/generate", {"length": 2.5}, 400, "length is 2.5"),
    ("/api/runs/small/generate", {"length": True}, 400, "length is true"),
    ("/api/runs/small/generate", {"length": [5]}, 400, "length is [5]"),
    ("/api/runs/small/generate", {"seed": 2**64}, 400, "seed is"),
    ("/api/runs/small/generate", {"seed": "9" * 5000}, 400, "seed is"),
    ("/api/runs/small/generate", {"greedy": "maybe"}, 400, "greedy is 'maybe'"),
    ("/api/runs/small/generate", {"prime": "XYZ"}, 400, "never saw"),
    ("/api/runs/small/generate", {"prime": "He " * 2000}, 400, "the prime text has 6,000"),
    ("/api/runs/small/generate", {"prime": 7}, 400, "prime is a JSON number"),
    ("/api/runs/small/generate", {"colour": "red"}, 400, "unknown field 'colour'"),
    ("/api/runs/small/beam", {"beams": 1000}, 400, "beams is 1000"),
    ("/api/runs/small/beam", {"length": 0}, 400, "length is 0"),
    ("/api/runs/small/beam", {"prime": "x" * 6000}, 400, "at most 5,000"),
    ("/api/runs/small/beam", {"zero_state": 3}, 400, "zero_state is 3"),
    ("/api/runs/broken/generate", {}, 422, "not a readable checkpoint"),
    ("/api/runs/broken/text", None, 422, "not a readable checkpoint"),
])
def test_bad_requests_get_a_4xx_with_a_json_message(client, path, body, status, message):
    r = client.get(path) if body is None else client.post(path, json=body)
    assert r.status_code == status and message in r.json()["error"], r.text


JSON = {"Content-Type": "application/json"}


def test_bad_look_inside_requests(client):
    assert client.post("/api/runs/small/analyse", content=b"{", headers=JSON).status_code == 400
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
        r = client.get(f"/api/runs/{name}/{what}") if what in ("log", "text") else \
            client.post(f"/api/runs/{name}/{what}", json={})
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
        urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/runs/small/beam", data=b'{"length": 5}',
            headers={"Content-Type": "application/json"}), timeout=30).read()
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
        response = urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/runs/small/generate", data=b'{"length": 1000}',
            headers={"Content-Type": "application/json"}), timeout=30)
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
        # the banner comes once the server listens: the first request is answered
        doc = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=15))
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


# -- hardening: bounded requests, bounded work, only this machine's own page ------------------

from charnn.serve.app import MAX_BODY, AccessPolicy, ModelWork  # noqa: E402


def call_asgi(app, method: str, path: str, headers: dict, chunks=None):
    """One request straight through the ASGI app: (status, response headers, JSON body, how
    many body chunks the app pulled). `chunks` is an iterator of body chunks, pulled one
    `receive` at a time and never ending unless it does."""
    import asyncio
    pulled = 0
    sent: dict = {}

    async def receive():
        nonlocal pulled
        if chunks is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        chunk = next(chunks, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            sent["body"] = sent.get("body", b"") + message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in
                         {"host": "127.0.0.1:8000", **headers}.items()]}
    asyncio.run(app(scope, receive, send))
    return sent["status"], sent["headers"], json.loads(sent["body"]), pulled


@pytest.fixture(scope="module")
def app(runs_dir):
    return create_app(RunTable([], runs_dir), backend="numpy")


def test_a_declared_body_over_the_limit_is_refused_before_a_byte_is_read(app):
    def never():
        raise AssertionError("the body was read")
        yield

    status, headers, doc, pulled = call_asgi(
        app, "POST", "/api/runs/small/analyse",
        {"content-type": "application/json", "content-length": str(1 << 30)}, never())
    assert status == 413 and pulled == 0 and "1,073,741,824 bytes" in doc["error"]
    assert headers["connection"] == "close"     # the rest is never read to keep the connection


def test_a_chunked_body_is_counted_and_cut_off_just_past_the_limit(app):
    def endless():                              # a chunked upload that would never end
        while True:
            yield b" " * 16384

    status, headers, doc, pulled = call_asgi(app, "POST", "/api/runs/small/analyse",
                                             {"content-type": "application/json",
                                              "transfer-encoding": "chunked"}, endless())
    assert status == 413 and "more than 65,536 bytes" in doc["error"]
    assert headers["connection"] == "close"     # the rest is never read to keep the connection
    assert pulled == MAX_BODY // 16384 + 1      # it stopped at the first chunk past the limit


def test_a_body_just_under_the_limit_is_read(client):
    text = "He said " * 600                      # 4,800 characters: within MAX_ANALYSE
    body = json.dumps({"text": text}).encode() + b" " * (MAX_BODY - 4900)
    r = client.post("/api/runs/small/analyse", content=body, headers=JSON)
    assert len(body) < MAX_BODY and r.status_code == 200


@pytest.mark.parametrize("body, message", [
    (b"null", "a JSON null"),
    (b"[1,2]", "a JSON array"),
    (b'"text"', "a JSON string"),
    (b"12", "a JSON number"),
    (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (b'{"text": ' + b"[" * 30000 + b"]" * 30000 + b"}", "nested too deeply"),
    (b'{"text": "\xff\xfe"}', "not JSON"),
    (b'{"text": [1]}', "text is a JSON array"),
    (b'{"text": "He", "zero_state": "perhaps"}', "zero_state is 'perhaps'"),
    (b'{"text": "He", "extra": 1}', "unknown field 'extra'"),
])
def test_malformed_look_inside_bodies_get_400_with_a_json_message(client, body, message):
    r = client.post("/api/runs/small/analyse", content=body, headers=JSON)
    assert r.status_code == 400 and message in r.json()["error"], r.text


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "text/json"])
@pytest.mark.parametrize("what", ["analyse", "generate", "beam"])
def test_model_requests_must_be_json(client, what, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = client.post(f"/api/runs/small/{what}", content=b'{"text": "He"}', headers=headers)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert r.headers["connection"] == "close"   # its body was left unread


def test_an_answer_before_the_whole_body_closes_the_connection(client):
    r = client.post("/api/runs", content=iter([b" " * 1000] * 3))     # chunked, to a GET route
    assert r.status_code == 405 and r.headers["connection"] == "close"
    r = client.post("/api/runs/small/beam", json={"length": 3})       # read whole: kept open
    assert r.status_code == 200 and "connection" not in r.headers


def test_generate_and_beam_are_not_gets(client):
    for what in ("generate", "beam", "analyse"):
        r = client.get(f"/api/runs/small/{what}?length=5")
        assert r.status_code == 405 and r.json()["error"]


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8000", True), ("localhost:8000", True), ("LOCALHOST:8000", True),
    ("[::1]:8000", True), ("mybox.lan:8000", True), ("tunnel.lan:9000", True),
    ("evil.example:8000", False),           # a DNS-rebinding page: its own name, our address
    ("127.0.0.1:9000", False), ("localhost", False), ("tunnel.lan:8000", False),
    ("127.0.0.2:8000", False), ("192.168.1.5:8000", False), ("", False),
    ("localhost:8000@evil", False), ("[::1:8000", False),
])
def test_the_host_header_must_name_this_server(runs_dir, host, allowed):
    policy = AccessPolicy.for_address("127.0.0.1", ["mybox.lan", "tunnel.lan:9000"])
    app = create_app(RunTable([], runs_dir), backend="numpy", policy=policy)
    with TestClient(app, base_url=BASE) as client:
        for path in ("/", "/api/runs"):
            r = client.get(path, headers={"Host": host})
            assert (r.status_code == 200) == allowed, (host, path, r.text)
            if not allowed:
                assert r.status_code == 403 and "--allow-host" in r.json()["error"]


def test_a_server_on_every_address_takes_any_ip_but_only_the_names_it_knows(runs_dir):
    policy = AccessPolicy.for_address("0.0.0.0", ["mybox.lan"], token="t")
    app = create_app(RunTable([], runs_dir), backend="numpy", policy=policy)
    with TestClient(app, base_url=BASE) as client:
        for host, status in (("192.168.1.5:8000", 200), ("10.0.0.7:8000", 200),
                             ("mybox.lan:8000", 200), ("evil.example:8000", 403)):
            r = client.get("/api/runs", headers={"Host": host, "X-Charnn-Token": "t"})
            assert r.status_code == status, host


@pytest.mark.parametrize("headers, status", [
    ({}, 200),
    ({"Origin": "http://127.0.0.1:8000"}, 200),
    ({"Sec-Fetch-Site": "same-origin"}, 200),
    ({"Sec-Fetch-Site": "none"}, 200),                       # typed into the address bar
    ({"Origin": "http://evil.example"}, 403),
    ({"Origin": "http://127.0.0.1:9000"}, 403),              # another server on this machine
    ({"Origin": "http://localhost:8000"}, 403),              # not the Host it came to
    ({"Origin": "null"}, 403),                               # a sandboxed frame, a file: page
    ({"Sec-Fetch-Site": "cross-site"}, 403),                 # an <img> or a form, no Origin
    ({"Sec-Fetch-Site": "same-site"}, 403),
])
def test_api_requests_from_another_origin_are_refused(client, headers, status):
    for method, path in (("GET", "/api/runs"), ("POST", "/api/runs/small/beam"),
                         ("OPTIONS", "/api/runs/small/analyse")):
        r = client.request(method, path, headers={**JSON, **headers}, content=b'{"length": 3}')
        if status == 403:
            assert r.status_code == 403 and "refused" in r.json()["error"], (method, headers)
        else:
            assert r.status_code == (405 if method == "OPTIONS" else 200), (method, headers)


def test_the_page_itself_opens_from_a_link_on_another_site(client):
    r = client.get("/", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200 and "app.js" in r.text


def test_a_server_with_a_token_answers_only_requests_that_carry_it(runs_dir):
    policy = AccessPolicy.for_address("0.0.0.0", token="s3cret")
    app = create_app(RunTable([], runs_dir), backend="numpy", policy=policy)
    with TestClient(app, base_url=BASE) as client:
        r = client.get("/api/runs")
        assert r.status_code == 401 and "?token=" in r.json()["error"]
        assert client.get("/api/runs", headers={"X-Charnn-Token": "wrong"}).status_code == 401
        assert client.get("/api/runs", headers={"X-Charnn-Token": "s3cret"}).status_code == 200
        assert client.get("/").status_code == 200 and not client.cookies  # no token: no cookie
        assert client.get("/?token=wrong").status_code == 200 and not client.cookies
        page = client.get("/?token=s3cret")
        cookie = page.headers["set-cookie"]
        assert "charnn-token-8000=s3cret" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert client.get("/api/runs").status_code == 200        # the cookie carries it
        assert client.post("/api/runs/small/beam", json={"length": 3}).status_code == 200


def test_a_server_on_loopback_needs_no_token(client):
    assert client.get("/api/runs").status_code == 200


class Gate:
    """Holds beam searches inside the model until opened: what is running is known without
    timing."""

    def __init__(self, monkeypatch):
        from charnn.trained import TrainedModel
        self.entered = threading.Semaphore(0)
        self.opened = threading.Event()
        search = TrainedModel.beam_search

        def held_search(model, *args, **kwargs):
            self.entered.release()
            assert self.opened.wait(30)
            return search(model, *args, **kwargs)

        monkeypatch.setattr(TrainedModel, "beam_search", held_search)


@pytest.fixture
def gate(monkeypatch):
    gate = Gate(monkeypatch)
    yield gate
    gate.opened.set()                           # a failed test leaves no thread held


def post_json(url: str, doc: dict, timeout: float = 30):
    request = urllib.request.Request(url, data=json.dumps(doc).encode(), headers=JSON)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.load(exc)


def test_model_work_past_a_clients_limit_gets_429_while_the_run_list_answers(runs_dir, gate):
    app = create_app(RunTable([], runs_dir), backend="numpy",
                     work=ModelWork(threads=1, most_admitted=10, per_client=2))
    with running_server(app) as url:
        answers = []
        held = [threading.Thread(target=lambda: answers.append(post_json(
            f"{url}/api/runs/small/beam", {"length": 5}))) for _ in range(2)]
        for thread in held:
            thread.start()
        assert gate.entered.acquire(timeout=30)        # one runs, the other waits its turn
        deadline = time.monotonic() + 10
        while app.state.work.admitted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, headers, doc = post_json(f"{url}/api/runs/small/beam", {"length": 5})
        assert status == 429 and headers["Retry-After"] == "1" and "try again" in doc["error"]
        status, _, doc = post_json(f"{url}/api/runs/small/analyse", {"text": "He"})
        assert status == 429                            # every kind of model work counts
        runs = json.load(urllib.request.urlopen(f"{url}/api/runs", timeout=30))["runs"]
        assert {r["name"] for r in runs} == {"small", "broken"}
        assert urllib.request.urlopen(f"{url}/", timeout=30).status == 200
        gate.opened.set()
        for thread in held:
            thread.join(30)
        assert [a[0] for a in answers] == [200, 200]
        assert app.state.work.admitted == 0
        assert post_json(f"{url}/api/runs/small/beam", {"length": 5})[0] == 200


def test_model_work_past_the_servers_limit_gets_503(runs_dir, gate):
    app = create_app(RunTable([], runs_dir), backend="numpy",
                     work=ModelWork(threads=1, most_admitted=1, per_client=5))
    with TestClient(app, base_url=BASE) as client:
        held = threading.Thread(target=lambda: client.post("/api/runs/small/beam",
                                                           json={"length": 5}))
        held.start()
        assert gate.entered.acquire(timeout=30)
        r = client.post("/api/runs/small/generate", json={"length": 5})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert client.get("/api/runs/small/text").status_code == 503
        assert client.get("/api/runs").status_code == 200
        gate.opened.set()
        held.join(30)
        assert client.post("/api/runs/small/generate", json={"length": 5}).status_code == 200


def test_a_beam_search_stops_when_its_client_goes_away(runs_dir, monkeypatch):
    import http.client
    from charnn.trained import TrainedModel
    steps = []
    started = threading.Event()
    advance = TrainedModel.advance

    def slow_advance(self, h, x):                 # 1,000 steps x 20 beams: minutes in all
        steps.append(1)
        started.set()
        time.sleep(0.005)
        return advance(self, h, x)

    monkeypatch.setattr(TrainedModel, "advance", slow_advance)
    app = create_app(RunTable([], runs_dir), backend="numpy")
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/api/runs/small/beam", body=b'{"length": 1000, "beams": 20}',
                     headers=JSON)
        assert started.wait(30)
        conn.sock.shutdown(2)
        conn.close()
        deadline = time.monotonic() + 20
        while app.state.work.admitted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.work.admitted == 0
        done = len(steps)
        time.sleep(0.5)                            # no thread is still stepping
        assert len(steps) == done < 1000 * 20      # it stopped, far short of the whole search


def test_a_damaged_checkpoint_or_log_is_named_by_its_run_and_file_not_its_path(client,
                                                                               runs_dir):
    where = str(runs_dir.parent)
    r = client.post("/api/runs/broken/generate", json={})
    assert r.status_code == 422 and where not in r.text
    assert r.json()["error"].startswith("run 'broken': best.npz is not a readable checkpoint")
    r = client.get("/api/runs/broken/log")
    assert r.status_code == 400 and where not in r.text
    assert r.json()["error"].startswith("run 'broken': log.csv is damaged (row ")
    runs = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert runs["broken"]["log_error"].startswith("run 'broken': log.csv is damaged")
    assert where not in client.get("/api/runs").text


def test_a_port_in_use_is_one_line_and_exit_status_2_before_any_banner(runs_dir, tmp_path,
                                                                        capsys):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", str(runs_dir / "small"), "--runs-dir", str(tmp_path),
                         "--port", str(port), "--backend", "numpy"]) == 2
    out, err = capsys.readouterr()
    assert "http://" not in out
    assert err.count("\n") == 1 and f"port {port} on 127.0.0.1 is in use" in err


@pytest.mark.parametrize("args, message", [
    (["--allow-host", "http://evil/"], "--allow-host is 'http://evil/'"),
    (["--allow-host", "name:99999"], "--allow-host is 'name:99999'"),
    (["--host", "no-such-host.invalid"], "--host 'no-such-host.invalid'"),
    (["--host", "192.0.2.1"], "not an address of this machine"),
])
def test_bad_serve_options_are_one_line(runs_dir, tmp_path, capsys, args, message):
    assert cli.main(["serve", str(runs_dir / "small"), "--runs-dir", str(tmp_path),
                     "--port", "0", *args]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err and "http://" not in out


def test_serving_every_address_warns_and_prints_a_token_url(runs_dir, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "charnn.cli", "serve", str(runs_dir / "small"), "--runs-dir",
         str(tmp_path), "--host", "0.0.0.0", "--port", "0", "--backend", "numpy"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        warning = proc.stderr.readline()
        assert "warning: listening on 0.0.0.0" in warning and "token" in warning
        assert "this machine's address" in warning and warning.count("\n") == 1
        banner = proc.stdout.readline()          # printed once it listens: no retry needed
        url = banner.split()[2]
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        port, token = url.removeprefix("http://127.0.0.1:").split("/?token=")
        assert len(token) >= 32
        api = f"http://127.0.0.1:{port}/api/runs"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(api, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(api, headers={"X-Charnn-Token": token})
        assert json.load(urllib.request.urlopen(request, timeout=10))["runs"][0]["name"] == \
            "small"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
