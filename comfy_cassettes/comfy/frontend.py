"""ComfyUI's web frontend, known once: the packages it serves, and how its aiohttp server answers for a file.

ComfyUI 0.3.64 serves ``comfyui-frontend-package`` at ``/``, ``comfyui-workflow-templates`` at ``/templates`` and
``comfyui-embedded-docs`` at ``/docs`` (server.py:816-835). Every file answer (static files, ``/userdata/{file}``)
is aiohttp's FileResponse under ComfyUI's cache_control middleware: the content type from a private
``mimetypes.MimeTypes()`` (Python 3.11's built-in table, no charset), ``Etag: "<mtime_ns hex>-<size hex>"``,
``Last-Modified`` the ceiling of the mtime, and ``Cache-Control`` by the request path's extension. ComfyUI 0.38
never stores the page and its scripts, and sends user files as downloads (``user_file_headers``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import mimetypes
import os
import posixpath
from email.utils import formatdate
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "FRONTEND", "CURRENT_FRONTEND", "DOCS", "TEMPLATES", "INSTALL_HINT", "WebPackage",
    "cache_control", "content_type", "etag", "last_modified", "guess_type", "is_dangerous_content_type", "user_file_headers",
]


class WebPackage(NamedTuple):
    """A pip package whose folder ComfyUI serves under a URL prefix."""

    distribution: str
    module: str
    folder: str
    prefix: str
    version: str  # the version the project serves and tests (see FRONTEND and CURRENT_FRONTEND)

    def installed(self) -> Path | None:
        """The served folder of the installed package, or None (found without importing it)."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations))) / self.folder
        return folder if folder.is_dir() else None

    def installed_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    @property
    def requirement(self) -> str:
        """The pip requirement of this version: ``comfyui-frontend-package==1.27.10``."""
        return f"{self.distribution}=={self.version}"


# The version ComfyUI 0.3.64, the bundled cassettes' server, pins in requirements.txt (pip install '.[frontend]').
FRONTEND = WebPackage("comfyui-frontend-package", "comfyui_frontend_package", "static", "/", "1.27.10")
# The newest frontend on PyPI, booted on `serve --comfyui-version 0.38` by tests/test_browser_current.py. ComfyUI
# 0.38.1 pins 1.53.6 (requirements.txt, differences.py, what /system_stats reports as required);
# users upgrade the frontend past the pin, and the newest is the one that reads the 0.38 routes (/api/jobs,
# /node_replacements, /global_subgraphs). Same distribution as FRONTEND, so it is never installed beside it:
# its wheel's static folder is served with --front-end-root.
CURRENT_FRONTEND = FRONTEND._replace(version="1.58.1")
TEMPLATES = WebPackage("comfyui-workflow-templates", "comfyui_workflow_templates", "templates", "/templates", "0.1.95")
DOCS = WebPackage("comfyui-embedded-docs", "comfyui_embedded_docs", "docs", "/docs", "0.2.6")

INSTALL_HINT = (
    "The ComfyUI web frontend is not installed: pip install 'comfy-cassettes[frontend]' "
    "(or serve a build with --front-end-root DIR)"
)

# aiohttp's MimeTypes() on ComfyUI's Python 3.11: the built-in table only, so .webp and fonts are octet-stream
# (real-0.3.64-curl-static.txt). Fixed here so the answer does not change with the Python the replay runs on.
_CONTENT_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".js": "application/javascript",
    ".mjs": "application/javascript", ".json": "application/json", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml", ".ico": "image/vnd.microsoft.icon",
    ".txt": "text/plain", ".mp3": "audio/mpeg", ".mp4": "video/mp4", ".wav": "audio/x-wav", ".webm": "video/webm",
    ".xml": "text/xml", ".pdf": "application/pdf", ".zip": "application/zip", ".wasm": "application/wasm",
    ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff", ".csv": "text/csv", ".avif": "image/avif",
    ".mov": "video/quicktime", ".opus": "audio/opus", ".aac": "audio/aac",
    ".gz": "application/gzip", ".br": "application/x-brotli", ".bz2": "application/x-bzip2", ".xz": "application/x-xz",
}
FALLBACK_CONTENT_TYPE = "application/octet-stream"

# middleware/cache_middleware.py
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def content_type(filename: str) -> str:
    """The Content-Type aiohttp gives a file of this name."""
    ext = posixpath.splitext(filename)[1]
    return _CONTENT_TYPES.get(ext) or _CONTENT_TYPES.get(ext.lower()) or FALLBACK_CONTENT_TYPE


def cache_control(path: str, status: int, *, scripts: str = "no-cache") -> str | None:
    """ComfyUI's cache_control middleware for a request path and the status the handler returned; ``scripts`` is
    the version's value for scripts, stylesheets and index*.json (``Profile.script_cache_control``).

    A file handler's answer is still 200 when the middleware sees it (aiohttp decides 404/304 later), so a
    missing static image gets ``max-age=86400``; only handlers returning their own 404 get an hour.
    """
    last = path.rsplit("/", 1)[-1]
    if path.endswith((".js", ".css")) or (last.startswith("index") and last.endswith(".json")):
        return scripts
    if not path.lower().endswith(_IMAGE_EXTENSIONS):
        return None
    if status == 404:
        return "public, max-age=3600"
    if status in (200, 201, 202, 203, 204, 205, 206, 301, 308):
        return "public, max-age=86400"
    if status in (302, 303, 307):
        return "no-cache"
    return None


def etag(stat: os.stat_result) -> str:
    """aiohttp's strong ETag of a file, quoted."""
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def last_modified(stat: os.stat_result) -> str:
    """aiohttp's Last-Modified: the mtime rounded up to the second."""
    return formatdate(math.ceil(stat.st_mtime), usegmt=True)


# utils/mime_types.py init_mime_types (called by main.py at startup): ComfyUI's additions to Python's table,
# which its handlers' mimetypes.guess_type calls see.
_COMFY_MIME_TYPES = {
    ".js": "application/javascript; charset=utf-8", ".webp": "image/webp", ".svg": "image/svg+xml",
    ".safetensors": "application/safetensors", ".sft": "application/safetensors", ".pt": "application/pytorch",
    ".pth": "application/pytorch", ".ckpt": "application/pickle", ".pkl": "application/pickle",
    ".gguf": "application/gguf", ".yaml": "application/yaml", ".yml": "application/yaml",
}
# folder_paths.DANGEROUS_CONTENT_TYPES: what a browser may run or render inline; any *+xml and */xml too.
DANGEROUS_CONTENT_TYPES = frozenset({
    "text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "application/javascript",
    "application/x-javascript", "application/ecmascript", "text/css", "image/svg+xml", "application/xml", "text/xml",
    "message/rfc822",
})


def guess_type(filename: str) -> str | None:
    """``mimetypes.guess_type`` in a ComfyUI process: its registered types first, then Python's."""
    ext = posixpath.splitext(filename)[1]
    return _COMFY_MIME_TYPES.get(ext) or _COMFY_MIME_TYPES.get(ext.lower()) or mimetypes.guess_type(filename)[0]


def is_dangerous_content_type(content_type: str | None) -> bool:
    """folder_paths.is_dangerous_content_type: parameters and case ignored."""
    if not content_type:
        return False
    normalized = content_type.split(";", 1)[0].strip().lower()
    return normalized in DANGEROUS_CONTENT_TYPES or normalized.endswith(("+xml", "/xml"))


def user_file_headers(filename: str, *, user_css: bool) -> dict[str, str]:
    """GET /userdata/{file} of ComfyUI 0.30.0+ (app/user_manager.py getuserdata): never rendered inline but the
    user's own stylesheet; a dangerous type is sent as octet-stream."""
    if user_css:
        return {"Content-Type": "text/css", "X-Content-Type-Options": "nosniff", "Content-Disposition": "inline"}
    kind = guess_type(filename) or FALLBACK_CONTENT_TYPE
    if is_dangerous_content_type(kind):
        kind = FALLBACK_CONTENT_TYPE
    return {"Content-Type": kind, "X-Content-Type-Options": "nosniff", "Content-Disposition": "attachment"}
