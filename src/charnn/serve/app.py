"""The web app: a small Starlette application over a RunTable.

    GET  /                              the page (index.html, app.js, style.css: package data)
    GET  /api/runs                      every run's summary
    GET  /api/runs/{run}/log            its log.csv (training and validation rows)
    GET  /api/runs/{run}/generate?...   drawn text as server-sent events: text, done | error
    GET  /api/runs/{run}/beam?...       the most likely continuations (beam search)
    GET  /api/runs/{run}/text           a text to look inside with (the held-out part ...)
    POST /api/runs/{run}/analyse        {"text": ...}: states, losses, top-5, units found

Every error is JSON {"error": message} with a 4xx status: 404 for an unknown run, 400 for a
bad parameter, 422 for a run whose checkpoint cannot be used. Model work (loading, drawing,
analysing) runs in worker threads, so a slow request never holds up the others.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import CharnnError
from ..sampling import SamplingOptions
from .runs import Run, RunTable, UnknownRun

MAX_GENERATE = 100_000      # characters one request may draw
MAX_BEAM_LENGTH = 1_000
MAX_BEAM_WIDTH = 20
MAX_ANALYSE = 5_000         # characters of text one request may look inside
MAX_LOG_POINTS = 2_000      # training rows sent for the curve (evenly thinned)
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


class BadRequest(CharnnError):
    status = 400


class ModelUnavailable(CharnnError):
    status = 422


# -- parameters -----------------------------------------------------------------------------

def _param(request: Request, name: str, kind, default, low=None, high=None):
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        if kind is bool:
            if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError
            return raw.lower() in ("1", "true", "yes", "on")
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"{name} is {raw!r}; give a {'whole ' if kind is int else ''}"
                         "number") from None
    if kind is float and not math.isfinite(value):
        raise BadRequest(f"{name} is {raw!r}; give a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"{name} is {raw}; give a value from {low} to {high}")
    return value


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# -- the app --------------------------------------------------------------------------------

class Models:
    """Each run's model, loaded once and again when its checkpoint file changes (a run that
    is still training saves new ones)."""

    def __init__(self, backend: str):
        self.backend = backend
        self._cache: dict[str, tuple[tuple, object]] = {}
        self._lock = threading.Lock()

    def get(self, run: Run):
        from ..trained import load
        path = run.checkpoint_file()
        if path is None:
            raise ModelUnavailable(f"run {run.name!r} has no checkpoint yet; wait for its "
                                   "first save")
        stat = path.stat()
        key = (path.name, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(run.name)
            if cached and cached[0] == key:
                return cached[1]
            try:
                model = load(path, self.backend)
            except CharnnError as exc:
                raise ModelUnavailable(f"run {run.name!r}: {exc}") from None
            except (OSError, ValueError, KeyError) as exc:
                raise ModelUnavailable(f"run {run.name!r}: its checkpoint {path.name} cannot be "
                                       f"read ({exc}); use another run") from None
            self._cache[run.name] = (key, model)
            return model


def create_app(table: RunTable, backend: str = "compiled") -> Starlette:
    models = Models(backend)

    async def run_and_model(request: Request):
        run = table.get(request.path_params["run"])
        return run, await run_in_threadpool(models.get, run)

    async def page(request: Request):
        name = request.path_params.get("file", "index.html")
        if name not in STATIC:
            raise HTTPException(404)
        return Response(_static(name), media_type=STATIC[name])

    async def list_runs(request: Request):
        runs = await run_in_threadpool(lambda: [r.summary() for r in table.refresh()])
        return JSONResponse({"runs": runs})

    async def log(request: Request):
        run = table.get(request.path_params["run"])
        return JSONResponse(await run_in_threadpool(_log_doc, run))

    async def generate(request: Request):
        run, model = await run_and_model(request)
        options = SamplingOptions(
            temperature=_param(request, "temperature", float, 1.0),
            top_k=_param(request, "top_k", int, 0, 0, len(model.vocab)),
            top_p=_param(request, "top_p", float, 1.0),
            greedy=_param(request, "greedy", bool, False))
        _validated(options)
        length = _param(request, "length", int, 500, 1, MAX_GENERATE)
        seed = _param(request, "seed", int, None, 0, 2**63 - 1)
        prime = request.query_params.get("prime", "")
        zero_state = _param(request, "zero_state", bool, False)
        _check_known(model, prime, "the prime text")
        return StreamingResponse(_stream(request.app, model, length, prime, options, seed,
                                         zero_state),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    async def beam(request: Request):
        run, model = await run_and_model(request)
        length = _param(request, "length", int, 100, 1, MAX_BEAM_LENGTH)
        width = _param(request, "beams", int, 5, 1, MAX_BEAM_WIDTH)
        prime = request.query_params.get("prime", "")
        zero_state = _param(request, "zero_state", bool, False)
        _check_known(model, prime, "the prime text")
        beams = await run_in_threadpool(model.beam_search, length, width, prime, zero_state)
        return JSONResponse({"prime": prime, "beams": [
            {"text": b.text, "logprob": b.logprob, "finished": b.finished} for b in beams]})

    async def default_text(request: Request):
        run, model = await run_and_model(request)
        text, source = await run_in_threadpool(_default_text, run, model)
        return JSONResponse({"text": text, "source": source})

    async def analyse(request: Request):
        run, model = await run_and_model(request)
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the request body is not JSON; send {\"text\": ...}") from None
        text = body.get("text") if isinstance(body, dict) else None
        if text is None:
            text, _ = await run_in_threadpool(_default_text, run, model)
        if not isinstance(text, str) or not text:
            raise BadRequest("text is empty; type or paste some text")
        if len(text) > MAX_ANALYSE:
            raise BadRequest(f"the text has {len(text):,} characters; give at most "
                             f"{MAX_ANALYSE:,}")
        _check_known(model, text, "the text")
        return JSONResponse(await run_in_threadpool(_analysis_doc, model, text,
                                                    bool(body.get("zero_state", False))))

    async def error(request: Request, exc: Exception):
        if isinstance(exc, UnknownRun):
            status = 404
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            return JSONResponse({"error": f"{request.url.path}: {exc.detail}"}, status)
        else:
            status = getattr(exc, "status", 400)
        return JSONResponse({"error": str(exc)}, status)

    async def internal(request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the "
                                      "server's output"}, 500)

    routes = [
        Route("/", page),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}/log", log),
        Route("/api/runs/{run}/generate", generate),
        Route("/api/runs/{run}/beam", beam),
        Route("/api/runs/{run}/text", default_text),
        Route("/api/runs/{run}/analyse", analyse, methods=["POST"]),
        Route("/{file}", page),
    ]
    app = Starlette(routes=routes, exception_handlers={
        CharnnError: error, HTTPException: error, Exception: internal})
    app.state.table, app.state.models, app.state.active_streams = table, models, 0
    return app


@lru_cache(maxsize=None)
def _static(name: str) -> bytes:
    return resources.files("charnn").joinpath("web", name).read_bytes()


def _validated(options: SamplingOptions) -> None:
    try:
        options.validate()
    except CharnnError as exc:           # the command line's wording, the page's names
        raise BadRequest(str(exc).replace("--temperature", "temperature")
                         .replace("--top-k", "top-k").replace("--top-p", "top-p")) from None


def _check_known(model, text: str, what: str) -> None:
    try:
        model.check_known(text, what)
    except CharnnError as exc:
        raise BadRequest(str(exc)) from None


class _Stopped(Exception):
    pass


def _count_stream(app, change: int) -> None:
    """Streams whose drawing thread still runs (counted on the event loop's thread)."""
    app.state.active_streams += change


async def _stream(app, model, length, prime, options, seed, zero_state):
    """Server-sent events: `text` as it is drawn, then `done` or `error`. When the client
    goes away (or presses stop), the drawing thread stops at its next block."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def put(kind, data):
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    def on_text(text):
        if stop.is_set():
            raise _Stopped
        put("text", text)

    def work():
        try:
            model.generate(length, prime, options.temperature, options.top_k, options.top_p,
                           options.greedy, seed=seed, zero_state=zero_state, on_text=on_text)
            put("done", None)
        except _Stopped:
            pass
        except CharnnError as exc:
            put("error", str(exc))
        except Exception as exc:                      # noqa: BLE001 - reported, not raised
            put("error", f"internal error ({type(exc).__name__})")
        finally:
            loop.call_soon_threadsafe(_count_stream, app, -1)

    _count_stream(app, +1)
    worker = loop.run_in_executor(None, work)
    try:
        while True:
            kind, data = await queue.get()
            yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
            if kind != "text":
                break
    finally:
        stop.set()
        del worker


def _log_doc(run: Run) -> dict:
    rows = run.log()
    train = [r for r in rows if r["loss"]]
    if len(train) > MAX_LOG_POINTS:
        step = math.ceil(len(train) / MAX_LOG_POINTS)
        train = train[::step] + ([train[-1]] if (len(train) - 1) % step else [])
    return {
        "name": run.name,
        "train": [[int(r["iteration"]), _finite(r["smooth_loss"])] for r in train],
        "val": [[int(r["iteration"]), _finite(r["val_loss"]), _finite(r["val_bpc"])]
                for r in rows if r["val_bpc"]],
        "rows": len(rows),
        "summary": run.summary(),
    }


def _default_text(run: Run, model) -> tuple[str, str]:
    from ..insight import default_text
    return default_text(run.path, model)


def _clean(values: np.ndarray, decimals: int) -> list:
    """Rounded floats for JSON, None where not finite (a diverged model's NaN)."""
    values = np.round(np.asarray(values, np.float64), decimals)
    return [float(v) if math.isfinite(v) else None for v in values]


def _analysis_doc(model, text: str, zero_state: bool) -> dict:
    from ..insight import FEATURES, find_units
    a = model.analyse(text, zero_state)
    units = find_units(a.layers, text)
    scored = a.loss[1:]
    return {
        "text": text,
        "chars": list(text),
        "layers": [{"units": int(s.shape[1]),
                    "states": [_clean(row, 3) for row in s.T]} for s in a.layers],
        "loss": [None] + _clean(scored, 4),
        "bits": _finite(scored.mean() / math.log(2)) if len(scored) else None,
        "top": [[[ch, round(float(p), 4)] for ch, p in zip(chars, probs)]
                for chars, probs in zip(a.top, a.top_p)],
        "units": [{"feature": u.feature, "label": FEATURES[u.feature], "layer": u.layer,
                   "unit": u.unit, "r": round(u.r, 3)} for u in units],
    }


def serve(runs: list[str | Path], runs_dir: str | Path | None, host: str, port: int,
          backend: str = "compiled", announce=print) -> None:
    """Serve the runs until Ctrl-C."""
    import uvicorn
    table = RunTable(runs, runs_dir)
    app = create_app(table, backend)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(r.name for r in table.refresh()) or "none yet"
    announce(f"charnn serve: http://{shown}:{port}/  (runs: {names}; Ctrl-C stops)")
    server.run()
