"""The ComfyUI web page on the replay: the frontend's static folders at ``/``, ``/templates`` and ``/docs``, and the
informational routes the page reads at boot (``/extensions``, ``/i18n``, ``/workflow_templates``,
``/experiment/models``, ``/internal/folder_paths``), each answered from the cassette when it recorded one.

The page is the one the replayed ComfyUI version requires (a build found or fetched by sim.frontend_builds), or
the page the cassette recorded. Routing follows server.py:796-835: API routes first, then the static folders, the
web root last; a file the folders do not have is answered from a recording if any, else as aiohttp does (an
empty 404).
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ...comfy import model_files as models
from ...comfy.frontend import DOCS, FRONTEND, INSTALL_HINT, TEMPLATES
from ...comfy.profiles import Profile, profile as profile_of
from ...comfy.routes import aliases
from ..sim.engine import ReplayEngine
from ..sim.frontend_builds import ServedBuild, build_for
from ..sim.interactions import InteractionIndex
from .static import (
    empty_streamed, file_response, json_response, method_not_allowed, request_path, resolve_in, with_cache_control,
)

Handler = Callable[[Request], Awaitable[Response]]

# First segments of the page's folders (frontend build, templates, docs): a miss under them is a static 404.
_STATIC_ROOTS = frozenset({"assets", "extensions", "templates", "docs", "fonts", "cursor", "scripts"})


class WebRoots:
    """The folders served: the frontend build, the workflow templates and the node docs (installed packages).

    The build is ``--front-end-root`` when given, else the frontend version the ComfyUI version requires (the
    installed package, or a build fetched once into the user cache: sim.frontend_builds). A cassette that
    recorded the page (``GET /``) is answered from its recordings first: the page it recorded, not a build.
    """

    def __init__(self, *, wanted: str, front_end_root: Path | None = None, recorded_page: bool = False) -> None:
        self.wanted = wanted  # the frontend version the replayed ComfyUI requires
        self.custom = front_end_root.resolve() if front_end_root is not None else None
        self.recorded_page = recorded_page and front_end_root is None  # a --front-end-root is what the user asked for
        self.templates, self.docs = (p.resolve() if p is not None else None for p in (TEMPLATES.installed(), DOCS.installed()))
        self._served: ServedBuild | None = None

    @classmethod
    def for_engine(cls, engine: ReplayEngine) -> WebRoots:
        """The web roots of a replay: the version it is, its --front-end-root, whether its cassettes recorded the page."""
        page = engine.interactions.find("GET", "/", [])
        # A page, not a probe of the root that kept no body (the bundled cassette's GET / has none).
        recorded = page is not None and page.interaction.status == 200 and bool(page.cassette.body(page.interaction))
        return cls(wanted=engine.profile.frontend_version, front_end_root=engine.config.front_end_root,
                   recorded_page=recorded)

    @property
    def resolved(self) -> bool:
        """Whether :meth:`web_root` answers without looking for (or fetching) a build."""
        return self.custom is not None or self._served is not None

    def served(self) -> ServedBuild:
        """The build for the wanted version (found or fetched on the first call: blocking)."""
        if self._served is None:
            self._served = build_for(self.wanted)
        return self._served

    def web_root(self) -> Path | None:
        """The frontend build's folder, or None when there is none (blocking on the first call: see served)."""
        if self.custom is not None:
            return self.custom
        folder = self.served().folder
        return folder.resolve() if folder is not None else None

    async def web_root_async(self) -> Path | None:
        """:meth:`web_root` off the event loop when it may have to fetch."""
        return self.web_root() if self.resolved else await asyncio.to_thread(self.web_root)

    def serves_another_build_than(self, comfyui_version: str | None) -> bool:
        """Whether the build served is not the frontend a recording's ComfyUI had (a recording of 0.3.64 served
        as 0.8.0); False for a --front-end-root or a recorded page, whose version is not known here."""
        if self.custom is not None or self.recorded_page:
            return False
        served = self.served().version
        return served is not None and served != profile_of(comfyui_version).frontend_version

    def describe(self) -> str:
        """``serve``'s banner about the page: what is served and, when it is not the version wanted, why (one
        line each)."""
        lines = []
        if self.recorded_page:
            lines.append("web page: the page the cassette recorded (GET / and the files it recorded)")
        if self.custom is not None:
            return "\n".join([*lines, f"web frontend: {self.custom}"])
        served = self.served()
        if served.folder is None:
            return "\n".join([*lines, *([served.note] if served.note else []), INSTALL_HINT])
        where = "installed" if served.folder == FRONTEND.installed() else f"from {served.folder}"
        lines.append(f"web frontend: {served.note}" if served.note else f"web frontend: {FRONTEND.distribution} {served.version} ({where})")
        return "\n".join(lines)

    def mounts(self, web_root: Path | None) -> list[tuple[str, Path]]:
        """URL prefix and folder of each static folder, in aiohttp's matching order (server.py:816-835)."""
        found = [(TEMPLATES.prefix, self.templates), (DOCS.prefix, self.docs), (FRONTEND.prefix.rstrip("/"), web_root)]
        return [(prefix, folder) for prefix, folder in found if folder is not None]


def _is_page_file(path: str) -> bool:
    """A request for one of the page's files (under its folders, or a name with an extension such as
    ``/user.css``): missing, it gets ComfyUI's empty static 404. Any other miss (``/api/nope``, ``/system_stat``)
    keeps the replay's report of the closest recordings, which the pytest fixtures turn into a failure."""
    if path == "/api" or path.startswith("/api/"):
        return False
    return path == "/" or path.strip("/").split("/")[0] in _STATIC_ROOTS or "." in path.rsplit("/", 1)[-1]


def extension_scripts(web_root: Path) -> list[str]:
    """GET /extensions of a web root (server.py:275-287): its ``extensions/**/*.js`` in glob order (the folder's
    listing order, not sorted)."""
    files = glob.glob(os.path.join(glob.escape(str(web_root)), "extensions/**/*.js"), recursive=True)
    return ["/" + os.path.relpath(f, web_root).replace(os.sep, "/") for f in files]


def with_build_scripts(recorded: bytes, built: list[str], web_root: Path) -> list[str] | None:
    """A recorded /extensions list with the recording's own frontend scripts replaced by those of the build served
    (ComfyUI lists its web root's ``extensions/**/*.js`` first, then each custom node's folder); None when the
    recording is not a list of paths."""
    try:
        listed = json.loads(recorded)
    except ValueError:
        return None
    if not isinstance(listed, list) or not all(isinstance(entry, str) for entry in listed):
        return None
    folder = web_root / "extensions"
    build_folders = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    custom = [entry for entry in listed if entry.split("/")[2:3] and entry.split("/")[2] not in build_folders]
    return [*built, *custom]


class ModelFolders(Protocol):
    """Where the page's model library reads the model folders: the engine's ``/models`` answers."""

    started: float

    def model_folders(self) -> list[str]: ...

    def model_files(self, folder: str) -> list[str] | None: ...


def frontend_routes(roots: WebRoots, index: InteractionIndex, fallback: Handler,
                    folders: ModelFolders, profile: Profile) -> list[BaseRoute]:
    """Routes serving the web page from ``roots``; ``fallback`` answers what neither a file nor a recording does
    (the replay's unmatched 404); ``folders`` lists the models ``/models`` lists; ``profile`` is the ComfyUI version."""
    scripts = profile.script_cache_control

    def recorded(request: Request) -> Response | None:
        rec = index.find(request.method, request.url.path, list(request.query_params.multi_items()))
        if rec is None:
            return None
        answer = index.answer(rec)
        return Response(answer.body, answer.status, headers=answer.headers)

    def recorded_or(computed: Callable[[Request], Response]) -> Handler:
        async def handler(request: Request) -> Response:
            return recorded(request) or computed(request)

        return handler

    async def root(request: Request) -> Response:
        if roots.recorded_page:
            answer = recorded(request)
            if answer is not None:
                return answer
        web_root = await roots.web_root_async()
        if web_root is None:
            return PlainTextResponse(INSTALL_HINT + "\n", 404)
        # server.py:248-254: the page itself is never cached.
        headers = {"Cache-Control": profile.page_cache_control, "Pragma": "no-cache", "Expires": "0"}
        return await file_response(request, web_root / "index.html", headers, scripts=scripts)

    async def extensions(request: Request) -> Response:
        """server.py get_extensions: the served build's scripts, then the custom nodes' (from a recording)."""
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
        return json_response(models.experiment_folders(folders.model_folders(), extensions=profile.model_folder_extensions))

    def folder_paths(request: Request) -> Response:
        return json_response(models.internal_folder_paths(folders.model_folders()))

    def models_in(request: Request) -> Response:
        names = folders.model_files(request.path_params["folder"])
        return json_response(models.experiment_files(names, folders.started)) if names is not None else Response(status_code=404)

    def mounted(path: str, web_root: Path | None) -> tuple[Path, str] | None:
        """The served folder a path falls in and the file name under it (aiohttp's static resources, in order)."""
        for prefix, folder in roots.mounts(web_root):
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                return folder, path[len(prefix) + 1:]
        return None

    async def static(request: Request) -> Response:
        """server.py's static folders: a file, else a recording, else aiohttp's miss (or the replay's report); a
        recorded page's files are answered from the recording first."""
        if roots.recorded_page:
            answer = recorded(request)
            if answer is not None:
                return answer
        page_file = _is_page_file(request.url.path)
        web_root = await roots.web_root_async() if page_file else None  # only the page's files are looked for
        found: Path | Response | None = None
        if request.method in ("GET", "HEAD"):
            mount = mounted(request_path(request), web_root)
            found = resolve_in(*mount) if mount is not None else None
            if isinstance(found, Path) and found.is_file():
                return await file_response(request, found, scripts=scripts)
        answer = recorded(request)
        if answer is not None:
            return answer
        if web_root is None or not page_file:
            return await fallback(request)
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed()
        if isinstance(found, Response):
            return found
        return await file_response(request, found, scripts=scripts) if found is not None else empty_streamed(404)

    routes: list[BaseRoute] = [Route("/", root, methods=["GET"])]
    routes.extend(Route(p, with_cache_control(extensions, scripts=scripts), methods=["GET"]) for p in aliases("/extensions"))
    informational: list[tuple[str, Callable[[Request], Response]]] = [
        ("/i18n", lambda request: json_response({})),  # no custom node has locales on the replay
        ("/workflow_templates", lambda request: json_response({})),  # nor example workflows
        ("/experiment/models", model_folders),
        ("/experiment/models/{folder}", models_in),
    ]
    for path, computed in informational:
        routes.extend(Route(p, with_cache_control(recorded_or(computed), scripts=scripts), methods=["GET"]) for p in aliases(path))
    # /internal is an aiohttp sub-app (server.py add_routes): no /api twin.
    routes.append(Route("/internal/folder_paths", with_cache_control(recorded_or(folder_paths), scripts=scripts), methods=["GET"]))
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    # Not under the cache middleware: aiohttp raises its static refusals past it; files carry their own header.
    routes.append(Route("/{path:path}", static, methods=methods))
    return routes
