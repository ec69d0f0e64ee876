"""The assets a server registered (ComfyUI 0.38's assets system, app/assets): uploads and outputs as records with
a content hash, emptied by a reset like a fresh database."""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

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

    def find(self, asset_id: str) -> Asset | None:
        """The asset ``asset_id`` while its file exists."""
        found = self.by_id.get(asset_id)
        return found if found is not None and found.path.is_file() else None

    def listed(self) -> list[Asset]:
        return [a for a in self.by_id.values() if a.path.is_file()]

    def delete(self, asset: Asset) -> None:
        del self.by_id[asset.id]
        self._by_path.pop(Path(asset.kind, asset.subfolder, asset.name), None)

    def has_hash(self, wanted: str) -> bool:
        return any(a.hash == wanted for a in self.by_id.values())
