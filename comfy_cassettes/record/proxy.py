"""A recording reverse proxy: any client (or the ComfyUI page in a browser) talks to ComfyUI through it.

HTTP goes upstream with httpx, ``/ws`` with the ``websockets`` client; frames are forwarded both ways, text and
binary, and everything lands in one RawSession. Nothing is written until a save (``POST
/__cassettes__/record/save``, Ctrl-C or SIGTERM), and a save replaces the cassette atomically, so a killed
proxy leaves the previous file exactly as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..errors import ConfigError
from ..contract import ADMIN_PREFIX
from .modes import RecordMode, read_document
from .scrub import Scrubber
from .session import HttpExchange, RawSession, WsConnection, WsFrame
from .writer import write_session

SAVE_PATH = f"{ADMIN_PREFIX}/record/save"
STATE_PATH = f"{ADMIN_PREFIX}/record/state"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
               "transfer-encoding", "upgrade", "content-length", "content-encoding"}
# The ComfyUI page's own files: megabytes of JS and fonts that say nothing about the API.
_STATIC_TYPES = ("text/html", "text/css", "javascript", "font/", "image/svg", "application/wasm", "text/markdown")
_STATIC_SUFFIXES = (".js", ".mjs", ".css", ".map", ".woff", ".woff2", ".ttf", ".svg", ".ico", ".html", ".wasm")


@dataclass
class SaveResult:
    """What one save wrote."""

    path: Path | None
    jobs: int = 0
    interactions: int = 0
    reason: str = ""
    error: str = ""  # the cassette could not be written: ``path`` is where the session went instead, if anywhere


class RecordingProxy:
    """The proxy as an ASGI app; ``save()`` writes what it has seen so far.

    Usage::

        proxy = RecordingProxy("http://127.0.0.1:8188", Path("cassettes/session.yaml"))
        uvicorn.run(proxy, port=8189)   # then proxy.save_now()
    """

    def __init__(
        self, target: str, output: Path, *, mode: RecordMode | str = RecordMode.ONCE, scrubber: Scrubber | None = None,
        record_static: bool = False,
    ) -> None:
        parts = urlsplit(target if "://" in target else f"http://{target}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--target must be an http(s) URL such as http://127.0.0.1:8188, got {target!r}")
        self.target = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.ws_target = "ws" + self.target[4:]
        self.output = Path(output)
        self.mode = RecordMode.parse(mode)
        if self.mode is RecordMode.NONE:
            raise ConfigError("--record-mode none never records; replay a cassette with `comfy-cassettes serve` instead")
        self.existing = read_document(self.output)
        if self.existing is not None and self.mode is RecordMode.ONCE:
            raise ConfigError(
                f"{self.output} already exists; --record-mode once never adds to a cassette: use new_episodes or all "
                "to add this session to it, or pick another -o"
            )
        self.scrubber = scrubber or Scrubber()
        self.record_static = record_static
        self.session = RawSession(source=self.target)
        self.comfyui_version: str | None = None
        self.saved = 0
        self._http: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ saving

    def snapshot(self) -> RawSession:
        """A copy of the session so far (the live lists keep growing while a save runs)."""
        sockets = [WsConnection(t=s.t, url=s.url, frames=list(s.frames)) for s in list(self.session.sockets)]
        return RawSession(exchanges=list(self.session.exchanges), sockets=sockets, source=self.session.source)

    def save_now(self, output: Path | None = None) -> SaveResult:
        """Write the cassette (merged per the record mode with what the file held when the proxy started), to
        ``output`` instead of the proxy's own when given."""
        with self._lock:
            session = self.snapshot()
            if not session.exchanges and not session.sockets:
                return SaveResult(None, reason="nothing recorded yet")
            path, document = write_session(
                session, output or self.output, mode=self.mode, existing=self.existing, scrubber=self.scrubber, via="proxy",
                overwrite=output is None and (self.existing is not None or self.saved > 0), comfyui_version=self.comfyui_version,
            )
            self.saved += 1
            return SaveResult(path, len(document["comfy"]["jobs"]), len(document["interactions"]))

    def save_final(self) -> SaveResult:
        """The save at exit. When the cassette cannot be written (a full disk), the session goes to a new folder
        under the temporary folder, else the home folder, and ``error`` says why; the old cassette stays whole."""
        try:
            return self.save_now()
        except OSError as exc:
            failure = f"could not write {self.output}: {exc.strerror or exc}"
        for base in (Path(tempfile.gettempdir()), Path.home()):
            folder = base / f"comfy-cassettes-rescued-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            try:
                result = self.save_now(folder / self.output.name)
            except OSError as exc:
                failure += f"; nor under {base}: {exc.strerror or exc}"
                continue
            return SaveResult(result.path, result.jobs, result.interactions, error=failure)
        return SaveResult(None, error=failure)

    def state(self) -> dict[str, Any]:
        frames = [f for s in self.session.sockets for f in s.frames]
        return {
            "target": self.target, "output": str(self.output), "mode": self.mode.value, "saves": self.saved,
            "exchanges": len(self.session.exchanges), "sockets": len(self.session.sockets),
            "frames": {
                "sent_text": sum(1 for f in frames if f.sent and isinstance(f.data, str)),
                "sent_binary": sum(1 for f in frames if f.sent and isinstance(f.data, bytes)),
                "received_text": sum(1 for f in frames if not f.sent and isinstance(f.data, str)),
                "received_binary": sum(1 for f in frames if not f.sent and isinstance(f.data, bytes)),
            },
        }

    # ------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http_request(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._http = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), trust_env=False)
                try:
                    stats = (await self._http.get(self.target + "/system_stats")).json()
                    version = stats["system"].get("comfyui_version")
                    self.comfyui_version = None if version is None else str(version)
                except Exception:  # noqa: BLE001 - the version is a nicety; ComfyUI may start later
                    self.comfyui_version = None
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._http is not None:
                    await self._http.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path.startswith(f"{ADMIN_PREFIX}/record/"):
            await self._admin(scope, send)
            return
        target = _path_and_query(scope)
        url = self.target + target
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        # Host is kept as the client sent it: ComfyUI answers 403 when Origin and Host disagree.
        forward = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP and k.lower() != "accept-encoding"]
        assert self._http is not None
        started = time.time()
        try:
            response = await self._http.send(self._http.build_request(scope["method"], url, headers=forward, content=body))
        except httpx.HTTPError as exc:
            text = f"comfy-cassettes proxy: upstream {self.target} did not answer: {exc!r}".encode()
            await _respond(send, 502, [(b"content-type", b"text/plain; charset=utf-8")], text)
            return
        duration = time.time() - started
        answer_headers = _as_sent(response.headers.raw, len(response.content))
        if self.record_static or not _is_static(path, response.headers.get("content-type", "")):
            # The URL the client asked for: a page of the proxy names it as its Origin, which a replay must take
            # for its own, as it does for a browser's HAR (ComfyUI itself saw Host and Origin both the proxy's).
            self.session.exchanges.append(HttpExchange(
                t=started, method=scope["method"], url=_client_base(scope) + target, request_headers=headers,
                request_body=body, status=response.status_code, reason=response.reason_phrase,
                response_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer_headers],
                response_body=response.content, duration=duration,
            ))
        await _respond(send, response.status_code, answer_headers, response.content, length_given=True)

    async def _admin(self, scope: Scope, send: Send) -> None:
        if scope["path"] == SAVE_PATH and scope["method"] == "POST":
            try:
                result = await asyncio.to_thread(self.save_now)
            except Exception as exc:  # noqa: BLE001 - report any save failure to the caller, keep proxying
                await _json(send, 500, {"saved": False, "error": str(exc)})
                return
            await _json(send, 200, {"saved": result.path is not None, "path": str(result.path) if result.path else None,
                                    "jobs": result.jobs, "interactions": result.interactions, "reason": result.reason})
        elif scope["path"] == STATE_PATH and scope["method"] == "GET":
            await _json(send, 200, self.state())
        else:
            await _json(send, 404, {"error": f"unknown recorder route {scope['method']} {scope['path']}",
                                    "routes": [f"POST {SAVE_PATH}", f"GET {STATE_PATH}"]})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        path = _path_and_query(scope)
        try:
            upstream = await connect(self.ws_target + path, max_size=None, compression=None, proxy=None, open_timeout=10,
                                     subprotocols=scope.get("subprotocols") or None, ping_interval=None)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong upstream, the client gets a clean refusal
            print(f"comfy-cassettes proxy: cannot open upstream WebSocket {self.ws_target + path}: {exc!r}", file=sys.stderr)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        record = WsConnection(t=time.time(), url=_client_base(scope) + path)
        self.session.sockets.append(record)
        to_upstream = asyncio.create_task(self._client_to_upstream(receive, upstream, record))
        to_client = asyncio.create_task(self._upstream_to_client(upstream, send, record))
        done, pending = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
        await upstream.close()
        for task in pending:
            try:
                await asyncio.wait_for(task, 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the other direction is gone anyway
                task.cancel()

    async def _client_to_upstream(self, receive: Receive, upstream: ClientConnection, record: WsConnection) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data: str | bytes | None = message.get("text")
            if data is None:
                data = message.get("bytes")
            if data is None:
                continue
            record.frames.append(WsFrame(time.time(), True, data))
            try:
                await upstream.send(data)
            except ConnectionClosed:
                return

    async def _upstream_to_client(self, upstream: ClientConnection, send: Send, record: WsConnection) -> None:
        try:
            async for data in upstream:
                record.frames.append(WsFrame(time.time(), False, data))
                await send({"type": "websocket.send", "text": data} if isinstance(data, str) else {"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        try:
            await send({"type": "websocket.close", "code": 1000})
        except Exception:  # noqa: BLE001 - the client may already be gone
            pass


def _is_static(path: str, content_type: str) -> bool:
    return any(t in content_type for t in _STATIC_TYPES) or path.lower().endswith(_STATIC_SUFFIXES)


def _path_and_query(scope: Scope) -> str:
    """The request's path and query as the client sent them (not re-encoded)."""
    query: str = scope.get("query_string", b"").decode("latin-1")
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    return path.decode("latin-1") + ("?" + query if query else "")


def _client_base(scope: Scope) -> str:
    """The address the client used, ``http://host:port`` (``ws://`` for a socket): its Host header, else the
    proxy's own socket."""
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
    if not host:
        server = scope.get("server") or ("127.0.0.1", 0)
        host = f"[{server[0]}]:{server[1]}" if ":" in server[0] else f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def _as_sent(raw: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """The upstream's answer headers with their names and order as sent, hop-by-hop ones left out; Content-Length
    stays where it was, giving the length of the (decoded) body, or comes last when the upstream sent none."""
    kept: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        lower = name.lower().decode("latin-1")
        if lower == "content-length":
            kept.append((name, str(length).encode()))
        elif lower not in _HOP_BY_HOP:
            kept.append((name, value))
    if not any(name.lower() == b"content-length" for name, _ in kept):
        kept.append((b"Content-Length", str(length).encode()))
    return kept


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, length_given: bool = False) -> None:
    given = headers if length_given else headers + [(b"content-length", str(len(body)).encode())]
    start: Message = {"type": "http.response.start", "status": status, "headers": given}
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, value: Any) -> None:
    await _respond(send, status, [(b"content-type", b"application/json")], json.dumps(value).encode())


class _SavingServer(uvicorn.Server):
    """uvicorn that returns after Ctrl-C / SIGTERM instead of re-raising the signal, so the final save runs."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_started = on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.on_started is not None and self.started:
            self.on_started()


def run_proxy(
    proxy: RecordingProxy, *, host: str = "127.0.0.1", port: int = 8189, log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
) -> SaveResult:
    """Serve ``proxy`` until Ctrl-C or SIGTERM, then save; returns what the final save wrote."""
    from ..listening import bind_socket

    sock = bind_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"
    # h11, not httptools: uvicorn's httptools protocol lowercases every header name it sends, h11 keeps them.
    config = uvicorn.Config(proxy, log_level=log_level, lifespan="on", server_header=False, date_header=False, http="h11",
                            ws="websockets-sansio", ws_max_size=64 * 1024 * 1024, ws_ping_interval=None,
                            timeout_graceful_shutdown=3)
    server = _SavingServer(config, (lambda: on_ready(url)) if on_ready is not None else None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return proxy.save_final()
