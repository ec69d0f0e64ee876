"""The ASGI app: ComfyUI's routes (at ``/x`` and ``/api/x``) and ``/ws`` in front of a ReplayEngine."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from starlette.datastructures import State, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...comfy.nodes import NODE_REPLACEMENTS
from ...comfy.protocol import FEATURES
from ...comfy.routes import ROUTES, WEBSOCKET_PATH, aliases
from .admin import admin_app
from .assets import asset_routes
from ..config import ADMIN_PREFIX
from ..sim.engine import Reply, ReplayEngine
from .files import mask_writer, render_view_body, resolve_view, store_upload
from .frontend import frontend_routes
from . import jobs_api as jobs
from .middleware import ReplayMiddleware
from .routing import IndexedRouter
from .userdata import userdata_routes

Handler = Callable[[Request], Awaitable[Response]]


def create_app(engine: ReplayEngine) -> ASGIApp:
    """The ASGI app serving ``engine`` (its lifespan starts the engine's worker)."""
    index = engine.interactions

    def reply(r: Reply) -> Response:
        return Response(r.body, r.status, headers=r.headers)

    async def body_json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            return None

    async def post_prompt(request: Request) -> Response:
        return reply(engine.submit(await request.body(), request.headers))

    async def get_prompt(request: Request) -> Response:
        return reply(Reply.json({"exec_info": {"queue_remaining": engine.queue_remaining()}}))

    async def get_queue(request: Request) -> Response:
        return reply(Reply.json(engine.queue_view()))

    async def post_queue(request: Request) -> Response:
        try:
            engine.delete_from_queue(await body_json(request))
        except (TypeError, AttributeError):
            return reply(Reply.crash())  # ComfyUI's handler iterates and hashes what it is given: its own 500
        return Response(status_code=200)

    async def get_history(request: Request) -> Response:
        # ComfyUI int()s both without a check: a bad value is its 500.
        q = request.query_params
        try:
            max_items = int(q["max_items"]) if "max_items" in q else None
            offset = int(q["offset"]) if "offset" in q else -1
        except ValueError:
            return reply(Reply.crash())
        return reply(Reply.json_text(engine.history.view_json(max_items, offset)))

    async def get_history_item(request: Request) -> Response:
        return reply(Reply.json_text(engine.history.item_json(request.path_params["prompt_id"])))

    async def post_history(request: Request) -> Response:
        try:
            engine.delete_history(await body_json(request))
        except (TypeError, AttributeError):
            return reply(Reply.crash())  # as post_queue: ComfyUI's own 500 for a non-list or unhashable delete
        return Response(status_code=200)

    async def post_interrupt(request: Request) -> Response:
        engine.interrupt(await body_json(request))
        return Response(status_code=200)

    async def post_free(request: Request) -> Response:
        engine.free(await body_json(request))
        return Response(status_code=200)

    async def get_features(request: Request) -> Response:
        if not engine.catalogue.as_recorded("/features"):
            return reply(Reply.json(engine.features))
        return recorded_or(request, lambda: Reply.json(engine.features))

    async def get_system_stats(request: Request) -> Response:
        recorded_stats = engine.catalogue.recorded_json("/system_stats")
        if engine.catalogue.as_recorded("/system_stats") or not isinstance(recorded_stats, dict):
            return await recorded(request)
        return reply(Reply.json(engine.profile.stats(recorded_stats)))

    async def get_object_info(request: Request) -> Response:
        catalogue = engine.catalogue.object_info()
        if catalogue is None:
            return await recorded(request)
        return reply(Reply.json(engine.catalogue.live_object_info(catalogue)))

    async def get_object_info_class(request: Request) -> Response:
        catalogue = engine.catalogue.object_info()
        if catalogue is None:
            return await recorded(request)
        name = request.path_params["node_class"]
        return reply(Reply.json(engine.catalogue.live_object_info({name: catalogue[name]}) if name in catalogue else {}))

    async def get_models(request: Request) -> Response:
        return reply(Reply.json(engine.catalogue.model_folders()))

    async def get_models_folder(request: Request) -> Response:
        files = engine.catalogue.model_files(request.path_params["folder"])
        return reply(Reply.json(files)) if files is not None else Response(status_code=404)

    async def get_embeddings(request: Request) -> Response:
        return reply(Reply.json(engine.catalogue.embeddings()))

    async def get_jobs(request: Request) -> Response:
        try:
            return reply(Reply.json(jobs.list_jobs(engine, request.query_params)))
        except jobs.JobsError as error:
            return reply(Reply.json(error.body, 400))

    async def get_job(request: Request) -> Response:
        job = jobs.get_job(engine, request.path_params["job_id"])
        return reply(Reply.json(job) if job is not None else Reply.json({"error": "Job not found"}, 404))

    async def post_job_cancel(request: Request) -> Response:
        return reply(Reply.json({"cancelled": jobs.cancel(engine, request.path_params["job_id"])}))

    async def post_jobs_cancel(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return reply(Reply.json({"error": "Request body must be valid JSON"}, 400))
        try:
            return reply(Reply.json({"cancelled": jobs.cancel_batch(engine, body)}))
        except jobs.JobsError as error:
            return reply(Reply.json(error.body, 400))

    async def get_node_replacements(request: Request) -> Response:
        return reply(Reply.json(NODE_REPLACEMENTS))

    # app/subgraph_manager.py lists the blueprints folder of the ComfyUI checkout and custom_nodes/*/subgraphs; the
    # replay has neither, so it answers as a ComfyUI without them: no entries, and null for any id.
    async def get_global_subgraphs(request: Request) -> Response:
        return reply(Reply.json({}))

    async def get_global_subgraph(request: Request) -> Response:
        return reply(Reply.json(None))

    async def get_view(request: Request) -> Response:
        query = dict(request.query_params)
        result = resolve_view(engine.roots, query, virtual=engine.view_virtual)
        if result.status != 200:
            return Response(status_code=result.status)
        body, headers = render_view_body(result, query)
        headers.pop("Content-Length", None)
        if engine.profile.view_nosniff and "Accept-Ranges" in headers:  # the file itself, not a re-encoding
            headers = {"X-Content-Type-Options": "nosniff", **headers}
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
        if result.status == 500:
            return reply(Reply.crash())  # ComfyUI raised (an unknown type): aiohttp's crash body, like every 500
        if result.status != 200 or result.body is None:
            return Response(status_code=result.status)
        answer: dict[str, Any] = dict(result.body)
        if engine.assets.enabled:  # server.py image_upload registers the stored file (0.18+, assets on)
            root = {"output": engine.roots.output, "temp": engine.roots.temp}.get(answer["type"], engine.roots.input)
            stored = root / answer["subfolder"] / answer["name"]
            tags = [answer["type"] if answer["type"] in ("input", "output") else "input", "uploaded"]
            answer["asset"] = engine.assets.register(stored, name=answer["name"], kind=answer["type"], subfolder=answer["subfolder"],
                                                     tags=tags).upload_view()
        return reply(Reply.json(answer))

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
        engine.journal.add("GET", ws.url.path, ws.scope.get("query_string", b"").decode("latin-1"), b"", 101, matched="websocket",
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
        "get_system_stats": get_system_stats, "get_jobs": get_jobs, "get_job": get_job,
        "post_job_cancel": post_job_cancel, "post_jobs_cancel": post_jobs_cancel,
        "get_object_info": get_object_info, "get_object_info_class": get_object_info_class, "get_view": get_view,
        "get_models": get_models, "get_models_folder": get_models_folder, "get_embeddings": get_embeddings,
        "post_upload": post_upload, "get_node_replacements": get_node_replacements,
        "get_global_subgraphs": get_global_subgraphs, "get_global_subgraph": get_global_subgraph,
    }
    routes: list[BaseRoute] = []
    for route in ROUTES:
        if route.needs is not None and not getattr(engine.profile, route.needs):
            continue
        routes.extend(Route(path, handlers[route.name], methods=[route.method]) for path in aliases(route.path))
    routes.extend(WebSocketRoute(path, websocket) for path in aliases(WEBSOCKET_PATH))
    routes.append(Mount(ADMIN_PREFIX, app=admin_app(engine.config.admin_token)))
    if engine.profile.assets_api:
        routes.extend(asset_routes(engine.assets.enabled))
    routes.extend(userdata_routes(engine.user_folder, fallback=recorded, profile=engine.profile))
    routes.extend(frontend_routes(engine.config.front_end_root, index, fallback=recorded, folders=engine.catalogue,
                                  profile=engine.profile))  # ends with the static folders
    routes.append(Route("/{rest:path}", recorded, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    router = IndexedRouter(routes, state=State({"engine": engine}), lifespan=lifespan)
    app = ReplayMiddleware(router, engine, refuse_cross_site=engine.profile.refuses_cross_site)
    return app


