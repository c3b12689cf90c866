"""Shared by the serve tests: a small trained run, and a real server on a free local port
that stops by itself."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import charnn

# Quotes, parentheses, short lines and words: what the unit finder looks for.
SERVE_TEXT = (
    'He said "hello (there) my friend" and left.\n'
    'She said (quietly) "no, not now".\n'
    'They sang "one (two) three" all night.\n'
) * 40


def train_run(folder: Path, updates: int = 300, **network) -> Path:
    """A small run trained on SERVE_TEXT (numpy backend: no compile, about a second); network:
    model, layers, hidden where not the vanilla RNN of 16 units."""
    text_file = folder.parent / f"{folder.name}.txt"
    text_file.write_text(SERVE_TEXT, encoding="utf-8")
    config = charnn.TrainConfig(**{"hidden": 16, **network}, updates=updates, backend="numpy",
                                val_frac=0.1, log_every=10, eval_every=100, sample_every=100,
                                checkpoint_every=100, seed=1)
    charnn.Trainer(charnn.load_corpus(text_file), config, folder).run()
    return folder


@contextlib.contextmanager
def running_server(app, lifetime: float = 120.0):
    """Serve `app` on 127.0.0.1 at a free port in a thread; yields its URL. The server stops
    when the block ends, or by itself after `lifetime` seconds."""
    import uvicorn
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    stopper = threading.Timer(lifetime, lambda: setattr(server, "should_exit", True))
    stopper.daemon = True
    stopper.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stopper.cancel()
        server.should_exit = True
        thread.join(10)
        sock.close()
