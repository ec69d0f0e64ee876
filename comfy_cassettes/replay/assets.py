"""ComfyUI 0.38's assets API: off, every route answers 503 like a server started without ``--enable-assets``;
on (``serve --assets``), uploads and outputs become assets a client can list, read and download.

Shapes from app/assets/api/routes.py and schemas_out.py (ComfyUI master 783545f6 and the newest stored
versions); the parts a current client needs are simulated (upload → ``asset``, output ``id``/``preview_id``,
``GET /api/assets``, ``/api/assets/{id}``, ``/api/assets/{id}/content``, ``HEAD /api/assets/hash/{hash}``,
``DELETE``); the rest answer 501 ``BACKEND_UNSUPPORTED``.
"""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route


# Every route the assets module registers (no /api/api twin: it adds them to the app directly).
ROUTES = (
    ("HEAD", "/api/assets/hash/{hash}"), ("GET", "/api/assets"), ("GET", "/api/assets/{id}"),
    ("GET", "/api/assets/{id}/content"), ("POST", "/api/assets/from-hash"), ("POST", "/api/assets"),
    ("PUT", "/api/assets/{id}"), ("DELETE", "/api/assets/{id}"), ("GET", "/api/tags"), ("POST", "/api/assets/{id}/tags"),
    ("DELETE", "/api/assets/{id}/tags"), ("GET", "/api/assets/tags/refine"), ("POST", "/api/assets/seed"),
    ("GET", "/api/assets/seed/status"), ("POST", "/api/assets/seed/cancel"), ("POST", "/api/assets/prune"),
)
DISABLED = {"error": {"code": "SERVICE_DISABLED", "message": "Assets system is disabled. Start the server with --enable-assets to use this feature.", "details": {}}}


def _error(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status)


def content_hash(path: Path) -> str:
    """The asset hash ComfyUI stores: ``blake3:<hex>`` of the file's bytes."""
    import blake3  # the [assets] extra; ReplayConfig refuses --assets without it

    return "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


@dataclass
class Asset:
    """One registered file."""

    id: str
    path: Path
    name: str
    kind: str  # the folder: input, output or temp
    subfolder: str
    hash: str
    tags: list[str]
    job_id: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).replace(tzinfo=None).isoformat())

    @property
    def mime_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def upload_view(self) -> dict[str, Any]:
        """The ``asset`` of an upload answer (server.py image_upload with assets on)."""
        return {"id": self.id, "name": self.name, "asset_hash": self.hash, "size": self.path.stat().st_size,
                "mime_type": self.mime_type, "tags": self.tags}

    def as_dict(self) -> dict[str, Any]:
        """schemas_out.Asset, without the keys whose value is None (model_dump exclude_none)."""
        preview = f"/api/view?type={self.kind}&filename={quote(self.name)}" + (f"&subfolder={quote(self.subfolder)}" if self.subfolder else "")
        display = f"{self.subfolder}/{self.name}" if self.subfolder else self.name
        values = {"id": self.id, "name": self.name, "hash": self.hash, "loader_path": display, "display_name": display,
                  "size": self.path.stat().st_size, "mime_type": self.mime_type, "tags": self.tags,
                  "preview_url": preview if self.mime_type.startswith(("image/", "video/", "audio/", "text/")) else None,
                  "preview_id": self.id if self.mime_type.startswith("image/") else None, "user_metadata": {},
                  "metadata": self.metadata, "job_id": self.job_id, "prompt_id": self.job_id,
                  "created_at": self.created_at, "updated_at": self.created_at, "last_access_time": self.created_at}
        return {k: v for k, v in values.items() if v is not None}


class Assets:
    """The registered assets of one server (empty after a reset, like a fresh database)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.by_id: dict[str, Asset] = {}
        self._by_path: dict[Path, Asset] = {}

    def reset(self) -> None:
        self.by_id.clear()
        self._by_path.clear()

    def register(self, path: Path, *, name: str, kind: str, subfolder: str, tags: list[str], job_id: str | None = None,
                 metadata: dict[str, Any] | None = None) -> Asset:
        """The asset of a file (``path`` holds the bytes served under ``name``), registered once: a file written
        again keeps its asset, with the new hash."""
        key = Path(kind, subfolder, name)
        found = self._by_path.get(key)
        if found is None:
            found = Asset(str(uuid.uuid4()), path, name, kind, subfolder, content_hash(path), tags, job_id, metadata)
            self.by_id[found.id] = self._by_path[key] = found
        else:
            found.hash, found.job_id, found.metadata = content_hash(path), job_id or found.job_id, metadata or found.metadata
        return found

    def routes(self) -> list[BaseRoute]:
        """The asset routes: 503 each when the system is off (routes.py _require_assets_feature_enabled)."""
        handlers = {("GET", "/api/assets"): self._list, ("GET", "/api/assets/{id}"): self._get,
                    ("GET", "/api/assets/{id}/content"): self._content, ("DELETE", "/api/assets/{id}"): self._delete,
                    ("HEAD", "/api/assets/hash/{hash}"): self._by_hash}

        def route(method: str, path: str) -> Route:
            handler = handlers.get((method, path), self._unsupported) if self.enabled else self._disabled
            return Route(path, handler, methods=[method])

        return [route(method, path) for method, path in ROUTES]

    async def _disabled(self, request: Request) -> Response:
        return JSONResponse(DISABLED, 503)

    async def _unsupported(self, request: Request) -> Response:
        return _error(501, "BACKEND_UNSUPPORTED", "comfy-cassettes does not simulate this assets route")

    async def _list(self, request: Request) -> Response:
        assets = [a.as_dict() for a in self.by_id.values() if a.path.is_file()]
        return JSONResponse({"assets": assets, "total": len(assets), "has_more": False})

    def _find(self, request: Request) -> Asset | None:
        found = self.by_id.get(request.path_params["id"])
        return found if found is not None and found.path.is_file() else None

    async def _get(self, request: Request) -> Response:
        found = self._find(request)
        if found is None:
            return _error(404, "ASSET_NOT_FOUND", f"Asset {request.path_params['id']} not found", id=request.path_params["id"])
        return JSONResponse(found.as_dict())

    async def _content(self, request: Request) -> Response:
        found = self._find(request)
        if found is None:
            return _error(404, "ASSET_NOT_FOUND", f"Asset {request.path_params['id']} not found", id=request.path_params["id"])
        disposition = request.query_params.get("disposition", "attachment")
        headers = {"Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(found.name)}", "X-Content-Type-Options": "nosniff"}
        return FileResponse(found.path, media_type=found.mime_type, headers=headers)

    async def _delete(self, request: Request) -> Response:
        found = self._find(request)
        if found is None:
            return _error(404, "ASSET_NOT_FOUND", f"Asset {request.path_params['id']} not found", id=request.path_params["id"])
        del self.by_id[found.id]
        self._by_path.pop(Path(found.kind, found.subfolder, found.name), None)
        return Response(status_code=204)

    async def _by_hash(self, request: Request) -> Response:
        wanted = request.path_params["hash"]
        if not wanted.startswith("blake3:"):
            return _error(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
        return Response(status_code=200 if any(a.hash == wanted for a in self.by_id.values()) else 404)
