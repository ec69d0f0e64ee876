"""The ASGI app: ComfyUI's routes (at ``/x`` and ``/api/x``) and ``/ws`` in front of a ReplayEngine."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import traceback
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from .admin import admin_routes
from .config import ADMIN_PREFIX
from .engine import Reply, ReplayEngine
from .files import mask_writer, render_view_body, resolve_view, store_upload
from .interactions import InteractionIndex
from .protocol import CRASH_BODY, CRASH_HEADERS, FEATURES

Handler = Callable[[Request], Awaitable[Response]]


def create_app(engine: ReplayEngine) -> Starlette:
    """A Starlette app serving ``engine``; starting the app starts the engine's worker."""
    index = InteractionIndex(engine.cassettes)

    def reply(r: Reply) -> Response:
        return Response(r.body, r.status, headers=r.headers)

    async def body_json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    async def post_prompt(request: Request) -> Response:
        return reply(engine.submit(await request.body()))

    async def get_prompt(request: Request) -> Response:
        return reply(Reply.json({"exec_info": {"queue_remaining": engine.queue_remaining()}}))

    async def get_queue(request: Request) -> Response:
        return reply(Reply.json(engine.queue_view()))

    async def post_queue(request: Request) -> Response:
        engine.delete_from_queue(await body_json(request))
        return Response(status_code=200)

    async def get_history(request: Request) -> Response:
        # ComfyUI int()s both without a check: a bad value is its 500 (the crash handler's answer here).
        q = request.query_params
        max_items = int(q["max_items"]) if "max_items" in q else None
        offset = int(q["offset"]) if "offset" in q else -1
        return reply(Reply.json(engine.history_view(max_items, offset)))

    async def get_history_item(request: Request) -> Response:
        return reply(Reply.json(engine.history_item(request.path_params["prompt_id"])))

    async def post_history(request: Request) -> Response:
        engine.delete_history(await body_json(request))
        return Response(status_code=200)

    async def post_interrupt(request: Request) -> Response:
        engine.interrupt(await body_json(request))
        return Response(status_code=200)

    async def post_free(request: Request) -> Response:
        engine.free(await body_json(request))
        return Response(status_code=200)

    async def get_features(request: Request) -> Response:
        return recorded_or(request, lambda: Reply.json(FEATURES))

    async def get_object_info(request: Request) -> Response:
        catalogue = engine.object_info()
        if catalogue is None:
            return await recorded(request)
        return reply(Reply.json(engine.live_object_info(catalogue)))

    async def get_object_info_class(request: Request) -> Response:
        catalogue = engine.object_info()
        if catalogue is None:
            return await recorded(request)
        name = request.path_params["node_class"]
        return reply(Reply.json(engine.live_object_info({name: catalogue[name]}) if name in catalogue else {}))

    async def get_view(request: Request) -> Response:
        query = dict(request.query_params)
        result = resolve_view(engine.roots, query, virtual=engine.view_virtual)
        if result.status != 200:
            return Response(status_code=result.status)
        body, headers = render_view_body(result, query)
        headers.pop("Content-Length", None)
        return Response(body, 200, headers=headers)

    async def post_upload(request: Request) -> Response:
        form = await request.form(max_part_size=FEATURES["max_upload_size"])
        try:
            image = form.get("image")
            # aiohttp gives ComfyUI a plain string for a part without a filename: no file, like a missing field.
            filename = image.filename if isinstance(image, UploadFile) else None
            data = await image.read() if isinstance(image, UploadFile) else None
            result = store_upload(
                engine.roots,
                filename=filename,
                data=data,
                subfolder=str(form.get("subfolder") or ""),
                type=str(form["type"]) if "type" in form else None,
                overwrite=str(form.get("overwrite")) if "overwrite" in form else None,
                write=mask_writer(engine.roots, str(form.get("original_ref") or "")) if request.url.path.endswith("/mask") else None,
            )
        finally:
            await form.close()
        if result.status != 200 or result.body is None:
            return Response(status_code=result.status)
        return reply(Reply.json(result.body))

    def recorded_or(request: Request, fallback: Callable[[], Reply]) -> Response:
        rec = index.find(request.method, request.url.path, list(request.query_params.multi_items()))
        if rec is not None:
            answer = index.answer(rec)
            return Response(answer.body, answer.status, headers=answer.headers)
        return reply(fallback())

    async def recorded(request: Request) -> Response:
        """Any other route: a recorded interaction, or a 404 that names the closest recordings."""
        query = list(request.query_params.multi_items())
        rec = index.find(request.method, request.url.path, query)
        if rec is not None:
            answer = index.answer(rec)
            return Response(answer.body, answer.status, headers=answer.headers)
        closest = index.closest(request.method, request.url.path, query)
        body = {
            "error": "no recorded interaction matches this request",
            "request": f"{request.method} {request.url.path}{'?' + request.url.query if request.url.query else ''}",
            "closest": closest,
            "hint": "record it with `comfy-cassettes record`, or add a cassette that has it",
        }
        return JSONResponse(body, 404, headers={"X-Comfy-Cassettes": "unmatched"})

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        # The upgrade is a GET answered with 101: journaled like one, so tests can assert a client connected.
        client_address = ws.scope.get("client") or ("", 0)
        engine.journal.add("GET", ws.url.path, dict(ws.query_params), b"", 101, matched="websocket",
                           client=f"{client_address[0]}:{client_address[1]}")

        async def send(payload: str | bytes) -> None:
            if isinstance(payload, bytes):
                await ws.send_bytes(payload)
            else:
                await ws.send_text(payload)

        async def close(code: int | None) -> None:
            # No code: cut the TCP connection like a network failure (the client sees 1006); else a close frame.
            listener = engine.faults.listener
            if code is None and listener is not None and listener.drop(ws.scope.get("client")):
                return
            await ws.close(code or 1011)

        client = None
        try:
            client = await engine.connect(ws.query_params.get("clientId"), send, close)
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    await engine.on_message(client, message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            if client is not None:
                engine.disconnect(client)

    routes: list[BaseRoute] = []
    comfy: list[tuple[str, Handler, list[str]]] = [
        ("/prompt", post_prompt, ["POST"]),
        ("/prompt", get_prompt, ["GET"]),
        ("/queue", get_queue, ["GET"]),
        ("/queue", post_queue, ["POST"]),
        ("/history", get_history, ["GET"]),
        ("/history", post_history, ["POST"]),
        ("/history/{prompt_id:path}", get_history_item, ["GET"]),
        ("/interrupt", post_interrupt, ["POST"]),
        ("/free", post_free, ["POST"]),
        ("/features", get_features, ["GET"]),
        ("/object_info", get_object_info, ["GET"]),
        ("/object_info/{node_class:path}", get_object_info_class, ["GET"]),
        ("/view", get_view, ["GET"]),
        ("/upload/image", post_upload, ["POST"]),
        ("/upload/mask", post_upload, ["POST"]),
    ]
    for prefix in ("", "/api"):
        for path, handler, methods in comfy:
            routes.append(Route(prefix + path, handler, methods=methods))
        routes.append(WebSocketRoute(prefix + "/ws", websocket))
    routes.extend(admin_routes(engine, ADMIN_PREFIX))
    routes.append(Route("/{rest:path}", recorded, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    async def crashed(request: Request, exc: Exception) -> Response:
        """What aiohttp answers when a ComfyUI handler raises; the traceback goes to the journal for the test."""
        engine.journal.error(f"{request.method} {request.url.path} raised {exc!r}\n{''.join(traceback.format_exception(exc))}")
        return Response(CRASH_BODY, 500, headers=CRASH_HEADERS)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: crashed})
    app.add_middleware(FaultMiddleware, engine=engine)
    app.add_middleware(JournalMiddleware, engine=engine)
    app.add_middleware(OriginCheckMiddleware)
    return app


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
            from urllib.parse import parse_qsl

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
