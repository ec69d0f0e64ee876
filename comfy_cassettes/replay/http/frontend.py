"""Which web page the replay serves: the folders behind ``/``, ``/templates`` and ``/docs`` (WebRoots), and what
the page's boot routes list of them (its extension scripts). The routes themselves are in page.py.

The page is the one the replayed ComfyUI version requires (a build found or fetched by sim.frontend_builds), or
the page the cassette recorded.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from ...comfy.frontend import DOCS, FRONTEND, INSTALL_HINT, TEMPLATES
from ...comfy.profiles import profile as profile_of
from ..sim.engine import ReplayEngine
from ..sim.frontend_builds import ServedBuild, build_for

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
            return "\n".join([*lines, *([f"web frontend: {served.note}"] if served.note else []), INSTALL_HINT])
        where = "installed" if served.folder == FRONTEND.installed() else f"from {served.folder}"
        lines.append(f"web frontend: {served.note}" if served.note else f"web frontend: {FRONTEND.distribution} {served.version} ({where})")
        return "\n".join(lines)

    def mounts(self, web_root: Path | None) -> list[tuple[str, Path]]:
        """URL prefix and folder of each static folder, in aiohttp's matching order (server.py:816-835)."""
        found = [(TEMPLATES.prefix, self.templates), (DOCS.prefix, self.docs), (FRONTEND.prefix.rstrip("/"), web_root)]
        return [(prefix, folder) for prefix, folder in found if folder is not None]


def is_page_file(path: str) -> bool:
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
