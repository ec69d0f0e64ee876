"""Answers as ComfyUI's aiohttp gives them: FileResponse headers, 304 and ranges, static misses and refusals, JSON.

Used for the frontend's static folders and for ``/userdata/{file}``; the header values come from
``comfy.frontend`` (content type, ETag, Last-Modified, the cache_control middleware).
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from ...comfy.frontend import cache_control, content_type, etag, last_modified
from ...comfy.protocol import JSON_CONTENT_TYPE, dumps

Handler = Callable[[Request], Awaitable[Response]]

_INLINE_SIZE = 256 * 1024  # files up to this size are read at once instead of streamed from a thread


def with_cache_control(handler: Handler, *, scripts: str = "no-cache") -> Handler:
    """ComfyUI's cache_control middleware around one handler: Cache-Control by path and the returned status
    (``scripts``: the version's value for .js, .css and index*.json)."""

    async def wrapped(request: Request) -> Response:
        response = await handler(request)
        value = cache_control(request.scope["path"], response.status_code, scripts=scripts)
        if value is not None and "cache-control" not in response.headers:
            response.headers["Cache-Control"] = value
        return response

    return wrapped


async def file_response(request: Request, path: Path, headers: Mapping[str, str] | None = None, *,
                        scripts: str = "no-cache") -> Response:
    """aiohttp's FileResponse for ``path``: 200, 206 for a range, 304 for a matching validator, an empty streamed
    404 when the file is missing, an empty streamed 403 when it is not a regular file (``scripts``: the cache
    middleware's value for .js, .css and index*.json)."""
    # The middleware saw a FileResponse still at 200: a missing image gets max-age=86400 (cache_middleware.py).
    base = dict(headers or {})
    value = cache_control(request.scope["path"], 200, scripts=scripts)
    if value is not None and not any(k.lower() == "cache-control" for k in base):
        base["Cache-Control"] = value
    try:
        st = os.stat(path)
    except PermissionError:
        return empty_streamed(403, base)
    except (OSError, ValueError):
        return empty_streamed(404, base)
    if not stat.S_ISREG(st.st_mode):
        return empty_streamed(403, base)
    validators = {"Etag": etag(st), "Last-Modified": last_modified(st)}
    if _not_modified(request, validators["Etag"], st.st_mtime):
        return Response(status_code=304, headers={**base, **validators})
    if not any(k.lower() == "content-type" for k in base):  # aiohttp guesses only when the handler did not say
        base["Content-Type"] = content_type(path.name)
    answer = {**base, **validators, "Content-Length": str(st.st_size)}
    if st.st_size <= _INLINE_SIZE and "range" not in request.headers:
        # The page loads ~450 small ES modules one import level at a time: answering them inline, without
        # FileResponse's thread hops, keeps that waterfall as fast as aiohttp's sendfile.
        try:
            body = path.read_bytes()
        except OSError:
            return empty_streamed(404, base)
        return Response(body, 200, headers={**answer, "Accept-Ranges": "bytes"})
    return FileResponse(path, headers=answer, stat_result=st)


def _not_modified(request: Request, tag: str, mtime: float) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # Weak comparison (RFC 9110 13.1.2), as aiohttp does.
        wanted = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in wanted or tag in wanted
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        return mtime <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False


def empty_streamed(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """aiohttp's FileResponse that failed in prepare(): no body, chunked, ``application/octet-stream``."""

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    return StreamingResponse(nothing(), status, headers=dict(headers or {}), media_type="application/octet-stream")


def json_response(value: Any, status: int = 200) -> Response:
    """aiohttp's ``web.json_response``: ``json.dumps`` defaults, ``application/json; charset=utf-8``."""
    return Response(dumps(value).encode(), status, headers={"Content-Type": JSON_CONTENT_TYPE})


def http_error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> Response:
    """aiohttp's HTTPException body: ``403: Forbidden`` as text/plain; charset=utf-8."""
    return PlainTextResponse(f"{status}: {reason}", status, headers=dict(headers or {}))


def method_not_allowed() -> Response:
    """A static-only path asked with another method than GET or HEAD."""
    return http_error(405, "Method Not Allowed", {"Allow": "GET,HEAD"})


def request_path(request: Request) -> str:
    """The path as aiohttp routes it: literal ``.``/``..`` segments of the raw path resolved (yarl does), then
    percent-decoded; an encoded ``%2e%2e`` is decoded but not resolved, so the static folder refuses it."""
    raw = request.scope.get("raw_path")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else request.scope["path"]
    segments: list[str] = []
    parts = text.split("/")[1:]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif part == ".":
            if last:
                segments.append("")
        else:
            segments.append(part)
    return unquote("/" + "/".join(segments))


def resolve_in(directory: Path, filename: str) -> Path | Response:
    """aiohttp's StaticResource lookup of ``filename`` under ``directory``: the path to answer with, or the
    refusal it raises (404 text for a path leaving the folder, 403 text for a folder)."""
    if filename.startswith("/") or "\0" in filename:
        return http_error(404, "Not Found")
    # Lexical containment (no realpath per request: the page asks for ~450 files); symlinks placed inside a
    # served folder are followed.
    root = os.fspath(directory)
    path = os.path.normpath(os.path.join(root, filename))
    if path != root and not path.startswith(root + os.sep):
        return http_error(404, "Not Found")
    try:
        if os.path.isdir(path):
            return http_error(403, "Forbidden")
    except PermissionError:
        return http_error(403, "Forbidden")
    return Path(path)
