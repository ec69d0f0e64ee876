"""What happens to every request before its route: ComfyUI's Origin check, the HTTP fault rules, the request
journal, and aiohttp's answer when a handler crashes. One ASGI layer does all four: a layer per concern cost
more per request than the hot handlers themselves."""

from __future__ import annotations

import asyncio
import traceback
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from ...comfy.protocol import CRASH_BODY, CRASH_HEADERS
from ..config import ADMIN_PREFIX, is_loopback
from ..sim.engine import ReplayEngine
from .answers import Prepared
from .limits import MAX_BODY, BodyTooLarge, too_large
from .routing import IndexedRouter


def foreign_origin(host: str | None, origin: str | None) -> bool:
    """True when ComfyUI would refuse: both headers present, Host on loopback, and the host names differ
    (ports compared only when both sides carry one)."""
    if not host or not origin or not is_loopback(urlsplit("//" + host.lower()).hostname):
        return False
    return _differ(host, origin)


def _differ(host: str, origin: str) -> bool:
    """Whether ``origin`` names another server than ``host`` (ports compared only when both carry one)."""
    host_domain = host.lower()
    parsed = urlsplit(origin)
    origin_domain = parsed.netloc.lower()
    host_parts = urlsplit("//" + host_domain)
    try:
        origin_port, host_port = parsed.port, host_parts.port
    except ValueError:
        return False
    if origin_port is None:
        host_domain = host_parts.hostname or ""
    if host_port is None:
        origin_domain = parsed.hostname or ""
    return bool(host_domain and origin_domain and host_domain != origin_domain)


FAULT_SCOPE_KEY = "comfy_cassettes.fault"
_NO_CLIENT = ("", 0)  # the journal's client for a scope without one (":0")


class ReplayMiddleware:
    """In front of the routes: ComfyUI's origin_only_middleware (on a loopback Host, another Origin gets an empty
    403, snapshots capture; with ``refuse_cross_site``, ComfyUI 0.19+, so does ``Sec-Fetch-Site: cross-site``;
    OPTIONS is answered empty), where the address the cassettes were recorded at (``recorded_hosts``) is this
    server's too: the replay stands in for that server, on another port, for clients that name it as their
    origin (a page of the recorded server, more_sessions_0.3/v064_gates); then for everything but the admin API the fault rules
    (faults.py: delays, error statuses, dropped connections, "down") and the journal entry of each HTTP request
    (method, path, query, body, status). A handler that raises is answered like aiohttp answers a crash, and its
    traceback goes to the journal, where the test hears of it."""

    def __init__(self, app: ASGIApp, engine: ReplayEngine, *, refuse_cross_site: bool = False,
                 recorded_hosts: frozenset[str] = frozenset()) -> None:
        self.app = app
        # The router whose plain handlers the middleware awaits itself (see _route).
        self.router = app if isinstance(app, IndexedRouter) else None
        self.engine = engine
        self.refuse_cross_site = refuse_cross_site
        self.recorded_hosts = recorded_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            scope["app"] = self.app  # Starlette's routes raise HTTPException (a 405) when they run inside an app
            host, origin, fetch_site, length = _request_headers(scope)
            if (origin is not None or fetch_site is not None) and self._refused(host, origin, fetch_site):
                await Response(status_code=403)(scope, receive, send)
            elif scope["method"] == "OPTIONS":
                await Response(status_code=200)(scope, receive, send)
            elif length is not None and length > MAX_BODY:
                await too_large(length)(scope, receive, send)
            elif scope["path"].startswith(ADMIN_PREFIX):
                await self._admin(scope, _Exchange(receive, send).receive, send, host, origin)
            else:
                await self._journaled(scope, receive, send)
            return
        if kind != "websocket":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        host, origin, fetch_site, _ = _request_headers(scope)
        if self._refused(host, origin, fetch_site):
            await WebSocket(scope, receive, send).send_denial_response(Response(status_code=403))
        elif scope["path"].startswith(ADMIN_PREFIX):
            await self._admin(scope, receive, send, host, origin)
        else:
            await self._faulted(scope, receive, send)

    async def _admin(self, scope: Scope, receive: Receive, send: Send, host: str | None, origin: str | None) -> None:
        refusal = self._admin_refusal(host, origin)
        if refusal is not None:
            await JSONResponse({"error": refusal}, 403)(scope, receive, send)
        else:
            await self._answer(scope, receive, send)

    def _admin_refusal(self, host: str | None, origin: str | None) -> str | None:
        """Without a token the admin API is open to this machine: a request must name it (Host) and, from a
        browser, come from a page of it (Origin). A DNS-rebinding page sends its own name as Host; a sandboxed
        page or file sends ``Origin: null``. Clients in any language send a loopback Host and no Origin."""
        if self.engine.config.admin_token:
            return None
        if host is not None and not is_loopback(urlsplit("//" + host).hostname):
            return f"the admin API answers requests to this machine only (Host {host!r} is not a loopback name or address)"
        if origin is not None and not is_loopback(urlsplit(origin).hostname):
            return f"the admin API answers pages of this machine only (Origin {origin!r} is not a loopback address)"
        return None

    def _refused(self, host: str | None, origin: str | None, fetch_site: str | None) -> bool:
        if self.refuse_cross_site and fetch_site == "cross-site":
            return True
        return foreign_origin(host, origin) and all(_differ(recorded, str(origin)) for recorded in self.recorded_hosts)

    async def _journaled(self, scope: Scope, receive: Receive, send: Send) -> None:
        journal = self.engine.journal
        receipt = journal.receive()  # listed in the order received, whenever it is answered
        exchange = _Exchange(receive, send)
        faults = self.engine.faults
        try:
            if faults.rules or (faults.down_until and faults.is_down):
                await self._faulted(scope, exchange.receive, exchange.send)
            else:
                await self._answer(scope, exchange.receive, exchange.send, exchange)
        finally:
            if exchange.status >= 400:  # an error answer: its body tells a test why
                journal.answer(receipt, exchange.answer)
            journal.add(
                scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"), b"".join(exchange.chunks),
                exchange.status, matched=scope.get(FAULT_SCOPE_KEY, ""), client=scope.get("client") or _NO_CLIENT,
                receipt=receipt,
            )

    async def _faulted(self, scope: Scope, receive: Receive, send: Send) -> None:
        faults = self.engine.faults
        if faults.is_down:
            scope[FAULT_SCOPE_KEY] = "fault: server down"
            await self._drop(scope, receive)
            return
        fault = faults.for_request(scope.get("method", "GET"), scope["path"]) if faults.rules else None
        if fault is None:
            await self._answer(scope, receive, send)
            return
        if fault.delay > 0:
            await faults.wait(fault.delay)  # a reset ends the wait: the request is answered before the state goes
        rule = fault.rule
        scope[FAULT_SCOPE_KEY] = f"fault {rule.id}: {rule.kind}" if rule is not None else f"fault: delayed {fault.delay:.3f}s"
        if rule is None:
            await self._answer(scope, receive, send)
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
                listener = faults.listener
                for _ in range(200):
                    if listener is None or not listener.connected(scope.get("client")):
                        break
                    await asyncio.sleep(0.005)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, exchange: _Exchange | None = None) -> None:
        """The route's answer; an exception becomes Starlette's answer to an HTTPException or aiohttp's crash.
        ``exchange``: the request's, when ``send`` is its ``send`` (it knows whether the answer has started).

        An HTTP request to a plain handler is dispatched here, and its answer, when Response's own ``__call__`` would
        only send its two messages, goes to the request's ``send`` directly: the layers in between (the router's
        call, the response's, the exchange's send) cost as much as the hot handlers themselves."""
        if exchange is None:
            exchange = _Exchange(receive, send)
            send = exchange.send
        router = self.router
        try:
            if router is None or scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            route, handler = router.enter(scope)
            if handler is None:
                await router.follow(route, scope, receive, send)
                return
            response = await handler(Request(scope, receive, send))
            prepared = response if type(response) is Prepared else None
            if prepared is None and (type(response) is not Response or response.background is not None):
                await response(scope, receive, send)
                return
            status = exchange.status = response.status_code
            exchange.started = True
            if status >= 400:
                exchange.answer = [bytes(response.body)]  # what exchange.send keeps of an error answer
            try:
                await exchange.raw_send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
                await exchange.raw_send({"type": "http.response.body", "body": response.body})
            finally:
                if prepared is not None:
                    prepared.gone()
        except HTTPException as exc:
            if exchange.started or scope["type"] != "http":
                raise
            await PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)(scope, receive, send)
        except BodyTooLarge as exc:
            if exchange.started:
                raise
            await too_large(exc.size)(scope, receive, send)
        except Exception as exc:
            # Inputs ComfyUI itself crashes on are answered as such by the handlers; reaching here is a replay bug.
            self.engine.journal.error(f"{scope.get('method', 'WEBSOCKET')} {scope['path']} raised {exc!r}\n"
                                      f"{''.join(traceback.format_exception(exc))}")
            if exchange.started or scope["type"] != "http":
                raise
            await Response(CRASH_BODY, 500, headers=CRASH_HEADERS)(scope, receive, send)

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


class _Exchange:
    """One request's messages on their way through: the body as received (kept for the journal; BodyTooLarge once
    it passes MAX_BODY, for a body sent without Content-Length), whether, and with what status, it was answered, and
    the body of an error answer (status 400 and up: the journal keeps why a request was refused)."""

    __slots__ = ("_receive", "raw_send", "chunks", "size", "status", "started", "answer")
    answer: list[bytes]

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self.raw_send = send  # the request's own: for a caller that records the status itself
        self.chunks: list[bytes] = []
        self.size = 0
        self.status = 0
        self.started = False
        # ``answer``, an error answer's body (its chunks), is set only once the status says error: nothing else pays.

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > MAX_BODY:
                raise BodyTooLarge(self.size)
            self.chunks.append(chunk)
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = status = int(message["status"])
            self.started = True
            if status >= 400:
                self.answer = []
        elif kind == "websocket.accept":
            self.started = True
        elif self.status >= 400 and kind == "http.response.body":
            self.answer.append(message.get("body", b""))
        await self.raw_send(message)


def _request_headers(scope: Scope) -> tuple[str | None, str | None, str | None, int | None]:
    """Host, Origin and Sec-Fetch-Site (None when absent; the last one wins, as for a single-valued header) and the
    Content-Length (the first; None when absent or not a number) of a request's scope, in one pass."""
    host = origin = fetch_site = None
    length: int | None = None
    seen_length = False
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"origin":
            origin = value.decode("latin-1")
        elif name == b"sec-fetch-site":
            fetch_site = value.decode("latin-1")
        elif name == b"content-length" and not seen_length:
            seen_length = True
            try:
                length = int(value)
            except ValueError:
                length = None
    return host, origin, fetch_site, length
