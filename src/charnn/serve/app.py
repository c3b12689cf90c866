"""The web app: a small Starlette application over a RunTable.

    GET  /                              the page (index.html, app.js, style.css: package data)
    GET  /api/runs                      every run's summary
    GET  /api/runs/{run}/log            its log.csv (training and validation rows)
    POST /api/runs/{run}/generate       {"prime", "length", "temperature", ...}: drawn text as
                                        server-sent events: text, done | error
    POST /api/runs/{run}/beam           {"prime", "length", "beams"}: the most likely
                                        continuations (beam search)
    GET  /api/runs/{run}/text           a text to look inside with (the held-out part ...)
    POST /api/runs/{run}/analyse        {"text": ...}: states, losses, top-5, units found

Every error is JSON {"error": message} with a 4xx status: 404 for an unknown run, 400 for a
bad parameter or a malformed body, 413 for a body over MAX_BODY bytes, 415 for a POST that is
not application/json, 422 for a run whose checkpoint cannot be used, 429 or 503 (with
Retry-After) when the model is busy, 401/403 for a request this server does not take.

Who may ask (AccessPolicy, checked before anything is read): the Host header must name this
server (loopback names, the bound address, --allow-host names; this defeats DNS rebinding),
API requests from another origin are refused (their Origin header, or Sec-Fetch-Site), and a
server that listens beyond loopback asks for its token. POSTs need application/json, which a
page on another origin can send only after a CORS preflight that this server refuses.

Model work (loading, drawing, beam search, analysing) runs in ModelWork's few threads, admitted
up to a global and a per-client limit, so that the event loop and the run list stay
responsive under load; the work of a client that went away stops at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import secrets
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..beam import MAX_LENGTH as BEAM_MAX_LENGTH, MAX_WIDTH as BEAM_MAX_WIDTH
from ..config import WHOLE_LIMITS
from ..errors import CharnnError
from ..sampling import SamplingOptions
from .runs import Run, RunTable, UnknownRun

# A request's bounds: tighter than the command line's (config.WHOLE_LIMITS, beam.py), since
# one request's work shares the server's threads. The seed's range is the command line's, and
# the temperature's, top-k's and top-p's are SamplingOptions.validate's (_validated).
MAX_GENERATE = 100_000      # characters one request may draw
MAX_BEAM_LENGTH = 1_000
MAX_BEAM_WIDTH = 20
MAX_ANALYSE = 5_000         # characters of text one request may look inside
MAX_PRIME = 5_000           # characters of prime text (each runs through the model)
assert MAX_GENERATE <= WHOLE_LIMITS["length"][1]
assert MAX_BEAM_LENGTH <= BEAM_MAX_LENGTH and MAX_BEAM_WIDTH <= BEAM_MAX_WIDTH
MAX_LOG_POINTS = 2_000      # training rows sent for the curve (evenly thinned)
# The largest request body: MAX_ANALYSE characters, each up to 12 bytes as a JSON escape
# (a surrogate pair), and room for the other fields.
MAX_BODY = 64 * 1024
MODEL_THREADS = 2           # model work running at once (the rest waits its turn)
MOST_ADMITTED = 8           # model requests running or waiting, all clients together
PER_CLIENT = 4              # ... from one client address
RETRY_AFTER_S = 1
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
TOKEN_HEADER = "x-charnn-token"
LOOPBACK_NAMES = ("localhost",)


class BadRequest(CharnnError):
    status = 400


class ModelUnavailable(CharnnError):
    status = 422


class Busy(CharnnError):
    """Model work refused at admission: 429 for a client over its own limit, 503 when the
    server's limit is reached. Either way the client may try again shortly."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Cancelled(CharnnError):
    """The client went away; its work stops (nobody reads the answer)."""
    status = 499


# -- who may ask ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AccessPolicy:
    """Which Host headers name this server, and the token a request needs (None: none).

    names: host names (lower case) with the port they must come with (None: the port the
    request arrived on); ips: IP literals, likewise; any_ip: the server listens on every
    address, so any IP literal names it (a DNS-rebinding page needs a name, not an IP).
    """
    names: frozenset = frozenset()
    ips: frozenset = frozenset()
    any_ip: bool = False
    token: str | None = None

    @classmethod
    def for_address(cls, address: str, allow_hosts=(), token: str | None = None,
                    given_name: str | None = None) -> "AccessPolicy":
        """The policy of a server bound to `address` (an IP literal), reachable by the
        loopback names, `given_name` (the --host it was started with, when a name) and each
        `allow_hosts` entry (NAME or NAME:PORT)."""
        ip = ipaddress.ip_address(address)
        names = {(n, None) for n in LOOPBACK_NAMES}
        ips = {(ipaddress.ip_address("127.0.0.1"), None), (ipaddress.ip_address("::1"), None)}
        if not ip.is_unspecified:
            ips.add((ip, None))
        if given_name:
            names.add((given_name.lower(), None))
        for entry in allow_hosts:
            host, port = split_host(entry)
            try:
                ips.add((ipaddress.ip_address(host), port))
            except ValueError:
                names.add((host, port))
        return cls(frozenset(names), frozenset(ips), ip.is_unspecified, token)

    def names_this_server(self, host_header: str | None, server_port: int | None) -> bool:
        if not host_header:
            return False
        try:
            host, port = split_host(host_header)
        except ValueError:
            return False
        if port is None:
            port = 80                                   # what a browser leaves out
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None

        def port_fits(wanted: int | None) -> bool:
            wanted = wanted or server_port              # a unix socket's server has no port
            return wanted is None or port == wanted

        if ip is not None and self.any_ip:
            return port_fits(None)
        allowed = self.ips if ip is not None else self.names
        key = ip if ip is not None else host
        return any(name == key and port_fits(wanted) for name, wanted in allowed)


def split_host(text: str) -> tuple[str, int | None]:
    """'name:8000' -> ('name', 8000); '[::1]:8000' -> ('::1', 8000); 'name' -> ('name',
    None). Raises ValueError for anything else."""
    text = text.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(text)
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    if not host or any(c in host for c in "/@?#\\ ") or (port_text is not None and not (
            port_text.isdigit() and len(port_text) <= 5 and 0 < int(port_text) < 65536)):
        raise ValueError(text)
    return host, None if port_text is None else int(port_text)


def _token_cookie(port) -> str:
    # Cookies ignore ports: two servers on one machine keep separate cookies this way.
    return f"charnn-token-{port}"


class RequestGuard:
    """ASGI middleware: refuses, before the app reads anything of the request, a Host that
    does not name this server (403), an API request from another origin (403), an API request
    without the token where one is needed (401), and a declared body over MAX_BODY (413)."""

    def __init__(self, app, policy: AccessPolicy, max_body: int = MAX_BODY):
        self.app, self.policy, self.max_body = app, policy, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            status, message = refusal
            response = JSONResponse({"error": message}, status,
                                    headers={"Connection": "close"})   # the body: unread
            return await response(scope, receive, send)
        body_read = headers.get("content-length", "0") == "0" and \
            "transfer-encoding" not in headers

        async def noting_receive():
            nonlocal body_read
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_read = True
            return message

        async def closing_send(message):
            if message["type"] == "http.response.start" and not body_read:
                # An answer given before the whole body came (a refusal, a route that takes
                # none): closing stops the server from reading the rest, however long, to
                # keep the connection.
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"connection", b"close")]}
            await send(message)

        return await self.app(scope, noting_receive, closing_send)

    def refusal(self, scope, headers: Headers) -> tuple[int, str] | None:
        server_port = (scope.get("server") or (None, None))[1]
        host = headers.get("host")
        if not self.policy.names_this_server(host, server_port):
            return 403, (f"the Host header {host!r} does not name this server; open it by "
                         "its address (127.0.0.1 or localhost), or start it with "
                         "--allow-host NAME for the name you use")
        path = scope["path"]
        if path == "/api" or path.startswith("/api/"):
            origin = headers.get("origin")
            if origin is not None and origin.lower() != f"{scope['scheme']}://{host}".lower():
                return 403, (f"a request from the page at {origin} is refused: only this "
                             "server's own page may use its API")
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, ("a request from another site's page is refused: only this "
                             "server's own page may use its API")
            if self.policy.token is not None and not self._has_token(headers, server_port):
                return 401, ("this server needs its token: open the address with ?token=... "
                             "that charnn serve printed when it started")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, f"Content-Length is {length!r}; give a whole number of bytes"
            if int(length) > self.max_body:
                return 413, (f"the request body has {int(length):,} bytes; give at most "
                             f"{self.max_body:,}")
        return None

    def _has_token(self, headers: Headers, port) -> bool:
        given = headers.get(TOKEN_HEADER)
        if given is None:
            cookies = {}
            for part in headers.get("cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                cookies[name] = value
            given = cookies.get(_token_cookie(port))
        return given is not None and secrets.compare_digest(given.encode(),
                                                            self.policy.token.encode())


# -- the request body -----------------------------------------------------------------------

async def _json_body(request: Request, max_body: int = MAX_BODY) -> dict:
    """The request's JSON object. The size is counted as the body streams in (a chunked body
    declares none) and reading stops as soon as it passes max_body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise _Status(415, f"the request body is {kind or 'untyped'}; send JSON, with "
                           "Content-Type: application/json")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise _Status(413, f"the request body has more than {max_body:,} bytes; give "
                                   f"at most {max_body:,}")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Cancelled("the client went away") from None
    try:
        body = json.loads(b"".join(chunks).decode("utf-8")) if size else {}
    except RecursionError:
        raise BadRequest("the request body is JSON nested too deeply; send {\"text\": ...}"
                         ) from None
    except ValueError:                              # not JSON, or not UTF-8
        raise BadRequest("the request body is not JSON; send a JSON object such as "
                         "{\"text\": ...}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the request body is a JSON {_json_kind(body)}; send a JSON object "
                         "such as {\"text\": ...}")
    return body


class _Status(CharnnError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _json_kind(value) -> str:
    return {type(None): "null", bool: "true/false", int: "number", float: "number",
            str: "string", list: "array", dict: "object"}.get(type(value), "value")


class Fields:
    """A request body's fields, each checked for its type and range. Numbers may come as
    JSON numbers or as their text (what a form holds)."""

    def __init__(self, body: dict, known: tuple[str, ...]):
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}; the fields are "
                             f"{', '.join(known)}")
        self.body = body

    def number(self, name: str, kind, default, low=None, high=None):
        raw = self.body.get(name)
        if raw is None or raw == "":
            return default
        try:
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise ValueError
            if kind is int and isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                raw = int(raw)
            if isinstance(raw, str) and len(raw) > 40:
                raise ValueError
            value = kind(raw)
        except (ValueError, OverflowError):
            raise BadRequest(f"{name} is {_shown(raw)}; give a "
                             f"{'whole ' if kind is int else ''}number") from None
        if kind is float and not math.isfinite(value):
            raise BadRequest(f"{name} is {_shown(raw)}; give a finite number")
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"from {low} to {high}" if low is not None else f"up to {high}"
            raise BadRequest(f"{name} is {_shown(raw)}; give a value {span}")
        return value

    def flag(self, name: str) -> bool:
        raw = self.body.get(name, False)
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false",
                                                    "no", "off", ""):
            return raw.lower() in ("1", "true", "yes", "on")
        raise BadRequest(f"{name} is {_shown(raw)}; give true or false")

    def text(self, name: str, default: str | None, most: int, what: str) -> str | None:
        raw = self.body.get(name)
        if raw is None:
            return default
        if not isinstance(raw, str):
            raise BadRequest(f"{name} is a JSON {_json_kind(raw)}; give a string")
        if len(raw) > most:
            raise BadRequest(f"{what} has {len(raw):,} characters; give at most {most:,}")
        return raw


def _shown(raw) -> str:
    text = repr(raw) if isinstance(raw, str) else json.dumps(raw)
    return text if len(text) <= 40 else text[:40] + "..."


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# -- model work -----------------------------------------------------------------------------

class ModelWork:
    """The threads that run the model, and who may use them. A request is admitted (or
    refused at once with 429/503) before it waits for a thread, so a flood of requests queues
    no more than `most_admitted` jobs, one client no more than `per_client`. Admission and
    release happen on the event loop's thread."""

    def __init__(self, threads: int = MODEL_THREADS, most_admitted: int = MOST_ADMITTED,
                 per_client: int = PER_CLIENT):
        self.threads, self.most_admitted, self.per_client = threads, most_admitted, per_client
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="charnn-model")
        self.admitted = 0
        self.by_client: Counter = Counter()
        self.tickets: set = set()

    def admit(self, client: str) -> "Ticket":
        if self.by_client[client] >= self.per_client:
            raise Busy(f"this client already has {self.per_client} model requests running "
                       "or waiting; try again when one has finished", 429)
        if self.admitted >= self.most_admitted:
            raise Busy(f"the server already has {self.most_admitted} model requests running "
                       "or waiting; try again shortly", 503)
        self.admitted += 1
        self.by_client[client] += 1
        ticket = Ticket(self, client)
        self.tickets.add(ticket)
        return ticket

    def _release(self, ticket: "Ticket") -> None:
        self.tickets.discard(ticket)
        self.admitted -= 1
        self.by_client[ticket.client] -= 1
        if not self.by_client[ticket.client]:
            del self.by_client[ticket.client]

    def stop_all(self) -> None:
        """Asks all running work to stop (at shutdown), and frees the threads."""
        for ticket in list(self.tickets):
            ticket.cancel.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass(eq=False)
class Ticket:
    """One admitted request's hold on ModelWork; `cancel` asks its work to stop."""
    work: ModelWork
    client: str
    cancel: threading.Event = field(default_factory=threading.Event)
    released: bool = False

    async def run(self, fn, *args):
        """fn(*args) on a model thread; raises Cancelled if the client left before it began."""
        return await asyncio.get_running_loop().run_in_executor(self.work.pool, self._call,
                                                                fn, args)

    def _call(self, fn, args):
        self.check()
        return fn(*args)

    def check(self, *_) -> None:
        """Raises Cancelled once the client has gone: called between steps of the work."""
        if self.cancel.is_set():
            raise Cancelled("the client went away")

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.work._release(self)


def _client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _cancel_on_disconnect(receive, cancel: threading.Event) -> None:
    """Waits for the client to go away, then sets `cancel` (the request body has been read:
    what comes next is the disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


@contextlib.asynccontextmanager
async def _admitted(request: Request):
    """A ticket for model work that ends with the request, and is cancelled when the client
    goes away before."""
    ticket = request.app.state.work.admit(_client_of(request))
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request.receive, ticket.cancel))
    try:
        yield ticket
    finally:
        watcher.cancel()
        ticket.cancel.set()                 # work still running here has nobody to answer
        ticket.release()


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
                # which backend runs the model, when it is not the fastest (its kernels are
                # not compiled yet), is said on the server's console
                model = load(path, self.backend, lambda message: print(
                    f"charnn serve: run {run.name!r}: {message}", file=sys.stderr, flush=True))
            except CharnnError as exc:
                raise ModelUnavailable(f"run {run.name!r}: "
                                       f"{run.without_path(str(exc))}") from None
            except (OSError, ValueError, KeyError) as exc:
                raise ModelUnavailable(f"run {run.name!r}: its checkpoint {path.name} cannot be "
                                       f"read ({type(exc).__name__}); use another run") from None
            self._cache[run.name] = (key, model)
            return model


def create_app(table: RunTable, backend: str = "auto", *,
               policy: AccessPolicy | None = None, work: ModelWork | None = None):
    """The app, wrapped in its RequestGuard. policy: default, loopback names only and no
    token; work: default, ModelWork() (its limits)."""
    models = Models(backend)
    policy = policy if policy is not None else AccessPolicy.for_address("127.0.0.1")
    work = work if work is not None else ModelWork()

    async def page(request: Request):
        name = request.path_params.get("file", "index.html")
        if name not in STATIC:
            raise HTTPException(404)
        response = Response(_static(name), media_type=STATIC[name])
        given = request.query_params.get("token")
        if policy.token is not None and given is not None and secrets.compare_digest(
                given.encode(), policy.token.encode()):
            # The page's own requests then carry the token; other sites' requests do not.
            port = (request.scope.get("server") or (None, None))[1]
            response.set_cookie(_token_cookie(port), policy.token, httponly=True,
                                samesite="strict")
        return response

    async def list_runs(request: Request):
        runs = await run_in_threadpool(lambda: [r.summary() for r in table.refresh()])
        return JSONResponse({"runs": runs})

    async def log(request: Request):
        run = table.get(request.path_params["run"])
        return JSONResponse(await run_in_threadpool(_log_doc, run))

    async def generate(request: Request):
        body = await _json_body(request)
        run = table.get(request.path_params["run"])
        fields = Fields(body, ("prime", "length", "temperature", "top_k", "top_p", "greedy",
                               "seed", "zero_state"))
        length = fields.number("length", int, 500, 1, MAX_GENERATE)
        seed = fields.number("seed", int, None, *WHOLE_LIMITS["seed"])
        prime = fields.text("prime", "", MAX_PRIME, "the prime text")
        zero_state = fields.flag("zero_state")
        ticket = work.admit(_client_of(request))
        try:
            model = await ticket.run(models.get, run)
            options = SamplingOptions(
                temperature=fields.number("temperature", float, 1.0),
                top_k=fields.number("top_k", int, 0, 0, len(model.vocab)),
                top_p=fields.number("top_p", float, 1.0),
                greedy=fields.flag("greedy"))
            _validated(options)
            _check_known(model, prime, "the prime text")
        except BaseException:
            ticket.release()
            raise
        return _EventStream(ticket, _stream(request.app, ticket, model, length, prime,
                                            options, seed, zero_state))

    async def beam(request: Request):
        body = await _json_body(request)
        run = table.get(request.path_params["run"])
        fields = Fields(body, ("prime", "length", "beams", "zero_state"))
        length = fields.number("length", int, 100, 1, MAX_BEAM_LENGTH)
        width = fields.number("beams", int, 5, 1, MAX_BEAM_WIDTH)
        prime = fields.text("prime", "", MAX_PRIME, "the prime text")
        zero_state = fields.flag("zero_state")
        async with _admitted(request) as ticket:
            model = await ticket.run(models.get, run)
            _check_known(model, prime, "the prime text")
            beams = await ticket.run(lambda: model.beam_search(length, width, prime, zero_state,
                                                               on_step=ticket.check))
        return JSONResponse({"prime": prime, "beams": [
            {"text": b.text, "logprob": b.logprob, "finished": b.finished} for b in beams]})

    async def default_text(request: Request):
        run = table.get(request.path_params["run"])
        async with _admitted(request) as ticket:
            model = await ticket.run(models.get, run)
            text, source = await ticket.run(_default_text, run, model)
        return JSONResponse({"text": text, "source": source})

    async def analyse(request: Request):
        body = await _json_body(request)
        run = table.get(request.path_params["run"])
        fields = Fields(body, ("text", "zero_state"))
        text = fields.text("text", None, MAX_ANALYSE, "the text")
        zero_state = fields.flag("zero_state")
        async with _admitted(request) as ticket:
            model = await ticket.run(models.get, run)
            if text is None:
                text, _ = await ticket.run(_default_text, run, model)
            if not text:
                raise BadRequest("text is empty; type or paste some text")
            _check_known(model, text, "the text")
            doc = await ticket.run(_analysis_doc, model, text, zero_state)
        return JSONResponse(doc)

    async def error(request: Request, exc: Exception):
        headers = {}
        if isinstance(exc, UnknownRun):
            status = 404
        elif isinstance(exc, HTTPException):
            return JSONResponse({"error": f"{request.url.path}: {exc.detail}"},
                                exc.status_code)
        else:
            status = getattr(exc, "status", 400)
        if isinstance(exc, Busy):
            headers["Retry-After"] = str(RETRY_AFTER_S)
        return JSONResponse({"error": table.without_paths(str(exc))}, status, headers)

    async def internal(request: Request, exc: Exception):
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the "
                                      "server's output"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        work.stop_all()

    routes = [
        Route("/", page),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}/log", log),
        Route("/api/runs/{run}/generate", generate, methods=["POST"]),
        Route("/api/runs/{run}/beam", beam, methods=["POST"]),
        Route("/api/runs/{run}/text", default_text),
        Route("/api/runs/{run}/analyse", analyse, methods=["POST"]),
        Route("/{file}", page),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        CharnnError: error, HTTPException: error, Exception: internal})
    app.state.table, app.state.models, app.state.active_streams = table, models, 0
    app.state.work, app.state.policy = work, policy
    guarded = RequestGuard(app, policy)
    guarded.state = app.state                 # what tests and the server look at
    return guarded


@lru_cache(maxsize=None)
def _static(name: str) -> bytes:
    return resources.files("charnn").joinpath("web", name).read_bytes()


def _validated(options: SamplingOptions) -> None:
    try:
        options.validate()
    except CharnnError as exc:           # the command line's wording, the page's names
        raise BadRequest(str(exc).replace("--temperature", "temperature")
                         .replace("--top-k", "top-k").replace("--top-p", "top-p")
                         .replace("--greedy", "greedy")) from None


def _check_known(model, text: str, what: str) -> None:
    try:
        model.check_known(text, what)
    except CharnnError as exc:
        raise BadRequest(str(exc)) from None


def _count_stream(app, change: int) -> None:
    """Streams whose drawing thread still runs (counted on the event loop's thread)."""
    app.state.active_streams += change


class _EventStream(StreamingResponse):
    """The generate stream: its drawing stops however the response ends (even one whose
    body never began, when the client left at once)."""

    def __init__(self, ticket: Ticket, events):
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store"})
        self.ticket = ticket

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ticket.cancel.set()


def _stream(app, ticket: Ticket, model, length, prime, options, seed, zero_state):
    """Server-sent events: `text` as it is drawn, then `done` or `error`. The drawing starts
    now, on a model thread, and holds the ticket until it ends; when the client goes away (or
    presses stop) it stops at its next block."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    table = app.state.table

    def put(kind, data):
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    def on_text(text):
        ticket.check()
        put("text", text)

    def work():
        try:
            ticket.check()
            model.generate(length, prime, options.temperature, options.top_k, options.top_p,
                           options.greedy, seed=seed, zero_state=zero_state, on_text=on_text)
            put("done", None)
        except Cancelled:
            pass
        except CharnnError as exc:
            put("error", table.without_paths(str(exc)))
        except Exception as exc:                      # noqa: BLE001 - reported, not raised
            put("error", f"internal error ({type(exc).__name__})")
        finally:
            loop.call_soon_threadsafe(_count_stream, app, -1)
            loop.call_soon_threadsafe(ticket.release)

    _count_stream(app, +1)
    try:
        loop.run_in_executor(ticket.work.pool, work)
    except RuntimeError:                               # the pool is shut: the server stops
        _count_stream(app, -1)
        ticket.release()
        raise Cancelled("the server is stopping") from None

    async def events():
        try:
            while True:
                kind, data = await queue.get()
                yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                if kind != "text":
                    break
        finally:
            ticket.cancel.set()

    return events()


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


# -- the server -----------------------------------------------------------------------------

def listening_socket(host: str, port: int):
    """A socket bound to host:port, so that a port in use (or an address this machine does
    not have) is a one-line error before anything is printed. Returns (socket, address)."""
    import errno
    import socket
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        raise CharnnError(f"--host {host!r} is not an address or a name this machine can "
                          "resolve; give an address such as 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CharnnError(f"port {port} on {host} is in use (another server listens "
                              "there); stop it, or give another --port") from None
        if exc.errno == errno.EACCES:
            raise CharnnError(f"port {port} needs more privileges than this user has; give "
                              "a --port above 1023") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise CharnnError(f"--host {host} is not an address of this machine; give one of "
                              "its addresses, 127.0.0.1 or 0.0.0.0") from None
        raise CharnnError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock, address[0]


def serve(runs: list[str | Path], runs_dir: str | Path | None, host: str, port: int,
          backend: str = "auto", allow_hosts=(), announce=print, warn=print) -> None:
    """Serve the runs until Ctrl-C. Listening beyond loopback needs a token, shown once in
    the address the banner prints; `warn` says so."""
    import uvicorn
    table = RunTable(runs, runs_dir)
    sock, address = listening_socket(host, port)
    port = sock.getsockname()[1]
    try:
        ipaddress.ip_address(host)
        given_name = None
    except ValueError:
        given_name = host
    loopback = ipaddress.ip_address(address).is_loopback
    token = None if loopback else secrets.token_urlsafe(24)
    policy = AccessPolicy.for_address(address, allow_hosts, token, given_name)
    app = create_app(table, backend, policy=policy)
    wildcard = ipaddress.ip_address(address).is_unspecified
    if wildcard:                  # every address: this machine's own one opens the page here
        host = "::1" if ":" in address else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(r.name for r in table.refresh()) or "none yet"
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    if not loopback:
        elsewhere = (f"; other machines open it with this machine's address (or a name given "
                     f"with --allow-host) in place of {shown}" if wildcard else "")
        warn(f"charnn serve: warning: listening on {address}, so other machines can reach "
             "this server; each browser needs the token in the address below (keep it "
             f"private){elsewhere}")

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started and not self.should_exit:       # listening: now say where
                announce(f"charnn serve: {url}  (runs: {names}; Ctrl-C stops)")

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    try:
        AnnouncingServer(config).run(sockets=[sock])
    finally:
        sock.close()
