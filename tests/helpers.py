"""Shared pieces of the project's tests: the real-session captures, the replay app run in-process, /ws clients
that follow a job to its end (in-process or on a socket), and the client side of a captured session replayed
against a server."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from starlette.types import Message
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close
from websockets.sync.client import connect

from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.http.app import create_app
from comfy_cassettes.replay.config import BUNDLED_DIR, ReplayConfig
from comfy_cassettes.replay.server import ReplayServer, build_engine

T = TypeVar("T")
DATA = Path(__file__).parent / "data"
SESSIONS = DATA / "real_sessions"
SCENARIOS = sorted(p.name for p in SESSIONS.iterdir() if (p / "session.har").is_file())
# Captures of ComfyUI 0.8.0, named "real_sessions_0.8/SCENARIO" wherever a scenario name is taken.
SESSIONS_08 = DATA / "real_sessions_0.8"
SCENARIOS_08 = sorted(f"{SESSIONS_08.name}/{p.name}" for p in SESSIONS_08.iterdir() if (p / "session.har").is_file())
# Further 0.8.0 captures of scenarios the shared set lacks, recorded here through `record --proxy` (their README).
MORE_08 = DATA / "more_sessions_0.8"
SCENARIOS_MORE_08 = sorted(f"{MORE_08.name}/{p.name}" for p in MORE_08.iterdir() if (p / "session.har").is_file())
# The same for ComfyUI 0.3.64 (their README): what the shared 0.3.64 captures do not show.
MORE_03 = DATA / "more_sessions_0.3"
SCENARIOS_MORE_03 = sorted(f"{MORE_03.name}/{p.name}" for p in MORE_03.iterdir() if (p / "session.har").is_file())


def har_path(scenario: str) -> Path:
    """A scenario's session.har: a bare name is a 0.3.64 capture, "set/name" one under tests/data/set."""
    return (DATA / scenario if "/" in scenario else SESSIONS / scenario) / "session.har"


# The ini of a user suite run by pytester: strict, quiet, warnings as errors.
SUITE_INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
"""


def module_server(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ReplayServer]:
    """A ReplayServer of the bundled default cassette for a module's tests, with its folders under a temp dir."""
    root = tmp_path_factory.mktemp(name)
    config = ReplayConfig(port=0, output_dir=root / "out", input_dir=root / "in", temp_dir=root / "temp", user_dir=root / "user")
    with ReplayServer(config) as started:
        yield started


def bundled(name: str) -> Path:
    """A cassette shipped with the package."""
    return BUNDLED_DIR / f"{name}.yaml"


# ---------------------------------------------------------------- the real-session captures (HAR)

HarEntry = dict[str, Any]


@lru_cache(maxsize=None)
def _har_text(scenario: str) -> str:
    return har_path(scenario).read_text(encoding="utf-8")


def load_har(scenario: str) -> dict[str, Any]:
    """A fresh parse of a scenario's session.har (callers may mutate it)."""
    har: dict[str, Any] = json.loads(_har_text(scenario))
    return har


def http_entries(scenario: str) -> list[HarEntry]:
    """The HTTP (non-WebSocket) entries of a scenario, in capture order."""
    return [e for e in load_har(scenario)["log"]["entries"] if e.get("_resourceType") != "websocket"]


def ws_entries(scenario: str) -> list[HarEntry]:
    """The WebSocket entries of a scenario, one per connection."""
    return [e for e in load_har(scenario)["log"]["entries"] if e.get("_resourceType") == "websocket"]


def ws_received(scenario: str) -> Iterator[dict[str, Any]]:
    """Every text frame the server sent, parsed, socket by socket in capture order."""
    for entry in ws_entries(scenario):
        for message in entry.get("_webSocketMessages", []):
            if message["type"] == "receive" and message["opcode"] == 1:
                yield json.loads(message["data"])


def request_path(entry: HarEntry) -> str:
    """The URL path of the request, e.g. ``/view`` or ``/api/prompt``."""
    return str(urlsplit(entry["request"]["url"]).path)


def query_params(entry: HarEntry) -> dict[str, str]:
    """The decoded query parameters of the request (last value wins)."""
    return {p["name"]: p["value"] for p in entry["request"].get("queryString", [])}


def response_headers(entry: HarEntry) -> dict[str, str]:
    """A new dict of the response headers, in captured order."""
    return {h["name"]: h["value"] for h in entry["response"].get("headers", [])}


def response_bytes(entry: HarEntry) -> bytes:
    """The response body as bytes (HAR stores binary bodies as base64)."""
    content = entry["response"].get("content", {})
    text = content.get("text", "")
    if content.get("encoding") == "base64":
        return base64.b64decode(text)
    return str(text).encode("utf-8")


def request_bytes(entry: HarEntry) -> bytes:
    """The request body as bytes (binary bodies are marked with ``postData._encoding``)."""
    post = entry["request"].get("postData", {})
    text = post.get("text", "")
    if post.get("_encoding") == "base64":
        return base64.b64decode(text)
    return str(text).encode("utf-8")


def request_json(entry: HarEntry) -> Any:
    """The request body parsed as JSON; raises ValueError when it is not JSON."""
    return json.loads(request_bytes(entry))


def response_json(entry: HarEntry) -> Any:
    """The response body parsed as JSON; raises ValueError when it is not JSON."""
    return json.loads(response_bytes(entry))


@dataclass(frozen=True)
class MultipartField:
    """One part of a multipart/form-data request body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def multipart_fields(entry: HarEntry) -> dict[str, MultipartField]:
    """The parts of a multipart/form-data request, by field name."""
    mime = entry["request"]["postData"]["mimeType"]
    boundary = mime.split("boundary=", 1)[1].split(";", 1)[0].strip('"').encode()
    fields: dict[str, MultipartField] = {}
    for part in request_bytes(entry).split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        params = {}
        for item in headers.get("content-disposition", "").split(";")[1:]:
            key, _, value = item.strip().partition("=")
            params[key] = value.strip('"')
        name = params["name"]
        data = body.removesuffix(b"\r\n")
        fields[name] = MultipartField(name, params.get("filename"), headers.get("content-type"), data)
    return fields


# ---------------------------------------------------------------- the replay app in-process


class InProcessServer:
    """The replay app with its engine on an event loop in a thread, reached through httpx transports and an
    in-memory /ws: no socket, no uvicorn. Faces the tests like ReplayServer (``url``, ``engine``, ``config``,
    ``stop()``). A request dropped by a fault rule raises httpx.RemoteProtocolError, but nothing is cut at the
    TCP level and the server cannot go down: those faults, and timeouts as a network client sees them, need a
    ReplayServer.
    """

    # A loopback name, so ComfyUI's Origin check applies as on 127.0.0.1; nothing listens there.
    url = "http://in-process.localhost"

    def __init__(self, config: ReplayConfig) -> None:
        self.engine = build_engine(config)
        self.config = self.engine.config
        self._ports = itertools.count(50000)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="comfy-cassettes-in-process")
        self._thread.start()
        try:
            self.app = create_app(self.engine)
            self._to_app: asyncio.Queue[Message] = asyncio.Queue()
            self._from_app: asyncio.Queue[Message] = asyncio.Queue()
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self._lifespan = self.submit(self.app(scope, self._to_app.get, self._from_app.put))
            self._lifespan_step("startup")
        except BaseException:
            self._close_loop()
            self.engine.remove_owned_dirs()
            raise
        self.transport = _AppTransport(self)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the app's event loop."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coroutine`` on the app's event loop and wait for its result."""
        return self.submit(coroutine).result(timeout)

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client whose requests go straight to the app."""
        options.setdefault("timeout", 10)
        return httpx.Client(base_url=self.url, transport=self.transport, **options)

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        """An httpx async client (on any event loop) whose requests go straight to the app."""
        options.setdefault("timeout", 10)
        return httpx.AsyncClient(base_url=self.url, transport=_AsyncAppTransport(self), **options)

    def websocket(self, path: str, headers: dict[str, str] | None = None) -> InProcessWebSocket:
        """A connected /ws (``path`` with its query), or ConnectionRefusedError when the app refuses it."""
        return InProcessWebSocket(self, path, headers or {})

    def client_address(self) -> tuple[str, int]:
        """A distinct client address per connection, as a real server would see them."""
        return ("127.0.0.1", next(self._ports))

    def _lifespan_step(self, step: str) -> None:
        self.call(self._to_app.put({"type": f"lifespan.{step}"}))
        message = self.call(self._from_app.get())
        if message["type"] != f"lifespan.{step}.complete":
            raise RuntimeError(f"the app's lifespan {step} failed: {message.get('message', message)}")

    def stop(self) -> None:
        """Run the app's shutdown (the engine stops), stop the loop and remove the engine's own folders."""
        if self._loop.is_closed():
            return
        try:
            self._lifespan_step("shutdown")
            self._lifespan.result(10)
        finally:
            self._close_loop()
            self.engine.remove_owned_dirs()

    def _close_loop(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(cancel_the_rest())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> InProcessServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _answer(server: InProcessServer, request: httpx.Request) -> httpx.Response:
    """``request`` through httpx's ASGI transport, on the app's loop; a connection dropped by a fault rule
    (the app raises ConnectionResetError without a socket to cut) is the error a real client gets."""
    dropped = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal dropped
        try:
            await server.app(scope, receive, send)
        except ConnectionResetError:
            dropped = True
            raise

    transport = httpx.ASGITransport(app, raise_app_exceptions=False, client=server.client_address())
    response = await transport.handle_async_request(request)
    body = await response.aread()
    if dropped:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
    return httpx.Response(response.status_code, headers=response.headers, content=body)


def _read_timeout(request: httpx.Request) -> float | None:
    timeout: float | None = request.extensions.get("timeout", {}).get("read")
    return timeout


class _AppTransport(httpx.BaseTransport):
    """Sync httpx transport into an InProcessServer (a crash answers 500 like the server would)."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # the body becomes a ByteStream, readable on the app's loop
        future = self.server.submit(_answer(self.server, request))
        try:
            return future.result(_read_timeout(request))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise httpx.ReadTimeout("the in-process app did not answer in time", request=request) from None


class _AsyncAppTransport(httpx.AsyncBaseTransport):
    """Async httpx transport into an InProcessServer, from any event loop."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        future = asyncio.wrap_future(self.server.submit(_answer(self.server, request)))
        try:
            return await asyncio.wait_for(future, _read_timeout(request))
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout("the in-process app did not answer in time", request=request) from None


class InProcessWebSocket:
    """A /ws connection to an InProcessServer with what the tests use of websockets' sync ClientConnection:
    ``recv(timeout)`` (TimeoutError when nothing came; ConnectionClosed after a close), ``send``, ``close``."""

    def __init__(self, server: InProcessServer, path: str, headers: dict[str, str]) -> None:
        self._server = server
        self._received: queue.Queue[Message] = queue.Queue()
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._closed: Close | None = None
        url = urlsplit(path)
        host = urlsplit(server.url).netloc
        raw = [("host", host), *((k.lower(), v) for k, v in headers.items()), ("connection", "upgrade"),
               ("upgrade", "websocket"), ("sec-websocket-version", "13"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
            "path": url.path, "raw_path": url.path.encode(), "query_string": url.query.encode(), "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in raw],
            "server": (host, 80), "client": server.client_address(), "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        self._task = server.submit(self._run(scope))
        self._put({"type": "websocket.connect"})
        answer = self._next(10)
        if answer["type"] == "websocket.http.response.start":
            raise ConnectionRefusedError(f"{url.path}: the app refused the WebSocket with HTTP {answer['status']}")
        if answer["type"] != "websocket.accept":
            raise ConnectionRefusedError(f"{url.path}: the app closed the WebSocket before accepting it: {answer}")

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self._server.app(scope, self._to_app.get, self._sent)
        except Exception as exc:  # what uvicorn does: close with 1011
            self._received.put({"type": "websocket.close", "code": 1011, "reason": repr(exc)})
        else:
            self._received.put({"type": "websocket.close", "code": 1000, "reason": ""})

    async def _sent(self, message: Message) -> None:
        self._received.put(message)

    def _put(self, message: Message) -> None:
        self._server.call(self._to_app.put(message), 10)

    def _next(self, timeout: float | None) -> Message:
        try:
            return self._received.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no WebSocket message within {timeout}s") from None

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; raises ConnectionClosed like websockets once the app closed the socket."""
        if self._closed is None:
            message = self._next(timeout)
            if message["type"] != "websocket.close":
                return str(message["text"]) if message.get("text") is not None else bytes(message["bytes"])
            self._closed = Close(int(message.get("code") or 1000), str(message.get("reason") or ""))
        closed_ok = self._closed.code in (1000, 1001)
        raise (ConnectionClosedOK if closed_ok else ConnectionClosedError)(self._closed, None)

    def send(self, message: str | bytes) -> None:
        key = "bytes" if isinstance(message, bytes) else "text"
        self._put({"type": "websocket.receive", key: message})

    def close(self) -> None:
        """Disconnect like a client and wait for the app's handler to finish."""
        if not self._task.done():
            self._put({"type": "websocket.disconnect", "code": 1000})
            self._task.result(10)

    def __enter__(self) -> InProcessWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- clients for either kind of server

AnyServer = ReplayServer | InProcessServer


def http_client(server: AnyServer, **options: Any) -> httpx.Client:
    """An httpx client for ``server`` (in-process or on a socket)."""
    if isinstance(server, InProcessServer):
        return server.client(**options)
    options.setdefault("timeout", 10)
    return httpx.Client(base_url=server.url, **options)


def control_for(server: AnyServer) -> ReplayControl:
    """A ReplayControl for ``server`` (in-process or on a socket)."""
    return ReplayControl(server.url, transport=server.transport if isinstance(server, InProcessServer) else None)


def connect_ws(server: AnyServer, client_id: str) -> Any:
    """A /ws connection, before its greeting: in-process, or websockets' sync client with an unbounded buffer
    (so a test can read everything at the end); both have ``recv(timeout)`` and are context managers."""
    if isinstance(server, InProcessServer):
        return server.websocket(f"/ws?clientId={client_id}")
    return connect(server.url.replace("http://", "ws://") + f"/ws?clientId={client_id}", max_queue=None)


@contextlib.contextmanager
def open_ws(server: AnyServer, client_id: str) -> Iterator[Any]:
    """A /ws client past its greeting."""
    with connect_ws(server, client_id) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "status" and hello["data"]["sid"] == client_id
        yield ws


def job_messages(ws: Any, prompt_id: str, *, timeout: float = 5.0) -> Iterator[dict[str, Any] | bytes]:
    """Messages from ``ws`` (text parsed, binary frames as bytes) up to and including ``executing`` with node
    null for ``prompt_id``, ComfyUI's "this job is done"."""
    done = {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}
    while True:
        message = ws.recv(timeout=timeout)
        if isinstance(message, bytes):
            yield message
            continue
        event: dict[str, Any] = json.loads(message)
        yield event
        if event == done:
            return


def events_until_done(ws: Any, prompt_id: str, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The text events of :func:`job_messages` (binary frames skipped)."""
    return [m for m in job_messages(ws, prompt_id, timeout=timeout) if isinstance(m, dict)]


def ws_lifecycle(server: AnyServer, workflow: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit over HTTP, follow /ws until `executing` with node null for our prompt, then read history."""
    client_id = uuid.uuid4().hex
    with connect_ws(server, client_id) as ws, http_client(server) as http:
        hello = json.loads(ws.recv(timeout=5))
        assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}}
        prompt_id = http.post("/prompt", json={"prompt": workflow, "client_id": client_id}).json()["prompt_id"]
        events = events_until_done(ws, prompt_id, timeout=10)
        history = http.get(f"/history/{prompt_id}").json()[prompt_id]
    return history, events


# ---------------------------------------------------------------- a captured session's client side, replayed

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FILENAME = re.compile(r".+_\d{5}_\.(png|jpg|jpeg|webp)$")


def shape(value: Any) -> Any:
    """Keys and value types of a JSON value; ids used as keys are folded so runs can be compared."""
    if isinstance(value, dict):
        return {("<id>" if UUID.fullmatch(str(k)) else k): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return type(value).__name__
    return "str"


def ws_kinds(frames: list[str | bytes]) -> list[str]:
    """The order of message types on one socket (binary frames by their event type)."""
    kinds = []
    for frame in frames:
        if isinstance(frame, bytes):
            kinds.append(f"binary:{int.from_bytes(frame[:4], 'big')}")
        else:
            kinds.append(json.loads(frame).get("type", "?"))
    return kinds


@dataclass
class Step:
    t: float
    kind: str  # "http", "ws_open", "ws_send", "ws_close"
    entry: dict[str, Any]
    socket: int = -1
    received_before: dict[int, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """What the replay saw, next to what the capture saw."""

    http: list[tuple[str, dict[str, Any], httpx.Response | None]] = field(default_factory=list)
    captured_ws: dict[int, list[str | bytes]] = field(default_factory=dict)
    replayed_ws: dict[int, list[str | bytes]] = field(default_factory=dict)
    # When each replayed frame arrived and each request went out (the event loop's clock), next to the capture's
    # send time: a CPU-starved client sends late, and what a server sent meanwhile legitimately precedes its echo.
    replayed_at: dict[int, list[float]] = field(default_factory=dict)
    sent: list[tuple[float, float]] = field(default_factory=list)


def _steps(har: dict[str, Any]) -> tuple[list[Step], dict[int, list[str | bytes]]]:
    steps: list[Step] = []
    received: list[tuple[float, int]] = []
    captured: dict[int, list[str | bytes]] = {}
    sockets = 0
    for entry in har["log"]["entries"]:
        start = datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()
        if entry.get("_resourceType") == "websocket":
            index = sockets
            sockets += 1
            captured[index] = []
            steps.append(Step(start, "ws_open", entry, index))
            last = start
            for m in entry["_webSocketMessages"]:
                data: str | bytes = base64.b64decode(m["data"]) if m["opcode"] == 2 else m["data"]
                last = m["time"]
                if m["type"] == "send":
                    steps.append(Step(m["time"], "ws_send", {"data": data}, index))
                else:
                    captured[index].append(data)
                    received.append((m["time"], index))
            steps.append(Step(last + entry.get("time", 0) / 1000.0 + 1e-6, "ws_close", entry, index))
        else:
            steps.append(Step(start, "http", entry))
    steps.sort(key=lambda s: s.t)
    for step in steps:
        counts: dict[int, int] = {}
        for t, index in received:
            if t < step.t:
                counts[index] = counts.get(index, 0) + 1
        step.received_before = counts
    # Sockets closed by the client: wait for nothing more than what had arrived when the close was sent.
    return steps, captured


async def replay_session(scenario: str, base_url: str, *, sync_timeout: float = 8.0) -> Outcome:
    """Replay ``scenario``'s client side against ``base_url``; prompt_ids are mapped captured -> replayed."""
    har = load_har(scenario)
    steps, captured = _steps(har)
    outcome = Outcome(captured_ws=captured)
    ids: dict[str, str] = {}
    sockets: dict[int, Any] = {}
    readers: dict[int, asyncio.Task[None]] = {}
    ws_base = base_url.replace("http://", "ws://")

    def remap(text: str) -> str:
        for old, new in ids.items():
            text = text.replace(old, new)
        return text

    async def read(index: int, ws: Any) -> None:
        try:
            async for message in ws:
                outcome.replayed_ws[index].append(message)
                outcome.replayed_at[index].append(asyncio.get_running_loop().time())
        except websockets.ConnectionClosed:
            pass

    async def wait_for(counts: dict[int, int]) -> None:
        deadline = asyncio.get_running_loop().time() + sync_timeout
        while any(len(outcome.replayed_ws.get(i, [])) < n for i, n in counts.items() if i in sockets):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.002)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for step in steps:
            await wait_for(step.received_before)
            if step.kind == "ws_open":
                url = urlsplit(step.entry["request"]["url"])
                outcome.replayed_ws[step.socket], outcome.replayed_at[step.socket] = [], []
                ws = await websockets.connect(f"{ws_base}{url.path}{'?' + url.query if url.query else ''}", max_size=None)
                sockets[step.socket] = ws
                readers[step.socket] = asyncio.create_task(read(step.socket, ws))
            elif step.kind == "ws_send":
                await sockets[step.socket].send(step.entry["data"])
            elif step.kind == "ws_close":
                await wait_for({step.socket: len(captured[step.socket])})
                await sockets[step.socket].close()
                await readers[step.socket]
            else:
                request = step.entry["request"]
                url = urlsplit(remap(request["url"]))
                post = request.get("postData") or {}
                body: bytes | None = None
                if post:
                    text = post.get("text", "")
                    body = base64.b64decode(text) if post.get("_encoding") == "base64" else remap(text).encode()
                headers = {h["name"]: h["value"] for h in request["headers"] if h["name"].lower() in ("content-type", "origin")}
                if "Origin" in headers:
                    # (a capture that left Host out sent its URL's, as every HTTP client does)
                    headers["Host"] = next((h["value"] for h in request["headers"] if h["name"].lower() == "host"), url.netloc)
                path = url.path + ("?" + url.query if url.query else "")
                outcome.sent.append((step.t, asyncio.get_running_loop().time()))
                response = await client.request(request["method"], path, content=body, headers=headers)
                captured_json = _json(step.entry["response"]["content"].get("text"))
                if "/history/" in path and captured_json and response.json() == {}:
                    # The captured client polled until the entry appeared (no_client_id): do the same.
                    deadline = asyncio.get_running_loop().time() + sync_timeout
                    while response.json() == {} and asyncio.get_running_loop().time() < deadline:
                        await asyncio.sleep(0.01)
                        response = await client.request(request["method"], path)
                replayed_json = _json(response.text) if response.content[:1] in (b"{", b"[") else None
                learn(captured_json, replayed_json, ids)
                outcome.http.append((f"{request['method']} {path}", step.entry, response))
        for index, ws in sockets.items():
            await ws.close()
            await readers[index]
    return outcome


def learn(captured: Any, replayed: Any, ids: dict[str, str]) -> None:
    """Map captured volatile values (prompt_ids, generated file names) to the replayed ones, position by position."""
    if isinstance(captured, dict) and isinstance(replayed, dict):
        for (ck, cv), (rk, rv) in zip(captured.items(), replayed.items()):
            learn(ck, rk, ids)
            learn(cv, rv, ids)
    elif isinstance(captured, list) and isinstance(replayed, list):
        for c, r in zip(captured, replayed):
            learn(c, r, ids)
    elif isinstance(captured, str) and isinstance(replayed, str) and captured != replayed:
        if UUID.fullmatch(captured) or FILENAME.match(captured):
            ids.setdefault(captured, replayed)


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def finished(http: httpx.Client, prompt_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The history entry of ``prompt_id`` once the job has finished; waits by the clock (the default timing is
    faithful: a job takes as long as the real server's did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = http.get(f"/history/{prompt_id}").json().get(prompt_id)
        if entry:
            return dict(entry)
        time.sleep(0.01)
    raise AssertionError(f"{prompt_id} never finished")
