"""The web page's routes: ``/`` and the static folders (frontend build, templates, docs), and the informational routes
the page reads at boot (``/extensions``, ``/i18n``, ``/workflow_templates``, ``/experiment/models``,
``/internal/folder_paths``), each answered from the cassette when it recorded one.

Routing follows server.py:796-835: API routes first, then the static folders, the web root last; a file the
folders do not have is answered from a recording if any, else as aiohttp does (an empty 404). Handlers find the
engine and the page's folders (:class:`WebRoots`) in ``request.app.state``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ...comfy import model_files as models
from ...comfy.frontend import INSTALL_HINT
from ...comfy.profiles import Profile
from ...comfy.routes import aliases
from .answers import Handler, engine_of, recorded as unmatched
from .frontend import WebRoots, is_page_file, extension_scripts, with_build_scripts
from .static import empty_streamed, file_response, json_response, method_not_allowed, request_path, resolve_in, with_cache_control


def roots_of(request: Request) -> WebRoots:
    """The page's folders, kept in the app's state when the app was built."""
    roots: WebRoots = request.app.state.web_roots
    return roots


def _recorded(request: Request) -> Response | None:
    index = engine_of(request).interactions
    rec = index.find(request.method, request.url.path, list(request.query_params.multi_items()))
    if rec is None:
        return None
    answer = index.answer(rec)
    return Response(answer.body, answer.status, headers=answer.headers)


def _recorded_or(computed: Callable[[Request], Response]) -> Handler:
    async def handler(request: Request) -> Response:
        return _recorded(request) or computed(request)

    return handler


async def root(request: Request) -> Response:
    roots, profile = roots_of(request), engine_of(request).profile
    if roots.recorded_page:
        answer = _recorded(request)
        if answer is not None:
            return answer
    web_root = await roots.web_root_async()
    if web_root is None:
        return PlainTextResponse(INSTALL_HINT + "\n", 404)
    # server.py:248-254: the page itself is never cached.
    headers = {"Cache-Control": profile.page_cache_control, "Pragma": "no-cache", "Expires": "0"}
    return await file_response(request, web_root / "index.html", headers, scripts=profile.script_cache_control)


async def extensions(request: Request) -> Response:
    """server.py get_extensions: the served build's scripts, then the custom nodes' (from a recording)."""
    roots, index = roots_of(request), engine_of(request).interactions
    web_root = await roots.web_root_async()
    built = extension_scripts(web_root) if web_root is not None else []
    rec = index.find(request.method, request.url.path, list(request.query_params.multi_items()))
    if rec is None:
        return json_response(built)
    if web_root is not None and roots.serves_another_build_than(rec.cassette.comfyui_version):
        rebuilt = with_build_scripts(index.answer(rec).body, built, web_root)
        if rebuilt is not None:
            return json_response(rebuilt)
    answer = index.answer(rec)
    return Response(answer.body, answer.status, headers=answer.headers)


def model_folders(request: Request) -> Response:
    engine = engine_of(request)
    return json_response(models.experiment_folders(engine.catalogue.model_folders(), extensions=engine.profile.model_folder_extensions))


def folder_paths(request: Request) -> Response:
    return json_response(models.internal_folder_paths(engine_of(request).catalogue.model_folders()))


def models_in(request: Request) -> Response:
    catalogue = engine_of(request).catalogue
    names = catalogue.model_files(request.path_params["folder"])
    return json_response(models.experiment_files(names, catalogue.started)) if names is not None else Response(status_code=404)


def _mounted(roots: WebRoots, path: str, web_root: Path | None) -> tuple[Path, str] | None:
    """The served folder a path falls in and the file name under it (aiohttp's static resources, in order)."""
    for prefix, folder in roots.mounts(web_root):
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return folder, path[len(prefix) + 1:]
    return None


async def static(request: Request) -> Response:
    """server.py's static folders: a file, else a recording, else aiohttp's miss (or the replay's report); a
    recorded page's files are answered from the recording first."""
    roots, scripts = roots_of(request), engine_of(request).profile.script_cache_control
    if roots.recorded_page:
        answer = _recorded(request)
        if answer is not None:
            return answer
    page_file = is_page_file(request.url.path)
    web_root = await roots.web_root_async() if page_file else None  # only the page's files are looked for
    found: Path | Response | None = None
    if request.method in ("GET", "HEAD"):
        mount = _mounted(roots, request_path(request), web_root)
        found = resolve_in(*mount) if mount is not None else None
        if isinstance(found, Path) and found.is_file():
            return await file_response(request, found, scripts=scripts)
    answer = _recorded(request)
    if answer is not None:
        return answer
    if web_root is None or not page_file:
        return await unmatched(request)
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed()
    if isinstance(found, Response):
        return found
    return await file_response(request, found, scripts=scripts) if found is not None else empty_streamed(404)


# Answered from a recording when the cassette has one, else computed.
INFORMATIONAL: list[tuple[str, Callable[[Request], Response]]] = [
    ("/i18n", lambda request: json_response({})),  # no custom node has locales on the replay
    ("/workflow_templates", lambda request: json_response({})),  # nor example workflows
    ("/experiment/models", model_folders),
    ("/experiment/models/{folder}", models_in),
]


def page_routes(profile: Profile) -> list[BaseRoute]:
    """The web page's routes for a ComfyUI version (its cache headers on scripts); they end with the static
    folders' catch-all."""
    scripts = profile.script_cache_control
    routes: list[BaseRoute] = [Route("/", root, methods=["GET"])]
    routes.extend(Route(p, with_cache_control(extensions, scripts=scripts), methods=["GET"]) for p in aliases("/extensions"))
    for path, computed in INFORMATIONAL:
        routes.extend(Route(p, with_cache_control(_recorded_or(computed), scripts=scripts), methods=["GET"]) for p in aliases(path))
    # /internal is an aiohttp sub-app (server.py add_routes): no /api twin.
    routes.append(Route("/internal/folder_paths", with_cache_control(_recorded_or(folder_paths), scripts=scripts), methods=["GET"]))
    # Not under the cache middleware: aiohttp raises its static refusals past it; files carry their own header.
    routes.append(Route("/{path:path}", static, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]))
    return routes
