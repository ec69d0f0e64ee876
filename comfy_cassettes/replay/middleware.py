"""The replay's ASGI middlewares: ComfyUI's Origin check, the request journal, and the HTTP fault rules."""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import parse_qsl, urlsplit

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from .config import ADMIN_PREFIX
from .engine import ReplayEngine


class OriginCheckMiddleware:
    """ComfyUI's origin_only_middleware: on a loopback Host, a request (or WebSocket upgrade) whose Origin
    names another host gets an empty 403 (snapshots capture); OPTIONS is answered empty."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if foreign_origin(headers.get("host"), headers.get("origin")):
                if scope["type"] == "http":
                    await Response(status_code=403)(scope, receive, send)
                else:
                    await WebSocket(scope, receive, send).send_denial_response(Response(status_code=403))
                return
            if scope["type"] == "http" and scope["method"] == "OPTIONS":
                await Response(status_code=200)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def foreign_origin(host: str | None, origin: str | None) -> bool:
    """True when ComfyUI would refuse: both headers present, Host on loopback, and the host names differ
    (ports compared only when both sides carry one)."""
    if not host or not origin:
        return False
    host_domain = host.lower()
    parsed = urlsplit(origin)
    origin_domain = parsed.netloc.lower()
    host_parts = urlsplit("//" + host_domain)
    if not _is_loopback(host_parts.hostname):
        return False
    try:
        origin_port, host_port = parsed.port, host_parts.port
    except ValueError:
        return False
    if origin_port is None:
        host_domain = host_parts.hostname or ""
    if host_port is None:
        origin_domain = parsed.hostname or ""
    return bool(host_domain and origin_domain and host_domain != origin_domain)


def _is_loopback(hostname: str | None) -> bool:
    # ComfyUI resolves the name; without DNS here, the loopback names and literal addresses decide.
    if not hostname:
        return False
    if hostname in ("localhost", "localhost.localdomain") or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


class JournalMiddleware:
    """Records every HTTP request (method, path, query, body, status) in the engine's journal."""

    def __init__(self, app: ASGIApp, engine: ReplayEngine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        status = 0

        async def receive_and_keep() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_note)
        except Exception:
            status = 500  # answered by the crash handler outside this middleware
            raise
        finally:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            client = scope.get("client") or ("", 0)
            self.engine.journal.add(
                scope["method"], scope["path"], query, b"".join(chunks), status,
                matched=str(scope.get(FAULT_SCOPE_KEY, "")), client=f"{client[0]}:{client[1]}",
            )


FAULT_SCOPE_KEY = "comfy_cassettes.fault"


class FaultMiddleware:
    """Applies the engine's HTTP fault rules (faults.py): delays, error statuses, dropped connections, and
    refuses everything while the server is "down". The admin API is never faulted."""

    def __init__(self, app: ASGIApp, engine: ReplayEngine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.engine.faults
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        if faults.is_down:
            scope[FAULT_SCOPE_KEY] = "fault: server down"
            await self._drop(scope, receive)
            return
        fault = faults.for_request(scope.get("method", "GET"), scope["path"]) if faults.rules else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        rule = fault.rule
        scope[FAULT_SCOPE_KEY] = f"fault {rule.id}: {rule.kind}" if rule is not None else f"fault: delayed {fault.delay:.3f}s"
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind == "drop":
            await self._drop(scope, receive)
        else:
            body, headers = rule.error_status_body()
            response = Response(body, rule.status, headers=headers)
            if scope["type"] == "http":
                await response(scope, receive, send)
            else:
                await WebSocket(scope, receive, send).send_denial_response(response)
                # uvicorn's websockets-sansio logs a bogus "returned without completing handshake" error if the
                # app returns before the refused connection is gone: wait for it.
                listener = self.engine.faults.listener
                for _ in range(200):
                    if listener is None or not listener.connected(scope.get("client")):
                        break
                    await asyncio.sleep(0.005)

    async def _drop(self, scope: Scope, receive: Receive) -> None:
        """Close the connection without answering. Without a server Listener (an in-process ASGI client) the
        client gets this exception instead."""
        listener = self.engine.faults.listener
        if listener is None:
            raise ConnectionResetError(f"comfy-cassettes: connection dropped by a fault rule ({scope['path']})")
        if not listener.drop(scope.get("client")):
            return  # already gone

        # Wait until the server has seen the connection go, so it does not try to answer it.
        async def gone() -> None:
            while (await receive())["type"] not in ("http.disconnect", "websocket.disconnect"):
                pass

        try:
            await asyncio.wait_for(gone(), 1.0)
        except asyncio.TimeoutError:
            pass
