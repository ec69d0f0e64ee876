"""The ASGI app: ComfyUI's routes (at ``/x`` and ``/api/x``), ``/ws``, the web page's routes and the mounted admin
API, in front of a ReplayEngine that every handler reaches through ``request.app.state``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from urllib.parse import urlsplit
from typing import Any, AsyncIterator

from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ...comfy.routes import ROUTES, WEBSOCKET_PATH, aliases
from ..config import ADMIN_PREFIX
from ..sim.engine import ReplayEngine
from . import media, prompts, system
from .answers import Handler, recorded
from .assets import asset_routes
from .file_bodies import FileBodies
from .frontend import WebRoots
from .middleware import ReplayMiddleware
from .page import page_routes
from .routing import AppState, IndexedRouter
from .userdata import userdata_routes
from .websocket import websocket

HANDLERS: dict[str, Handler] = {**prompts.HANDLERS, **system.HANDLERS, **media.HANDLERS}


class AdminOnFirstUse:
    """The admin API, built on its first request: its strict bodies are pydantic models, whose import and build
    were a sixth of `serve`'s start-up, and no ComfyUI route needs them."""

    def __init__(self, token: str | None) -> None:
        self._token = token
        self._app: Router | None = None

    def built(self) -> Router:
        if self._app is None:
            from .admin import admin_app

            self._app = admin_app(self._token)
        return self._app

    @property
    def routes(self) -> list[BaseRoute]:
        """The admin routes (what a Mount lists), built if no request has built them yet."""
        return self.built().routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.built()(scope, receive, send)


def create_app(engine: ReplayEngine) -> ASGIApp:
    """The ASGI app serving ``engine`` (its lifespan starts the engine's worker)."""
    routes: list[BaseRoute] = []
    for route in ROUTES:
        if route.needs is not None and not getattr(engine.profile, route.needs):
            continue
        routes.extend(Route(path, HANDLERS[route.name], methods=[route.method]) for path in aliases(route.path))
    routes.extend(WebSocketRoute(path, websocket) for path in aliases(WEBSOCKET_PATH))
    routes.append(Mount(ADMIN_PREFIX, app=AdminOnFirstUse(engine.config.admin_token)))
    if engine.profile.assets_api:
        routes.extend(asset_routes(engine.assets.enabled))
    routes.extend(userdata_routes(engine.profile))
    routes.extend(page_routes(engine.profile))  # ends with the static folders
    routes.append(Route("/{rest:path}", recorded, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    bodies = FileBodies()
    engine.files.written.append(bodies.wrote)  # a job's files are served from the bytes written, not read back
    state = AppState({"engine": engine, "web_roots": WebRoots.for_engine(engine), "file_bodies": bodies})
    router = IndexedRouter(routes, state=state, lifespan=lifespan)
    recorded_hosts = frozenset(urlsplit(i.uri).netloc.lower() for c in engine.cassettes for i in c.interactions)
    return ReplayMiddleware(router, engine, refuse_cross_site=engine.profile.refuses_cross_site, recorded_hosts=recorded_hosts)
