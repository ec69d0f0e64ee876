"""The admin routes as one table (method, path, body, query, answers, the ReplayControl method), and the strict
reading of a request against it: a refusal names the unknown or mistyped key and the keys the route accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import AdminRequestError
from . import ADMIN_PREFIX
from . import bodies as m

# Every admin route lives under this prefix, beside ComfyUI's own routes.
OPENAPI_PATH = "/openapi.json"


@dataclass(frozen=True)
class AdminRoute:
    """One admin route. ``body`` is the JSON body's type (an empty body reads as ``{}``), ``query`` the model of
    its query parameters, ``answers`` the model of each status it answers, ``control`` the ReplayControl
    method(s) that call it."""

    method: str
    path: str
    name: str
    summary: str
    answers: Mapping[int, Any]
    body: Any = None
    query: type[BaseModel] | None = None
    control: tuple[str, ...] = ()
    path_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def full_path(self) -> str:
        return ADMIN_PREFIX + self.path

    @property
    def label(self) -> str:
        return f"{self.method} {self.full_path}"


_BAD = {400: m.Refusal}

ADMIN_ROUTES: tuple[AdminRoute, ...] = (
    AdminRoute("POST", "/reset", "reset", "Forget queue, history, caches, handed-out names, journal, faults and holds",
               {200: m.ResetDone, **_BAD}, body=m.NoBody, control=("reset",)),
    AdminRoute("GET", "/state", "state", "Mode, timing, seed, cassettes, folders, queue and history sizes, faults, held jobs",
               {200: m.State, **_BAD}, query=m.NoBody, control=("state",)),
    AdminRoute("GET", "/journal", "journal", "The requests received that match the query, oldest first",
               {200: m.JournalAnswer, **_BAD}, query=m.JournalQuery, control=("journal",)),
    AdminRoute("DELETE", "/journal", "clear_journal", "Forget the requests received", {200: m.Cleared, **_BAD},
               body=m.NoBody, control=("clear_journal",)),
    AdminRoute("GET", "/problems", "problems", "Engine errors and unmatched requests since the last reset",
               {200: m.Problems, **_BAD}, query=m.NoBody, control=("problems", "check")),
    AdminRoute("POST", "/journal/find", "journal_find", "The requests that match a pattern",
               {200: m.Found, **_BAD}, body=m.JournalPattern, control=("find",)),
    AdminRoute("POST", "/journal/count", "journal_count", "How many requests match a pattern",
               {200: m.Counted, **_BAD}, body=m.JournalPattern, control=("count",)),
    AdminRoute("POST", "/journal/assert", "journal_assert", "Check how many requests match: 200, or 409 with what was received",
               {200: m.Verdict, 409: m.Verdict, **_BAD}, body=m.JournalExpectation,
               control=("assert_requested", "assert_not_requested")),
    AdminRoute("GET", "/faults", "get_faults", "The active fault rules", {200: m.FaultState, **_BAD}, query=m.NoBody,
               control=("faults",)),
    AdminRoute("POST", "/faults", "add_faults", "Add a fault rule, or a list of them (a down rule starts at once)",
               {201: m.FaultsAdded, **_BAD}, body=m.FaultRules,
               control=("add_fault", "fail", "delay", "drop", "fail_jobs", "interrupt_jobs", "disconnect_ws", "down")),
    AdminRoute("DELETE", "/faults", "clear_faults", "Remove every fault rule", {200: m.FaultState, **_BAD}, body=m.NoBody,
               control=("clear_faults",)),
    AdminRoute("DELETE", "/faults/{fault_id}", "remove_fault", "Remove one fault rule",
               {200: m.FaultState, 404: m.Refusal, **_BAD}, body=m.NoBody, control=("remove_fault",),
               path_params={"fault_id": "a rule id from POST /faults (f1, f2, ...)"}),
    AdminRoute("GET", "/clock", "clock", "Holds and held jobs", {200: m.ClockState, **_BAD}, query=m.NoBody, control=("clock",)),
    AdminRoute("POST", "/clock/hold", "clock_hold", "Hold jobs at a point until advanced (docs/control.md: the clock at node boundaries)",
               {200: m.ClockState, **_BAD}, body=m.Hold, control=("hold",)),
    AdminRoute("POST", "/clock/advance", "clock_advance", "Let a held job go on to its next hold or its end; 409 when none is held",
               {200: m.Advanced, 409: m.Refusal, **_BAD}, body=m.Advance, control=("advance",)),
    AdminRoute("POST", "/clock/wait", "clock_wait", "Wait until a job is held; 408 when none is within timeout",
               {200: m.HeldJob, 408: m.WaitTimedOut, **_BAD}, body=m.Wait, control=("wait_held",)),
    AdminRoute("POST", "/clock/release", "clock_release", "Remove every hold and let held jobs run on",
               {200: m.Released, **_BAD}, body=m.NoBody, control=("release",)),
    AdminRoute("GET", OPENAPI_PATH, "openapi", "This document: the admin API and the ComfyUI routes the replay serves (no token needed)",
               {200: dict[str, Any], **_BAD}, query=m.NoBody, control=("openapi",)),
)
ROUTES_BY_NAME = {route.name: route for route in ADMIN_ROUTES}

_adapters: dict[int, TypeAdapter[Any]] = {}


def adapter(body: Any) -> TypeAdapter[Any]:
    """The (cached) TypeAdapter of a body type."""
    found = _adapters.get(id(body))
    if found is None:
        found = _adapters[id(body)] = TypeAdapter(body)
    return found


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json(raw: bytes) -> Any:
    """A request body as JSON; an empty body is ``{}``. NaN and Infinity, which Python's json takes, are refused."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise AdminRequestError(f"the request body is not JSON: {exc}") from None


def accepted_keys(body: Any) -> list[str]:
    """The keys a body type accepts (for a fault rule: every kind's, with the kind)."""
    if isinstance(body, type) and issubclass(body, BaseModel):
        return list(body.model_fields)
    if body is m.FaultRules:
        return sorted({key for model in m.FAULT_MODELS.values() for key in model.model_fields})
    return []


def parse_body(route: AdminRoute, raw: bytes) -> Any:
    """The route's body, validated; AdminRequestError (a 400) naming the bad keys and the accepted ones."""
    data = read_json(raw)
    if route.body is m.FaultRules:
        rules = data if isinstance(data, list) else [data]
        return [parse_fault(rule, where=f"{route.label}: fault rule" + (f" #{i}" if len(rules) > 1 else "")) for i, rule in enumerate(rules)]
    return validate(route.body, data, where=route.label)


def parse_query(route: AdminRoute, params: Mapping[str, str], keys: list[str]) -> Any:
    """The route's query parameters, validated (a repeated parameter is an error, not a silent first-wins)."""
    model = route.query or m.NoBody
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise AdminRequestError(f"{route.label}: query parameter(s) {', '.join(repeated)} given more than once",
                                accepted=list(model.model_fields))
    return validate(model, dict(params), where=f"{route.label} query")


def parse_fault(spec: Any, *, where: str = "fault rule") -> Any:
    """One fault rule (a model of its kind), or AdminRequestError naming the key and that kind's keys."""
    if isinstance(spec, Mapping) and isinstance(spec.get("kind"), str) and spec["kind"] in m.FAULT_MODELS:
        model = m.FAULT_MODELS[str(spec["kind"])]
        return validate(model, spec, where=f"{where} of kind {spec['kind']!r}")
    kinds = ", ".join(m.FAULT_MODELS)
    if not isinstance(spec, Mapping):
        raise AdminRequestError(f"{where}: must be a JSON object with 'kind' ({kinds}), got {type(spec).__name__}")
    raise AdminRequestError(f"{where}: 'kind' must be one of {kinds}, got {spec.get('kind')!r}",
                            problems=[{"key": "kind", "problem": f"must be one of {kinds}"}], accepted=["kind"])


def validate(body: Any, data: Any, *, where: str) -> Any:
    """``data`` as ``body`` (a model or type), or AdminRequestError saying which keys are wrong and how."""
    if isinstance(body, type) and issubclass(body, BaseModel) and not isinstance(data, Mapping):
        raise AdminRequestError(f"{where}: the body must be a JSON object, got {_json_type(data)}", accepted=accepted_keys(body))
    try:
        return adapter(body).validate_python(data)
    except ValidationError as exc:
        problems = explain(exc, body)
        accepted = accepted_keys(body)
        text = "; ".join(f"{p['key']!r}: {p['problem']}" if p["key"] else p["problem"] for p in problems)
        raise AdminRequestError(f"{where}: {text}; accepted keys: {', '.join(accepted) or '(none)'}",
                                problems=problems, accepted=accepted) from None


def explain(exc: ValidationError, body: Any) -> list[dict[str, str]]:
    """Pydantic's errors as ``{key, problem}``, in words a user of any language reads: the field's description
    is given with a type or range error, so the message says what the key is for."""
    fields = body.model_fields if isinstance(body, type) and issubclass(body, BaseModel) else {}
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            problem = "unknown key"
        elif kind == "missing":
            problem = "required"
        elif kind == "value_error":
            problem = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            problem = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {json.dumps(error.get('input'), default=repr)[:80]}"
            described = fields.get(loc[0]).description if loc and loc[0] in fields else None  # type: ignore[union-attr]
            if described:
                problem += f" ({described})"
        problems.append({"key": key, "problem": problem})
    return problems


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


F = TypeVar("F", bound=Callable[..., Any])


def documents(route_name: str, model: type[BaseModel] | None = None, *, fixed: tuple[str, ...] = ("kind",)) -> Callable[[F], F]:
    """Decorate a ReplayControl method with the docs of the body it sends: its docstring gains the route and one
    line per key, from the model's descriptions (tests check the signature against the same model)."""
    route = ROUTES_BY_NAME[route_name]

    def decorate(function: F) -> F:
        body = model or (route.query if route.method == "GET" else route.body)
        lines = [f"Calls ``{route.label}``."]
        if isinstance(body, type) and issubclass(body, BaseModel):
            for name, info in body.model_fields.items():
                if name in fixed or name == "pattern":
                    continue
                default = "" if info.is_required() else f" (default {info.default!r})"
                lines.append(f"    ``{name}``{default}: {info.description or ''}".rstrip(": "))
        doc = (function.__doc__ or "").rstrip()
        function.__doc__ = f"{doc}\n\n        " + "\n        ".join(lines) + "\n"
        setattr(function, "__admin_route__", (route, body))
        return function

    return decorate
