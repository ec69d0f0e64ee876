"""The replay's router (replay/http/routing.py) hands every request to the route Starlette's own Router would pick,
with the same path parameters: it only looks at fewer routes, and matches plain paths by segment, not by regex."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.http.app import create_app
from comfy_cassettes.replay.http.routing import IndexedRouter
from comfy_cassettes.replay.server import build_engine

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
PARAMETER = re.compile(r"\{[^}]*\}")


def starlette_pick(routes: list[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, Scope]:
    """Starlette's Router.app: the first full match in order, else the first partial one."""
    partial: tuple[BaseRoute, Scope] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    return partial if partial is not None else (None, {})


def sample_paths(routes: list[BaseRoute]) -> Iterator[str]:
    """Each route's path with its parameters filled in several ways, and near misses of it."""
    fillings = ("x", "3f2c", "a.png", "a/b", "", "%20", "api", "history")
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        for filling in fillings:
            filled = PARAMETER.sub(filling, path) or "/"
            yield from (filled, filled + "/", filled.rstrip("/") or "/", "/api" + filled, filled + "/extra", filled.replace("/", "//", 1))
    yield from ("/", "//", "/api", "/api/", "/nothing/here", "/api/nothing", "/ws", "/api/ws", "/internal/logs/raw")


@pytest.fixture(params=[{}, {"comfyui_version": "0.8.0"}, {"comfyui_version": "0.38", "assets": True}],
                ids=["0.3.64", "0.8.0", "0.38-assets"])
def router(request: pytest.FixtureRequest) -> Iterator[IndexedRouter]:
    engine = build_engine(ReplayConfig(port=0, **request.param))
    try:
        app = create_app(engine)
        router = app.app  # type: ignore[attr-defined]  # the middleware's inner app
        assert isinstance(router, IndexedRouter)
        yield router
    finally:
        engine.remove_owned_dirs()


def test_every_request_goes_to_the_route_starlette_would_pick(router: IndexedRouter) -> None:
    routes = list(router.routes)
    checked = 0
    # Twice: the second time, parameterless paths come from the router's cache of resolved requests.
    for path, method in [*itertools.product(sorted(set(sample_paths(routes))), METHODS)] * 2:
        scope: Scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
        expected, expected_child = starlette_pick(routes, scope)
        route, child, handler = router.resolve(dict(scope))
        assert route is expected, f"{method} {path}: {route!r} instead of Starlette's {expected!r}"
        if expected is not None:
            assert child.get("path_params") == expected_child.get("path_params"), f"{method} {path}"
            assert child.get("endpoint") == expected_child.get("endpoint"), f"{method} {path}"
        if handler is not None:  # awaited directly only when Starlette's app for it is the bare function wrapper
            assert isinstance(route, Route) and route.endpoint is handler and method in (route.methods or ())
        checked += 1
    assert checked > 1000


def test_a_websocket_request_is_matched_as_starlette_matches_it(router: IndexedRouter) -> None:
    for path in ("/ws", "/api/ws", "/ws/", "/admin/x"):
        scope: Scope = {"type": "websocket", "path": path, "root_path": "", "query_string": b"", "headers": []}
        assert router.resolve(dict(scope))[0] is starlette_pick(list(router.routes), scope)[0]
