"""The control API under a reserved prefix, for tests in any language: reset, state, faults, the manual clock,
and a request journal to query, count and assert on (like WireMock's ``/__admin/requests``).

Routes (all JSON)::

    POST   /reset                       forget queue, history, caches, journal, faults and holds
    GET    /state
    GET    /journal?method=&path=&status=&body_contains=&since=     matching entries, oldest first
    DELETE /journal
    GET    /problems                    engine errors and unmatched requests since the last reset
    POST   /journal/find   {pattern}    -> {"count", "entries"}
    POST   /journal/count  {pattern}    -> {"count"}
    POST   /journal/assert {pattern, "count"|"min"|"max"}  -> 200 {"ok": true} or 409 with what was received
    GET    /faults | POST /faults {rule or [rules]} | DELETE /faults | DELETE /faults/{id}
    GET    /clock | POST /clock/hold {"at", "node"?, "prompt_id"?} | POST /clock/advance {"prompt_id"?, "timeout"?}
    POST   /clock/wait {"prompt_id"?, "at"?, "timeout"?} | POST /clock/release

A journal pattern has any of ``method``, ``path`` (``/prompt`` also matches ``/api/prompt``; ``*`` globs),
``status``, ``body_contains``, ``body_json`` (an object the JSON body must contain), ``query`` (parameters
the request must have), ``since`` (only entries with a larger ``seq``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..comfy.routes import route_matches
from ..errors import ClockError, FaultSpecError, PatternError
from .engine import ReplayEngine
from .journal import JournalEntry

PATTERN_KEYS = {"method", "path", "status", "body_contains", "body_json", "query", "since"}
EXPECT_KEYS = {"count", "min", "max"}



def _contains(container: Any, wanted: Any) -> bool:
    """JSON subset: every key of ``wanted`` is in ``container`` with a matching value (lists compare whole)."""
    if isinstance(wanted, Mapping):
        return isinstance(container, Mapping) and all(k in container and _contains(container[k], v) for k, v in wanted.items())
    return bool(container == wanted)


def check_pattern(pattern: Any, allowed: set[str] = PATTERN_KEYS) -> dict[str, Any]:
    if pattern is None:
        return {}
    if not isinstance(pattern, Mapping):
        raise PatternError(f"journal pattern must be a JSON object, got {type(pattern).__name__}")
    unknown = set(pattern) - allowed
    if unknown:
        raise PatternError(f"unknown journal pattern key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    for key in ("status", "since"):
        if pattern.get(key) is not None and (isinstance(pattern[key], bool) or not isinstance(pattern[key], int)):
            raise PatternError(f"journal pattern {key!r} must be an integer, got {pattern[key]!r}")
    for key in ("body_json", "query"):
        if pattern.get(key) is not None and not isinstance(pattern[key], Mapping):
            raise PatternError(f"journal pattern {key!r} must be a JSON object, got {pattern[key]!r}")
    return dict(pattern)


def entry_matches(entry: JournalEntry, pattern: Mapping[str, Any]) -> bool:
    """Whether one journal entry matches a (checked) pattern."""
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
    if pattern.get("query") and not all(entry.query.get(k) == str(v) for k, v in pattern["query"].items()):
        return False
    if pattern.get("body_json") is not None:
        try:
            body = json.loads(entry.body)
        except ValueError:
            return False
        if not _contains(body, pattern["body_json"]):
            return False
    return True


def find(engine: ReplayEngine, pattern: Mapping[str, Any]) -> list[JournalEntry]:
    return [e for e in engine.journal if entry_matches(e, pattern)]


def verify(engine: ReplayEngine, spec: Any) -> tuple[bool, dict[str, Any]]:
    """Check a count expectation; the answer says what was expected and what the server received."""
    if not isinstance(spec, Mapping):
        raise PatternError("journal assertion must be a JSON object: a pattern plus 'count', 'min' or 'max'")
    pattern = check_pattern({k: v for k, v in spec.items() if k not in EXPECT_KEYS})
    bounds = {k: spec[k] for k in EXPECT_KEYS if spec.get(k) is not None}
    for key, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PatternError(f"journal assertion {key!r} must be a non-negative integer, got {value!r}")
    if not bounds:
        bounds = {"min": 1}
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
        received = [f"{e.method} {e.path}{'?' + '&'.join(f'{k}={v}' for k, v in e.query.items()) if e.query else ''} -> {e.status}" for e in engine.journal]
        result["message"] = f"expected {expected} request(s) matching {described}, received {count}"
        result["received"] = received[-50:]
    return ok, result


def admin_routes(engine: ReplayEngine, prefix: str) -> list[BaseRoute]:
    """Routes under ``prefix`` (``/__cassettes__``)."""

    async def body(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise PatternError(f"request body is not JSON: {exc}") from None

    def bad(message: str, status: int = 400) -> Response:
        return JSONResponse({"error": message}, status)

    async def reset(request: Request) -> Response:
        await engine.reset()
        return JSONResponse({"reset": True})

    async def journal(request: Request) -> Response:
        q = request.query_params
        try:
            pattern = check_pattern({
                k: int(v) if k in ("status", "since") and v.lstrip("-").isdigit() else v
                for k, v in q.items() if k in ("method", "path", "status", "body_contains", "since")
            })
        except PatternError as exc:
            return bad(str(exc))
        entries = [e.as_dict() for e in find(engine, pattern)]
        return JSONResponse({"count": len(entries), "entries": entries, "errors": list(engine.journal.errors)})

    async def journal_find(request: Request) -> Response:
        try:
            entries = find(engine, check_pattern(await body(request)))
        except PatternError as exc:
            return bad(str(exc))
        return JSONResponse({"count": len(entries), "entries": [e.as_dict() for e in entries]})

    async def journal_count(request: Request) -> Response:
        try:
            return JSONResponse({"count": len(find(engine, check_pattern(await body(request))))})
        except PatternError as exc:
            return bad(str(exc))

    async def journal_assert(request: Request) -> Response:
        try:
            ok, result = verify(engine, await body(request) or {})
        except PatternError as exc:
            return bad(str(exc))
        return JSONResponse(result, 200 if ok else 409)

    async def problems(request: Request) -> Response:
        return JSONResponse(engine.journal.problems())

    async def clear_journal(request: Request) -> Response:
        engine.journal.clear()
        return JSONResponse({"cleared": True})

    async def state(request: Request) -> Response:
        config = engine.config
        return JSONResponse(
            {
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
            }
        )

    # ------------------------------------------------------------ faults

    async def get_faults(request: Request) -> Response:
        return JSONResponse(engine.faults.snapshot())

    async def add_faults(request: Request) -> Response:
        try:
            spec = await body(request)
        except PatternError as exc:
            return bad(str(exc))
        specs = spec if isinstance(spec, list) else [spec]
        added = []
        try:
            for one in specs:
                added.append(engine.faults.add(one).as_dict())
        except FaultSpecError as exc:
            return bad(str(exc))
        return JSONResponse({"added": added, **engine.faults.snapshot()}, 201)

    async def clear_faults(request: Request) -> Response:
        engine.faults.clear()
        return JSONResponse(engine.faults.snapshot())

    async def remove_fault(request: Request) -> Response:
        rule_id = request.path_params["fault_id"]
        if not engine.faults.remove(rule_id):
            return bad(f"no active fault rule {rule_id!r}; active: {[r.id for r in engine.faults.rules]}", 404)
        return JSONResponse(engine.faults.snapshot())

    # ------------------------------------------------------------ clock

    async def get_clock(request: Request) -> Response:
        return JSONResponse(engine.clock.snapshot())

    async def clock_hold(request: Request) -> Response:
        try:
            spec = await body(request) or {}
            if not isinstance(spec, Mapping):
                raise PatternError("hold must be a JSON object such as {\"at\": \"node:2\"}")
            engine.clock.hold(spec.get("at"), spec.get("node"), spec.get("prompt_id"))
        except (PatternError, ClockError) as exc:
            return bad(str(exc))
        return JSONResponse(engine.clock.snapshot())

    async def clock_advance(request: Request) -> Response:
        try:
            spec = await body(request) or {}
            result = await engine.clock.advance(spec.get("prompt_id"), timeout=float(spec.get("timeout", 5.0)))
        except ClockError as exc:
            return bad(str(exc), 409)
        except (PatternError, TypeError, ValueError) as exc:
            return bad(str(exc))
        return JSONResponse(result)

    async def clock_wait(request: Request) -> Response:
        try:
            spec = await body(request) or {}
            held = await engine.clock.wait_held(spec.get("prompt_id"), spec.get("at"), timeout=float(spec.get("timeout", 5.0)))
        except (PatternError, ClockError, TypeError, ValueError) as exc:
            return bad(str(exc))
        if held is None:
            return JSONResponse({"error": "no matching job was held in time", **engine.clock.snapshot()}, 408)
        return JSONResponse(held.as_dict())

    async def clock_release(request: Request) -> Response:
        return JSONResponse({"released": engine.clock.release()})

    return [
        Route(f"{prefix}/reset", reset, methods=["POST"]),
        Route(f"{prefix}/state", state, methods=["GET"]),
        Route(f"{prefix}/journal", journal, methods=["GET"]),
        Route(f"{prefix}/journal", clear_journal, methods=["DELETE"]),
        Route(f"{prefix}/problems", problems, methods=["GET"]),
        Route(f"{prefix}/journal/find", journal_find, methods=["POST"]),
        Route(f"{prefix}/journal/count", journal_count, methods=["POST"]),
        Route(f"{prefix}/journal/assert", journal_assert, methods=["POST"]),
        Route(f"{prefix}/faults", get_faults, methods=["GET"]),
        Route(f"{prefix}/faults", add_faults, methods=["POST"]),
        Route(f"{prefix}/faults", clear_faults, methods=["DELETE"]),
        Route(f"{prefix}/faults/{{fault_id}}", remove_fault, methods=["DELETE"]),
        Route(f"{prefix}/clock", get_clock, methods=["GET"]),
        Route(f"{prefix}/clock/hold", clock_hold, methods=["POST"]),
        Route(f"{prefix}/clock/advance", clock_advance, methods=["POST"]),
        Route(f"{prefix}/clock/wait", clock_wait, methods=["POST"]),
        Route(f"{prefix}/clock/release", clock_release, methods=["POST"]),
    ]
