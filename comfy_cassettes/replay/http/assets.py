"""ComfyUI 0.38's assets API: off, every route answers 503 like a server started without ``--enable-assets``;
on (``serve --assets``), uploads and outputs become assets a client can list, read and download.

Shapes from app/assets/api/routes.py and schemas_out.py (ComfyUI master 783545f6 and the newest stored
versions); the parts a current client needs are simulated (upload → ``asset``, output ``id``/``preview_id``,
``GET /api/assets``, ``/api/assets/{id}``, ``/api/assets/{id}/content``, ``HEAD /api/assets/hash/{hash}``,
``DELETE``); the rest answer 501 ``BACKEND_UNSUPPORTED``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...comfy.routes import ASSET_ROUTES
from ..sim.asset_store import Asset, Assets
from .answers import query_of

DISABLED = {"error": {"code": "SERVICE_DISABLED", "message": "Assets system is disabled. Start the server with --enable-assets to use this feature.", "details": {}}}


def _error(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status)


def _store(request: Request) -> Assets:
    store: Assets = request.app.state.engine.assets
    return store


def _not_found(request: Request) -> JSONResponse:
    asset_id = request.path_params["id"]
    return _error(404, "ASSET_NOT_FOUND", f"Asset {asset_id} not found", id=asset_id)


async def _disabled(request: Request) -> Response:
    return JSONResponse(DISABLED, 503)


async def _unsupported(request: Request) -> Response:
    return _error(501, "BACKEND_UNSUPPORTED", "comfy-cassettes does not simulate this assets route")


async def _list(request: Request) -> Response:
    assets = [a.as_dict() for a in _store(request).listed()]
    return JSONResponse({"assets": assets, "total": len(assets), "has_more": False})


async def _get(request: Request) -> Response:
    found = _store(request).find(request.path_params["id"])
    return _not_found(request) if found is None else JSONResponse(found.as_dict())


async def _content(request: Request) -> Response:
    found = _store(request).find(request.path_params["id"])
    if found is None:
        return _not_found(request)
    disposition = query_of(request).get("disposition", "attachment")
    headers = {"Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(found.name)}", "X-Content-Type-Options": "nosniff"}
    return FileResponse(found.path, media_type=found.mime_type, headers=headers)


async def _delete(request: Request) -> Response:
    store = _store(request)
    found: Asset | None = store.find(request.path_params["id"])
    if found is None:
        return _not_found(request)
    store.delete(found)
    return Response(status_code=204)


async def _by_hash(request: Request) -> Response:
    wanted = request.path_params["hash"]
    if not wanted.startswith("blake3:"):
        return _error(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
    return Response(status_code=200 if _store(request).has_hash(wanted) else 404)


_HANDLERS = {("GET", "/api/assets"): _list, ("GET", "/api/assets/{id}"): _get,
             ("GET", "/api/assets/{id}/content"): _content, ("DELETE", "/api/assets/{id}"): _delete,
             ("HEAD", "/api/assets/hash/{hash}"): _by_hash}


def asset_routes(enabled: bool) -> list[BaseRoute]:
    """The asset routes: 503 each when the system is off (routes.py _require_assets_feature_enabled)."""
    return [Route(path, _HANDLERS.get((method, path), _unsupported) if enabled else _disabled, methods=[method])
            for method, path in ASSET_ROUTES]
