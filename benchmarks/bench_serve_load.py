"""charnn serve under load, on this machine's loopback only: does the run list keep answering,
is excess model work refused, does abandoned work stop, and does a huge body stay unread?

Trains a small run into a temporary folder, starts `charnn serve` on it (127.0.0.1, a free
port) in a child process, and then:

    1. times one beam search alone (--beams wide, --length long: the server's limits);
    2. fires --requests beam searches at once, and meanwhile asks for /api/runs every
       --poll seconds: its latencies (the worst must stay under a second), and how many
       beam searches were served, refused with 429 (this client's limit) or 503 (the
       server's); one short generate is tried in the middle;
    3. starts a few beam searches and hangs up on them: a beam search asked afterwards
       answers in about the time of one alone when the abandoned ones stopped;
    4. sends a --body-size body (1 GB by default, generated on the fly, never held), once with
       Content-Length and once chunked: the answer, the bytes the server took before it
       refused, and the server's resident memory before and after (VmRSS, and its peak).

Everything is bounded: at most --requests requests, each with a timeout; the whole run stops
by itself after --limit seconds; the server is stopped and the folder deleted at the end.

    python benchmarks/bench_serve_load.py
    python benchmarks/bench_serve_load.py --requests 20 --body-size 100M
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine  # noqa: E402

TEXT = ('He said "hello (there) my friend" and left.\n'
        'She said (quietly) "no, not now".\n'
        'They sang "one (two) three" all night.\n') * 40


def size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units \
        else int(text)


def train(folder: Path, hidden: int) -> Path:
    import charnn
    text_file = folder / "text.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    config = charnn.TrainConfig(hidden=hidden, updates=200, backend="numpy", val_frac=0.1,
                                log_every=10, eval_every=100, sample_every=100,
                                checkpoint_every=100, seed=1)
    run = folder / "runs" / "small"
    charnn.Trainer(charnn.load_corpus(text_file), config, run).run()
    return run


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def request(port: int, method: str, path: str, body: dict | None = None,
            timeout: float = 120.0) -> tuple[int, float]:
    """(status, seconds); status 0 for a request that failed without an answer."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    except (OSError, http.client.HTTPException):
        return 0, time.monotonic() - start
    finally:
        conn.close()


def send_huge_body(port: int, total: int, chunked: bool, timeout: float) -> dict:
    """POSTs `total` bytes of JSON-looking filler made on the fly, 64 KiB at a time, until
    the server answers or stops taking them. Returns the status and the bytes sent."""
    block = b" " * 65536
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent, status, start = 0, None, time.monotonic()
    head = (f"POST /api/runs/small/analyse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n")
            + "\r\n").encode()
    try:
        sock.sendall(head)
        while sent < total:
            piece = block[:min(len(block), total - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            if time.monotonic() - start > timeout:
                break
        if chunked and sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except OSError as exc:                       # the server answered and hung up: expected
        error = type(exc).__name__
    else:
        error = None
    try:
        answer = sock.recv(65536).decode("latin-1")
        status = int(answer.split()[1]) if answer.startswith("HTTP/") else None
    except (OSError, ValueError, IndexError):
        pass
    finally:
        sock.close()
    return {"status": status, "sent_bytes": sent, "send_error": error,
            "seconds": round(time.monotonic() - start, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=512,
                        help="the run's hidden units (default 512: a beam search of seconds)")
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--body-size", type=size, default="1G")
    parser.add_argument("--limit", type=float, default=600.0,
                        help="stop everything after this many seconds (default 600)")
    args = parser.parse_args()
    if not 1 <= args.requests <= 1000:
        parser.error("--requests: give 1 to 1000")

    folder = Path(tempfile.mkdtemp(prefix="charnn-serve-load-"))
    server = None
    watchdog = threading.Timer(args.limit, lambda: os.kill(os.getpid(), signal.SIGINT))
    watchdog.daemon = True
    watchdog.start()
    try:
        run = train(folder, args.hidden)
        server = subprocess.Popen(
            [sys.executable, "-m", "charnn.cli", "serve", str(run), "--runs-dir",
             str(folder / "none"), "--port", "0", "--backend", "numpy"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        banner = server.stdout.readline()          # printed once the server listens
        port = int(banner.split("http://127.0.0.1:")[1].split("/")[0])
        beam = {"prime": "He said", "length": args.length, "beams": args.beams}
        report: dict = {"machine": machine(), "requests": args.requests, "beam": beam,
                        "hidden": args.hidden}
        request(port, "GET", "/api/runs")
        report["rss_idle_kib"] = rss_kib(server.pid)

        status, alone = request(port, "POST", "/api/runs/small/beam", beam)
        report["beam_alone_s"] = round(alone, 2)
        print(f"machine: {report['machine']}")
        print(f"one beam search alone (width {args.beams}, length {args.length}, m = "
              f"{args.hidden}): {alone:.2f} s (status {status})")

        # 2. a burst of beam searches, and the run list meanwhile
        results: list[tuple[int, float]] = []
        latencies: list[float] = []
        done = threading.Event()

        def poll():
            while not done.is_set():
                status, seconds = request(port, "GET", "/api/runs", timeout=30)
                latencies.append(seconds if status == 200 else float("inf"))
                time.sleep(args.poll)

        poller = threading.Thread(target=poll, daemon=True)
        burst = [threading.Thread(target=lambda: results.append(
            request(port, "POST", "/api/runs/small/beam", beam)), daemon=True)
                 for _ in range(args.requests)]
        start = time.monotonic()
        poller.start()
        for thread in burst:
            thread.start()
        time.sleep(0.5)
        generate = request(port, "POST", "/api/runs/small/generate", {"length": 50})
        page = request(port, "GET", "/")
        for thread in burst:
            thread.join(max(1.0, args.limit - (time.monotonic() - start)))
        burst_s = time.monotonic() - start
        done.set()
        poller.join(60)
        counts = Counter(status for status, _ in results)
        served = [s for status, s in results if status == 200]
        report["burst"] = {
            "seconds": round(burst_s, 2), "statuses": dict(counts),
            "served_slowest_s": round(max(served), 2) if served else None,
            "refused_slowest_s": round(max((s for st, s in results if st in (429, 503)),
                                           default=0), 3),
            "runs_list_polls": len(latencies),
            "runs_list_median_s": round(statistics.median(latencies), 4),
            "runs_list_worst_s": round(max(latencies), 4),
            "generate_meanwhile": {"status": generate[0], "seconds": round(generate[1], 3)},
            "page_meanwhile": {"status": page[0], "seconds": round(page[1], 3)},
        }
        b = report["burst"]
        print(f"{args.requests} beam searches at once: {dict(counts)} (200 served, 429 this "
              f"client's limit, 503 the server's) in {burst_s:.1f} s; slowest served "
              f"{b['served_slowest_s']} s, slowest refusal {b['refused_slowest_s']} s")
        print(f"/api/runs meanwhile: {len(latencies)} requests, median "
              f"{b['runs_list_median_s'] * 1000:.1f} ms, worst "
              f"{b['runs_list_worst_s'] * 1000:.1f} ms "
              f"({'under' if b['runs_list_worst_s'] < 1 else 'OVER'} a second)")
        print(f"a short generate meanwhile: status {generate[0]} in {generate[1]:.3f} s; "
              f"the page: status {page[0]} in {page[1]:.3f} s")

        # 3. abandoned beam searches stop
        abandoned = []
        for _ in range(4):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/api/runs/small/beam", body=json.dumps(beam).encode(),
                         headers={"Content-Type": "application/json"})
            abandoned.append(conn)
        time.sleep(1.0)
        for conn in abandoned:
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        time.sleep(0.5)
        status, after = request(port, "POST", "/api/runs/small/beam", beam)
        report["after_4_abandoned"] = {"status": status, "seconds": round(after, 2)}
        print(f"4 beam searches abandoned after 1 s, then one more: status {status} in "
              f"{after:.2f} s (alone: {alone:.2f} s)")

        # 4. a huge body, declared and chunked
        before = rss_kib(server.pid)
        huge = {kind: send_huge_body(port, args.body_size, kind == "chunked", timeout=60)
                for kind in ("content-length", "chunked")}
        after_rss = rss_kib(server.pid)
        report["huge_body"] = {"bytes": args.body_size, **huge, "rss_before_kib": before,
                               "rss_after_kib": after_rss}
        for kind, outcome in huge.items():
            print(f"a {args.body_size:,}-byte body ({kind}): status {outcome['status']}; the "
                  f"client got {outcome['sent_bytes']:,} bytes out (most into the kernel's "
                  f"buffers) before the server hung up "
                  f"({outcome['send_error'] or 'no send error'}), {outcome['seconds']} s")
        print(f"server RSS: idle {report['rss_idle_kib']['VmRSS'] / 1024:.0f} MiB; before the "
              f"huge bodies {before['VmRSS'] / 1024:.0f} MiB, after "
              f"{after_rss['VmRSS'] / 1024:.0f} MiB; peak over the whole run "
              f"{after_rss['VmHWM'] / 1024:.0f} MiB")
        print(json.dumps(report))
        return 0 if b["runs_list_worst_s"] < 1 else 1
    except KeyboardInterrupt:
        print(f"stopped after --limit {args.limit:.0f} s", file=sys.stderr)
        return 1
    finally:
        watchdog.cancel()
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
