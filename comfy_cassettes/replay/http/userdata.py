"""The user folder (``--user-dir``) and the routes the page keeps its state through: ``/users``, ``/settings``,
``/userdata`` and ``/v2/userdata``, with app/user_manager.py's and app/app_settings.py's rules, statuses and path
guards (single-user mode: every request is user ``default``).

What a user writes lands in real files in ComfyUI's layout (``<user-dir>/default/comfy.settings.json``,
``<user-dir>/default/workflows/...``); the admin reset puts the folder back as it was when the server started.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ...comfy.frontend import user_file_headers
from ...comfy.profiles import Profile
from ...comfy.protocol import CRASH_BODY, CRASH_HEADERS
from ...comfy.routes import aliases
from ..sim.user_folder import UserFolder
from .answers import Handler, engine_of, json_body, query_of, recorded
from .static import file_response, json_response, with_cache_control

# What ComfyUI's own handlers raise on bad input (no guard): aiohttp answers each with its 500.
_COMFY_CRASHES = (OSError, ValueError, TypeError, KeyError, RecursionError)


def file_info(path: str, relative_to: str, *, in_ms: bool = False) -> dict[str, Any]:
    """get_file_info: float seconds, as os.path.getmtime gives them, or (``in_ms``, ComfyUI 0.21.0+) whole
    milliseconds, ``int(seconds * 1000)``."""
    modified, created = os.path.getmtime(path), os.path.getctime(path)
    return {
        "path": os.path.relpath(path, relative_to).replace(os.sep, "/"),
        "size": os.path.getsize(path),
        "modified": int(modified * 1000) if in_ms else modified,
        "created": int(created * 1000) if in_ms else created,
    }


def _text(status: int, text: str) -> Response:
    return PlainTextResponse(text, status)


def _crash() -> Response:
    return Response(CRASH_BODY, 500, headers=dict(CRASH_HEADERS))


def _segments(request: Request, route: str) -> list[str] | None:
    """The raw path segments after ``route`` (``/userdata``), each decoded once, as aiohttp's ``{name}`` matches
    them: ``%2F`` stays inside a segment, a literal ``/`` separates two. None when the path is not under it."""
    raw = request.scope.get("raw_path")
    text = raw.decode("latin-1") if isinstance(raw, bytes) else request.scope["path"]
    parts = text.split("/")[1:]
    if parts and unquote(parts[0]) == "api":
        parts = parts[1:]
    if not parts or unquote(parts[0]) != route.strip("/"):
        return None
    return [unquote(p) for p in parts[1:]]


async def get_users(request: Request) -> Response:
    folder = engine_of(request).user_folder
    return json_response({"storage": "server", "migrated": os.path.exists(folder.user_root)})


async def post_users(request: Request) -> Response:
    folder = engine_of(request).user_folder
    username = (await json_body(request))["username"]
    if username in folder.users.values():
        return json_response({"error": "Duplicate username."}, 400)
    return json_response(folder.add_user(username))


async def get_settings(request: Request) -> Response:
    folder = engine_of(request).user_folder
    return json_response(folder.settings())


async def post_settings(request: Request) -> Response:
    folder = engine_of(request).user_folder
    settings = folder.settings()
    folder.save_settings({**settings, **await json_body(request)})
    return Response(status_code=200)


async def setting(request: Request) -> Response:
    folder = engine_of(request).user_folder
    parts = _segments(request, "/settings")
    if parts is None or len(parts) != 1 or not parts[0]:
        return await recorded(request)
    setting_id = parts[0]
    settings = folder.settings()
    if request.method == "POST":
        settings[setting_id] = await json_body(request)
        folder.save_settings(settings)
        return Response(status_code=200)
    return json_response(settings[setting_id] if setting_id in settings else None)


async def list_userdata(request: Request) -> Response:
    folder = engine_of(request).user_folder
    query = query_of(request)
    directory = query.get("dir", "")
    if not directory:
        return _text(400, "Directory not provided")
    path = folder.path(directory)
    if not path:
        return _text(403, "Invalid directory")
    if not os.path.exists(path):
        return _text(404, "Directory not found")
    recurse = query.get("recurse", "").lower() == "true"
    full_info = query.get("full_info", "").lower() == "true"
    split = query.get("split", "").lower() == "true"
    pattern = os.path.join(glob.escape(path), "**", "*") if recurse else os.path.join(glob.escape(path), "*")
    results: list[Any] = []
    # glob's order is the folder's listing order, as ComfyUI returns it (not sorted).
    for full_path in glob.glob(pattern, recursive=recurse):
        if not os.path.isfile(full_path):
            continue
        if full_info:
            results.append(file_info(full_path, path, in_ms=engine_of(request).profile.userdata_times_in_ms))
            continue
        rel = os.path.relpath(full_path, path).replace(os.sep, "/")
        results.append([rel, *rel.split("/")] if split else rel)
    return json_response(results)


async def list_userdata_v2(request: Request) -> Response:
    folder = engine_of(request).user_folder
    requested = unquote(query_of(request).get("path", ""))
    base = folder.path(None, create_dir=False)
    target = folder.path(requested, create_dir=False) if requested else base
    if not target or not base:
        return _text(400, "Invalid path requested")
    if not os.path.exists(target):
        return json_response([]) if target == base else _text(404, "Requested path not found")
    if not os.path.isdir(target):
        return _text(400, "Requested path is not a directory")
    results: list[dict[str, Any]] = []
    try:
        for root, dirs, files in os.walk(target, topdown=True):
            for name in dirs:
                rel = os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/")
                results.append({"name": name, "path": rel, "type": "directory"})
            for name in files:
                file_path = os.path.join(root, name)
                entry: dict[str, Any] = {"name": name, "path": os.path.relpath(file_path, base).replace(os.sep, "/"), "type": "file"}
                try:
                    st = os.stat(file_path)
                    entry["size"], entry["modified"] = st.st_size, st.st_mtime
                except OSError:
                    pass
                results.append(entry)
    except OSError:
        return _text(500, "Error reading directory contents")
    results.sort(key=lambda x: (x["type"] != "directory", x["name"].lower()))
    return json_response(results)


def _user_file(folder: UserFolder, name: str, *, must_exist: bool) -> str | Response:
    """get_user_data_path (user_manager.py:308-318): the file's path, or the empty 400/403/404."""
    if not name:
        return Response(status_code=400)
    path = folder.path(name)
    if not path:
        return Response(status_code=403)
    if must_exist and not os.path.exists(path):
        return Response(status_code=404)
    return path


def _written(folder: UserFolder, path: str, request: Request) -> Response:
    user_root = folder.path(None)
    assert user_root is not None
    if query_of(request).get("full_info", "false").lower() == "true":
        return json_response(file_info(path, user_root, in_ms=engine_of(request).profile.userdata_times_in_ms))
    return json_response(os.path.relpath(path, user_root))


async def userdata_file(request: Request) -> Response:
    folder = engine_of(request).user_folder
    parts = _segments(request, "/userdata")
    if parts is not None and len(parts) == 3 and parts[1] == "move" and request.method == "POST":
        return await _move(request, parts[0], parts[2])
    if parts is None or len(parts) != 1 or not parts[0]:
        return await recorded(request)
    name = parts[0]
    if request.method in ("GET", "HEAD"):
        path = _user_file(folder, name, must_exist=True)
        if isinstance(path, Response):
            return path
        headers = None
        if engine_of(request).profile.user_file_headers:
            headers = user_file_headers(path, user_css=path == os.path.join(folder.user_root, "user.css"))
        return await file_response(request, Path(path), headers, scripts=engine_of(request).profile.script_cache_control)
    if request.method == "DELETE":
        path = _user_file(folder, name, must_exist=True)
        if isinstance(path, Response):
            return path
        os.remove(path)
        return Response(status_code=204)
    path = _user_file(folder, name, must_exist=False)
    if isinstance(path, Response):
        return path
    overwrite = query_of(request).get("overwrite", "true") != "false"
    if not overwrite and os.path.exists(path):
        return _text(409, "File already exists")
    body = await request.body()
    try:
        with open(path, "wb") as f:
            f.write(body)
    except OSError:
        # ComfyUI puts "Invalid filename. Please avoid special characters like :\/*?"<>|" in the reason
        # phrase, which ASGI cannot carry: the status and the empty body are the same.
        return Response(status_code=400)
    return _written(folder, path, request)


async def _move(request: Request, source_name: str, dest_name: str) -> Response:
    folder = engine_of(request).user_folder
    source = _user_file(folder, source_name, must_exist=True)
    if isinstance(source, Response):
        return source
    dest = _user_file(folder, dest_name, must_exist=False)
    if isinstance(dest, Response):
        # Up to 0.3.75 user_manager.py checks the source again, so ComfyUI goes on with a Response as the
        # destination and crashes: a refused destination is its 500, and the source stays where it was.
        return dest if engine_of(request).profile.move_checks_destination else _crash()
    overwrite = query_of(request).get("overwrite", "true") != "false"
    if not overwrite and os.path.exists(dest):
        return _text(409, "File already exists")
    shutil.move(source, dest)
    return _written(folder, dest, request)


_TABLE: list[tuple[str, Handler, list[str]]] = [
    ("/users", get_users, ["GET"]),
    ("/users", post_users, ["POST"]),
    ("/settings", get_settings, ["GET"]),
    ("/settings", post_settings, ["POST"]),
    ("/settings/{rest:path}", setting, ["GET", "POST"]),
    ("/userdata", list_userdata, ["GET"]),
    ("/v2/userdata", list_userdata_v2, ["GET"]),
    ("/userdata/{rest:path}", userdata_file, ["GET", "POST", "DELETE"]),
]


def userdata_routes(profile: Profile) -> list[BaseRoute]:
    """Routes for users, settings and user files in the engine's user folder, for ``profile``'s ComfyUI version:
    what ComfyUI's own handlers raise on bad input is its 500, and scripts get the version's cache headers."""
    scripts = profile.script_cache_control

    def guarded(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except _COMFY_CRASHES:
                return _crash()

        return with_cache_control(wrapped, scripts=scripts)

    return [Route(p, guarded(handler), methods=methods) for path, handler, methods in _TABLE for p in aliases(path)]
