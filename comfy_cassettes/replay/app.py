"""The ASGI app: ComfyUI's routes (at ``/x`` and ``/api/x``) and ``/ws`` in front of a ReplayEngine."""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..comfy.protocol import CRASH_BODY, CRASH_HEADERS, FEATURES
from ..comfy.routes import ROUTES, WEBSOCKET_PATH, aliases
from .admin import admin_routes
from .config import ADMIN_PREFIX
from .engine import Reply, ReplayEngine
from .files import mask_writer, render_view_body, resolve_view, store_upload
from .interactions import InteractionIndex
from .middleware import FaultMiddleware, JournalMiddleware, OriginCheckMiddleware

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
        # ComfyUI int()s both without a check: a bad value is its 500.
        q = request.query_params
        try:
            max_items = int(q["max_items"]) if "max_items" in q else None
            offset = int(q["offset"]) if "offset" in q else -1
        except ValueError:
            return reply(Reply.crash())
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
        engine.journal.miss({"request": body["request"], "closest": closest})
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

    handlers: dict[str, Handler] = {
        "post_prompt": post_prompt, "get_prompt": get_prompt, "get_queue": get_queue, "post_queue": post_queue,
        "get_history": get_history, "post_history": post_history, "get_history_item": get_history_item,
        "post_interrupt": post_interrupt, "post_free": post_free, "get_features": get_features,
        "get_object_info": get_object_info, "get_object_info_class": get_object_info_class, "get_view": get_view,
        "post_upload": post_upload,
    }
    routes: list[BaseRoute] = []
    for route in ROUTES:
        routes.extend(Route(path, handlers[route.name], methods=[route.method]) for path in aliases(route.path))
    routes.extend(WebSocketRoute(path, websocket) for path in aliases(WEBSOCKET_PATH))
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
        """What aiohttp answers when a handler raises. Inputs ComfyUI itself crashes on are answered as such by the
        handlers; reaching here is a replay bug, so the traceback goes to the journal, where the test hears of it."""
        engine.journal.error(f"{request.method} {request.url.path} raised {exc!r}\n{''.join(traceback.format_exception(exc))}")
        return Response(CRASH_BODY, 500, headers=CRASH_HEADERS)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: crashed})
    app.add_middleware(FaultMiddleware, engine=engine)
    app.add_middleware(JournalMiddleware, engine=engine)
    app.add_middleware(OriginCheckMiddleware)
    return app


