"""Starlette's Router, finding a request's route among the few that could match it instead of trying ~150 in turn,
and calling a plain handler route's function itself.

The replay has every ComfyUI route twice (``/x`` and ``/api/x``), the admin API, the web page's routes and
catch-alls: Starlette's linear scan cost more per request than the handlers of the hot routes. A route can only
match paths that start with its literal segments (those before its first ``{param}``), so the candidates for a
request are the routes whose literal start agrees with the request's first segment (first two under ``/api``),
kept in their order: the first full match is the same route Starlette would pick.

A route whose path has only literal segments, ``{name}`` segments and a final ``{name:path}`` is matched by
comparing segments (what its regex says, without the regex), and when its app is Starlette's bare
``request_response(function)`` the function is awaited directly: with no exception handlers registered, Starlette's
wrappers around it only re-raise, and the middleware answers what a handler raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route, Router, request_response
from starlette.types import Receive, Scope, Send

from .answers import Handler

_API = "api"  # ComfyUI's alias prefix: the second segment tells routes apart
_RESOLVED_KEPT = 512  # parameterless paths resolved kept (the page's files, the API's fixed routes)
_COUNTS_KEPT = 16  # candidates are kept per path length up to this many parts (longer paths: one list)
_BARE_APP = f"{request_response.__qualname__}.<locals>.app"  # the app Route makes of a function, with no middleware


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


class _Plain:
    """A Route matched by its segments: literal text, ``{name}`` (str: one non-empty segment) or a last
    ``{name:path}`` (the rest of the path), with its function when Starlette would only wrap it."""

    __slots__ = ("route", "segments", "rest", "methods", "endpoint", "_literal", "_named")

    def __init__(self, route: Route, segments: list[str | tuple[str]], rest: str | None) -> None:
        self.route = route
        self.segments = segments  # a str is literal, a 1-tuple names a parameter
        self.rest = rest  # the final path parameter's name
        # Where in a split path each literal and each parameter is: compared and read without walking the segments.
        self._literal = [(at, segment) for at, segment in enumerate(segments, 1) if isinstance(segment, str)]
        self._named = [(at, segment[0]) for at, segment in enumerate(segments, 1) if not isinstance(segment, str)]
        self.methods = route.methods
        bare = getattr(route.app, "__qualname__", None) == _BARE_APP and inspect.iscoroutinefunction(route.endpoint)
        self.endpoint: Handler | None = route.endpoint if bare else None

    @classmethod
    def of(cls, route: BaseRoute) -> _Plain | None:
        """The segment matcher of ``route``, or None when only its regex can say what it matches."""
        if type(route) is not Route or not route.path.startswith("/"):
            return None
        segments: list[str | tuple[str]] = []
        parts = route.path.split("/")[1:]
        rest = None
        for position, part in enumerate(parts):
            if "{" not in part:
                segments.append(part)
                continue
            name, _, convertor = part[1:-1].partition(":")
            if not (part.startswith("{") and part.endswith("}") and name.isidentifier()):
                return None
            if convertor in ("", "str"):
                segments.append((name,))
            elif convertor == "path" and position == len(parts) - 1:
                rest = name
            else:
                return None
        return cls(route, segments, rest)

    def fits(self, count: int) -> bool:
        """Whether a path of ``count`` "/"-separated parts can match (a cheap test before :meth:`match`)."""
        return count == len(self.segments) + 1 if self.rest is None else count >= len(self.segments) + 2

    def match(self, parts: list[str]) -> dict[str, Any] | None:
        """The path parameters when the path split at "/" into ``parts`` matches, else None."""
        size = len(self.segments)
        if parts[0] != "" or (len(parts) != size + 1 if self.rest is None else len(parts) < size + 2):
            return None  # (what fits() says)
        for at, text in self._literal:
            if parts[at] != text:
                return None
        params: dict[str, Any] = {}
        for at, name in self._named:
            part = parts[at]
            if not part:
                return None
            params[name] = part
        if self.rest is not None:
            params[self.rest] = "/".join(parts[size + 1:])
        return params


class AppState(State):
    """``request.app.state`` whose values are plain attributes too: Starlette's State answers each read through
    ``__getattr__``, a Python call, and every handler reads the engine so (``engine_of``)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__(state)
        self.__dict__.update(self._state)

    def __setattr__(self, key: Any, value: Any) -> None:
        super().__setattr__(key, value)
        self.__dict__[key] = value

    def __delattr__(self, key: Any) -> None:
        super().__delattr__(key)
        self.__dict__.pop(key, None)

    def __setitem__(self, key: str, value: Any) -> None:
        self.__setattr__(key, value)

    def __delitem__(self, key: str) -> None:
        self.__delattr__(key)


class IndexedRouter(Router):
    """A Router whose http and websocket dispatch tries only the routes that can match the request's path."""

    def __init__(self, routes: Sequence[BaseRoute], state: State | None = None, **options: Any) -> None:
        super().__init__(routes=routes, **options)
        self.state = state if state is not None else AppState()  # request.app.state, as in a Starlette app: how module-level handlers find the engine
        self._starts = [(_literal_start(route), route) for route in self.routes]
        self._known = {start[0] for start, _ in self._starts if start}
        self._known_api = {start[1] for start, _ in self._starts if len(start) > 1 and start[0] == _API}
        # (literal start, parts or None) -> the routes that could match, each with its segment matcher (or None)
        self._candidates: dict[tuple[tuple[str, ...], int | None], list[tuple[BaseRoute, _Plain | None]]] = {}
        self._plain = {id(route): _Plain.of(route) for route in self.routes}
        # _by_start's: by (under /api) segment, then number of parts
        self._starting: dict[bool, dict[str, dict[int, list[tuple[BaseRoute, _Plain | None]]]]] = {False: {}, True: {}}
        # (path, method) -> route, endpoint, handler: resolved requests whose route takes no path parameters.
        self._resolved: dict[tuple[str, str], tuple[BaseRoute, Any, Handler | None]] = {}

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that could match ``path``, in the router's order (cached per known first segments)."""
        return [route for route, _ in self._pairs(_key(path), None)]

    def _by_start(self, parts: list[str]) -> list[tuple[BaseRoute, _Plain | None]]:
        """:meth:`_pairs` for a path split at "/" into ``parts``, kept by its first segment (the second under /api)
        and number of parts when a route names that segment: lookups by a string and an int, not a tuple hashed."""
        count = len(parts)
        first = parts[1] if count > 1 else ""
        api = first == _API and count > 2
        name = parts[2] if api else first
        table = self._starting[api]
        by_count = table.get(name)
        found = by_count.get(count) if by_count is not None else None
        if found is None:
            found = self._pairs(tuple(parts[1:3]) if first == _API else tuple(parts[1:2]), count)
            if (name in self._known_api if api else name in self._known and first != _API) and count <= _COUNTS_KEPT:
                table.setdefault(name, {})[count] = found
        return found

    def _pairs(self, key: tuple[str, ...], count: int | None) -> list[tuple[BaseRoute, _Plain | None]]:
        """:meth:`candidates` for a path whose first segments (first two under /api) are ``key``, each with its
        segment matcher (None: only its regex can say)."""
        if len(key) > 1 and key[1] not in self._known_api:
            key = key[:1]  # /api/<a name no route has>: the routes under /api/{...} and the catch-alls
        if key and key[0] not in self._known:
            key = ()  # a start no route names: only routes without a literal start can match
        if count is not None and count > _COUNTS_KEPT:
            count = None
        found = self._candidates.get((key, count))
        if found is None:
            plain = self._plain
            found = self._candidates[(key, count)] = [
                (route, plain[id(route)]) for start, route in self._starts if _agrees(start, key)
                and (count is None or (fitting := plain[id(route)]) is None or fitting.fits(count))
            ]
        return found

    def resolve(self, scope: Scope) -> tuple[BaseRoute | None, Scope, Handler | None]:
        """The route Starlette's Router would hand ``scope`` to (the first full match, else the first route for the
        path but not the method: its 405; None: no route), the scope entries it adds, and the handler function to
        await directly when Starlette would only wrap it. An HTTP path resolved to a route without path parameters
        is answered from :attr:`_resolved` the next time (a function of the path and method alone there)."""
        key = None
        if scope["type"] == "http" and not scope.get("root_path") and not scope.get("path_params"):
            key = (scope["path"], scope["method"])
            known = self._resolved.get(key)
            if known is not None:
                return known[0], {"endpoint": known[1], "path_params": {}}, known[2]
        route, child_scope, handler = found = self._resolve(scope)
        if (key is not None and route is not None and len(self._resolved) < _RESOLVED_KEPT
                and child_scope.keys() == {"endpoint", "path_params"} and not child_scope["path_params"]):
            self._resolved[key] = (route, child_scope["endpoint"], handler)
        return found

    def _resolve(self, scope: Scope) -> tuple[BaseRoute | None, Scope, Handler | None]:
        partial: tuple[BaseRoute, Scope] | None = None
        path = scope["path"]
        if scope["type"] == "http" and not scope.get("root_path"):
            parts = path.split("/")  # (its [1:3] is what _key splits off)
            pairs = self._by_start(parts)
        else:  # the regex of every route
            parts, pairs = [], [(route, None) for route in self.candidates(path)]
        for route, plain in pairs:
            if plain is None:
                match, child_scope = route.matches(scope)
            else:
                params = plain.match(parts)
                if params is None:
                    continue
                inherited = scope.get("path_params")
                child_scope = {"endpoint": plain.route.endpoint, "path_params": {**inherited, **params} if inherited else params}
                if not plain.methods or scope["method"] in plain.methods:
                    return route, child_scope, plain.endpoint
                match = Match.PARTIAL
            if match is Match.FULL:
                return route, child_scope, None
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        return (partial[0], partial[1], None) if partial is not None else (None, {}, None)

    def enter(self, scope: Scope) -> tuple[BaseRoute | None, Handler | None]:
        """Resolve ``scope`` as Router.app does, adding the router, route and path parameters to it: the route (None:
        none, the default answers) and the handler to await directly (None: :meth:`follow` the route)."""
        scope.setdefault("router", self)
        route, child_scope, handler = self.resolve(scope)
        if route is not None:
            scope["route"] = route
            scope.update(child_scope)
        return route, handler

    async def follow(self, route: BaseRoute | None, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand an :meth:`enter`-ed request to its route's own app (or, for None, the router's default)."""
        if route is None:
            await self.default(scope, receive, send)
        else:
            await route.handle(scope, receive, send)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await super().app(scope, receive, send)
            return
        route, handler = self.enter(scope)
        if handler is not None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)
        else:
            await self.follow(route, scope, receive, send)


def _agrees(start: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """Whether a route beginning with ``start`` can match a path whose first segments are ``key`` (``()``: a
    path no literal start names)."""
    if not start:
        return True
    if not key:
        return False
    return all(a == b for a, b in zip(start, key))
