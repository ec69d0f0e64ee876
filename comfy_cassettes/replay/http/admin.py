"""The control API under ``/__cassettes__``, for tests in any language: reset, state, faults, the manual clock,
and a request journal to query, count and assert on (like WireMock's ``/__admin/requests``).

Every route, body and answer is declared once in ``contract/`` (the table ``ADMIN_ROUTES``, the pydantic models):
this module reads each request strictly against it (a 400 names the unknown or mistyped key and the keys the
route accepts) and acts on the engine. ``GET /__cassettes__/openapi.json`` serves the document built from the
same table. With an admin token (any server not bound to loopback has one) every admin route but the document
answers 401 without ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ...comfy.refusals import request_line
from ...comfy.routes import route_matches
from ...contract import bodies as m
from ...contract.routes import ADMIN_ROUTES, OPENAPI_PATH, AdminRoute, parse_body, parse_query
from ...errors import AdminRequestError, ClockError, FaultSpecError
from ..sim.engine import ReplayEngine
from ..harness.journal import JournalEntry

Handler = Callable[[Any, Request], Awaitable[Response]]


def _contains(container: Any, wanted: Any) -> bool:
    """JSON subset: every key of ``wanted`` is in ``container`` with a matching value (lists compare whole)."""
    if isinstance(wanted, Mapping):
        return isinstance(container, Mapping) and all(k in container and _contains(container[k], v) for k, v in wanted.items())
    return bool(container == wanted)


def entry_matches(entry: JournalEntry, pattern: Mapping[str, Any]) -> bool:
    """Whether one journal entry matches a (validated) pattern."""
    if pattern.get("method") and entry.method != str(pattern["method"]).upper():
        return False
    if pattern.get("path") and not route_matches(str(pattern["path"]), entry.path):
        return False
    if pattern.get("status") is not None and entry.status != pattern["status"]:
        return False
    if pattern.get("since") is not None and entry.seq <= pattern["since"]:
        return False
    if pattern.get("body_contains") and str(pattern["body_contains"]) not in entry.body:
        return False
    if pattern.get("query") and not all(entry.query.get(k) == _as_text(v) for k, v in pattern["query"].items()):
        return False
    if pattern.get("body_json") is not None:
        try:  # a journaled body nested too deep for Python matches nothing
            if not _contains(json.loads(entry.body), pattern["body_json"]):
                return False
        except (ValueError, RecursionError):
            return False
    return True


def _as_text(value: Any) -> str:
    """A pattern's query value as a query string spells it (``true``, not Python's ``True``)."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def find(engine: ReplayEngine, pattern: Mapping[str, Any]) -> list[JournalEntry]:
    return [e for e in engine.journal if entry_matches(e, pattern)]


def verify(engine: ReplayEngine, expectation: m.JournalExpectation) -> tuple[bool, dict[str, Any]]:
    """Check a count expectation; the answer says what was expected and what the server received."""
    pattern = expectation.effective()
    bounds = expectation.bounds()
    count = len(find(engine, pattern))
    ok = (
        ("count" not in bounds or count == bounds["count"])
        and ("min" not in bounds or count >= bounds["min"])
        and ("max" not in bounds or count <= bounds["max"])
    )
    expected = ", ".join(f"{'exactly' if k == 'count' else 'at least' if k == 'min' else 'at most'} {v}" for k, v in bounds.items())
    described = " ".join(f"{k}={v!r}" for k, v in pattern.items()) or "any request"
    result: dict[str, Any] = {"ok": ok, "count": count, "expected": expected, "pattern": pattern}
    if not ok:
        received = [request_line(e.method, e.path, e.query, e.status, e.answer) for e in engine.journal]
        result["message"] = f"expected {expected} request(s) matching {described}, received {count}"
        result["received"] = received[-50:]
    return ok, result


class AdminAuth:
    """Route middleware: without the server's admin token (``Authorization: Bearer <token>``) answer 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            refusal = {"error": "this server's admin API needs its token: send 'Authorization: Bearer <token>' (serve printed "
                                "it, or set it with --admin-token / COMFY_CASSETTES_ADMIN_TOKEN)"}
            await JSONResponse(refusal, 401, headers={"WWW-Authenticate": 'Bearer realm="comfy-cassettes admin"'})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _engine(request: Request) -> ReplayEngine:
    engine: ReplayEngine = request.app.state.engine
    return engine


def _answer(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status)


async def reset(_: Any, request: Request) -> Response:
    engine = _engine(request)
    await engine.reset()
    return _answer({"reset": True})


async def state(_: Any, request: Request) -> Response:
    engine = _engine(request)
    config = engine.config
    return _answer({
        "mode": "dynamic" if config.dynamic else "static",
        "timing": config.timing,
        "seed": config.seed,
        "cassettes": [str(c.path) for c in engine.cassettes],
        "jobs_recorded": len(engine.jobs),
        "queue_remaining": engine.queue_remaining(),
        "history": len(engine.history),
        "output_dir": str(engine.roots.output),
        "input_dir": str(engine.roots.input),
        "temp_dir": str(engine.roots.temp),
        "faults": len(engine.faults.rules),
        "held": [h["prompt_id"] for h in engine.clock.snapshot()["held"]],
        "in_flight": engine.journal.in_flight,
    })


async def journal(query: m.JournalQuery, request: Request) -> Response:
    engine = _engine(request)
    entries = [e.as_dict() for e in find(engine, query.model_dump(exclude_none=True))]
    return _answer({"count": len(entries), "entries": entries, "errors": list(engine.journal.errors)})


async def clear_journal(_: Any, request: Request) -> Response:
    engine = _engine(request)
    engine.journal.clear()
    return _answer({"cleared": True})


async def problems(_: Any, request: Request) -> Response:
    engine = _engine(request)
    return _answer(engine.journal.problems())


async def journal_find(pattern: m.JournalPattern, request: Request) -> Response:
    engine = _engine(request)
    entries = find(engine, pattern.effective())
    return _answer({"count": len(entries), "entries": [e.as_dict() for e in entries]})


async def journal_count(pattern: m.JournalPattern, request: Request) -> Response:
    engine = _engine(request)
    return _answer({"count": len(find(engine, pattern.effective()))})


async def journal_assert(expectation: m.JournalExpectation, request: Request) -> Response:
    engine = _engine(request)
    ok, result = verify(engine, expectation)
    return _answer(result, 200 if ok else 409)


async def get_faults(_: Any, request: Request) -> Response:
    engine = _engine(request)
    return _answer(engine.faults.snapshot())


async def add_faults(rules: list[Any], request: Request) -> Response:
    engine = _engine(request)
    # Validated already: only a down rule on a server that cannot stop listening (an in-process app) fails here.
    client = (request.client.host, request.client.port) if request.client else None
    try:
        added = [engine.faults.add(rule.model_dump(exclude_unset=True), keep=client).as_dict() for rule in rules]
    except FaultSpecError as exc:
        return _answer({"error": str(exc)}, 400)
    response = _answer({"added": added, **engine.faults.snapshot()}, 201)
    if engine.faults.is_down:
        response.headers["Connection"] = "close"  # the one connection a down period kept open, for this answer
    return response


async def clear_faults(_: Any, request: Request) -> Response:
    engine = _engine(request)
    engine.faults.clear()
    return _answer(engine.faults.snapshot())


async def clock(_: Any, request: Request) -> Response:
    engine = _engine(request)
    return _answer(engine.clock.snapshot())


async def clock_hold(hold: m.Hold, request: Request) -> Response:
    engine = _engine(request)
    try:
        engine.clock.hold(hold.at, hold.node, hold.prompt_id, step=hold.step)
    except ClockError as exc:
        return _answer({"error": str(exc), "accepted": list(m.Hold.model_fields)}, 400)
    return _answer(engine.clock.snapshot())


async def clock_advance(advance: m.Advance, request: Request) -> Response:
    engine = _engine(request)
    try:
        return _answer(await engine.clock.advance(advance.prompt_id, timeout=advance.timeout))
    except ClockError as exc:
        return _answer({"error": str(exc)}, 409)


async def clock_wait(wait: m.Wait, request: Request) -> Response:
    engine = _engine(request)
    try:
        held = await engine.clock.wait_held(wait.prompt_id, wait.at, timeout=wait.timeout)
    except ClockError as exc:
        return _answer({"error": str(exc), "accepted": list(m.Wait.model_fields)}, 400)
    if held is None:
        return _answer({"error": f"no matching job was held within {wait.timeout:g} s", **engine.clock.snapshot()}, 408)
    return _answer(held.as_dict())


async def clock_release(_: Any, request: Request) -> Response:
    engine = _engine(request)
    return _answer({"released": engine.clock.release()})


async def remove_fault(params: Mapping[str, str], request: Request) -> Response:
    engine = _engine(request)
    rule_id = params["fault_id"]
    if not engine.faults.remove(rule_id):
        return _answer({"error": f"no active fault rule {rule_id!r}; active: {[r.id for r in engine.faults.rules]}"}, 404)
    return _answer(engine.faults.snapshot())


async def openapi(_: Any, request: Request) -> Response:
    from ...contract.openapi import openapi_document

    return _answer(openapi_document())


# Keyed by the function's own name: the route table (contract/routes.py) names each route's handler.
HANDLERS: dict[str, Handler] = {fn.__name__: fn for fn in (
    reset, state, journal, clear_journal, problems, journal_find, journal_count, journal_assert, get_faults,
    add_faults, clear_faults, clock, clock_hold, clock_advance, clock_wait, clock_release, remove_fault, openapi,
)}


def _endpoint(route: AdminRoute) -> Callable[[Request], Awaitable[Response]]:
    """The route's handler behind the strict reading of its query and body (a 400 names the key)."""
    handler = HANDLERS[route.name]

    async def serve(request: Request) -> Response:
        try:
            keys = [k for k, _ in request.query_params.multi_items()]
            query = parse_query(route, request.query_params, keys)
            parsed = parse_body(route, await request.body()) if route.body is not None else query
        except AdminRequestError as exc:
            return _answer(exc.as_dict(), 400)
        return await handler(request.path_params if route.path_params else parsed, request)

    return serve


def admin_app(token: str | None) -> Router:
    """The admin API as its own app, mounted under ``ADMIN_PREFIX``: one route per row of ``ADMIN_ROUTES``, each
    behind the token when the server has one (the OpenAPI document never is)."""
    guarded = [Middleware(AdminAuth, token=token)] if token else None
    return Router([
        Route(route.path, _endpoint(route), methods=[route.method], middleware=None if route.path == OPENAPI_PATH else guarded)
        for route in ADMIN_ROUTES
    ], default=_no_such_route)


async def _no_such_route(scope: Scope, receive: Receive, send: Send) -> None:
    """A misspelt admin path (``/fault`` for ``/faults``) is a 404 that lists the routes, not a bare "Not Found" a
    harness in another language shows as is."""
    request = Request(scope)
    routes = [route.label for route in ADMIN_ROUTES]
    error = f"{request.method} {request.url.path}: no such admin route; the admin routes are {', '.join(routes)}"
    await _answer({"error": error, "routes": routes}, 404)(scope, receive, send)
