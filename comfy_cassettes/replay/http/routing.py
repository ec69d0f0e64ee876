"""Starlette's Router, finding a request's route among the few that could match it instead of trying ~150 in turn.

The replay has every ComfyUI route twice (``/x`` and ``/api/x``), the admin API, the web page's routes and
catch-alls: Starlette's linear scan cost more per request than the handlers of the hot routes. A route can only
match paths that start with its literal segments (those before its first ``{param}``), so the candidates for a
request are the routes whose literal start agrees with the request's first segment (first two under ``/api``),
kept in their order: the first full match is the same route Starlette would pick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import State
from starlette.routing import BaseRoute, Match, Router
from starlette.types import Receive, Scope, Send

_API = "api"  # ComfyUI's alias prefix: the second segment tells routes apart


def _literal_start(route: BaseRoute) -> tuple[str, ...]:
    """The path segments a route's path begins with before its first parameter ("/history/{id}" -> ("history",))."""
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return ()
    literal: list[str] = []
    for segment in path.split("/")[1:]:
        if "{" in segment:
            break
        literal.append(segment)
    return tuple(literal)


def _key(path: str) -> tuple[str, ...]:
    segments = path.split("/", 3)[1:3]
    return tuple(segments) if segments and segments[0] == _API else tuple(segments[:1])


class IndexedRouter(Router):
    """A Router whose http and websocket dispatch tries only the routes that can match the request's path."""

    def __init__(self, routes: Sequence[BaseRoute], state: State | None = None, **options: Any) -> None:
        super().__init__(routes=routes, **options)
        self.state = state or State()  # request.app.state, as in a Starlette app: how module-level handlers find the engine
        self._starts = [(_literal_start(route), route) for route in self.routes]
        self._known = {start[0] for start, _ in self._starts if start}
        self._known_api = {start[1] for start, _ in self._starts if len(start) > 1 and start[0] == _API}
        self._candidates: dict[tuple[str, ...], list[BaseRoute]] = {}

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that could match ``path``, in the router's order (cached per known first segments)."""
        key = _key(path)
        if len(key) > 1 and key[1] not in self._known_api:
            key = key[:1]  # /api/<a name no route has>: the routes under /api/{...} and the catch-alls
        if key and key[0] not in self._known:
            key = ()  # a start no route names: only routes without a literal start can match
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = [route for start, route in self._starts if _agrees(start, key)]
        return found

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self.candidates(scope["path"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is not None:  # a route for the path, not for the method: its 405
            scope["route"] = partial[0]
            scope.update(partial[1])
            await partial[0].handle(scope, receive, send)
            return
        await self.default(scope, receive, send)


def _agrees(start: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """Whether a route beginning with ``start`` can match a path whose first segments are ``key`` (``()``: a
    path no literal start names)."""
    if not start:
        return True
    if not key:
        return False
    return all(a == b for a, b in zip(start, key))
