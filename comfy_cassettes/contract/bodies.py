"""The admin API's bodies and answers as pydantic models: one definition each, read by the server's validation,
ReplayControl's docstrings, the OpenAPI document and the README tables.

Bodies are strict (an unknown key, a string where a number belongs, ``true`` for a count, NaN: all refused);
answers describe what the server sends and are checked against it by the tests.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

# Waits are bounded so that no request can keep a connection (or a fuzzer) waiting for hours.
MAX_WAIT_S = 3600.0


class Body(BaseModel):
    """A request body: unknown keys and loose types are errors, never silently dropped or coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True, defer_build=True)


class Answer(BaseModel):
    """An answer the server sends (documentation and checks; the handlers build plain JSON)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(ge=0, le=MAX_WAIT_S)]
NodeId = Annotated[str, Field(min_length=1, description="a node id of the submitted prompt, e.g. '2'")]

# ------------------------------------------------------------------ journal


_PATTERN = {
    "method": "HTTP method, any case (GET, POST, ...)",
    "path": "route: /prompt also matches /api/prompt; * globs (/history/*)",
    "status": "the status the server answered",
    "body_contains": "text the request body contains",
    "body_json": "a JSON object the body must contain (nested subset; lists compare whole)",
    "query": "query parameters the request must have (values compared as text)",
    "since": "only entries with a larger seq (from an earlier answer)",
}


class PatternFields(Body):
    """What a journal entry must match; every key is optional and they all apply."""

    method: str | None = Field(None, description=_PATTERN["method"])
    path: str | None = Field(None, description=_PATTERN["path"])
    status: int | None = Field(None, description=_PATTERN["status"])
    body_contains: str | None = Field(None, description=_PATTERN["body_contains"])
    body_json: dict[str, Any] | None = Field(None, description=_PATTERN["body_json"])
    query: dict[str, str | int | float | bool] | None = Field(None, description=_PATTERN["query"])
    since: int | None = Field(None, description=_PATTERN["since"])


class JournalPattern(PatternFields):
    """A journal pattern, flat (``{"method": "POST"}``) or nested (``{"pattern": {"method": "POST"}}``)."""

    pattern: PatternFields | None = Field(None, description="the same keys nested under one key, instead of flat")

    @model_validator(mode="after")
    def _flat_or_nested(self) -> JournalPattern:
        if self.pattern is not None and self.flat():
            raise ValueError(f"give the pattern flat or nested under 'pattern', not both (flat keys: {', '.join(sorted(self.flat()))})")
        return self

    def flat(self) -> dict[str, Any]:
        """The pattern keys given at the top level."""
        return {k: v for k, v in self.model_dump(exclude={"pattern"}, exclude_none=True).items() if k in PatternFields.model_fields}

    def effective(self) -> dict[str, Any]:
        """The pattern to apply, whichever form it came in (keys without a value left out)."""
        if self.pattern is not None:
            return self.pattern.model_dump(exclude_none=True)
        return self.flat()


class JournalExpectation(JournalPattern):
    """A pattern and how many requests must match it (neither count, min nor max: at least one)."""

    count: int | None = Field(None, ge=0, description="exactly this many")
    min: int | None = Field(None, ge=0, description="at least this many")
    max: int | None = Field(None, ge=0, description="at most this many")

    def bounds(self) -> dict[str, int]:
        given = {k: v for k, v in (("count", self.count), ("min", self.min), ("max", self.max)) if v is not None}
        return given or {"min": 1}


class JournalQuery(BaseModel):
    """``GET /journal``'s query parameters (text, as query strings are): a subset of the pattern keys."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, defer_build=True)

    method: str | None = Field(None, description=_PATTERN["method"])
    path: str | None = Field(None, description=_PATTERN["path"])
    status: int | None = Field(None, description=_PATTERN["status"])
    body_contains: str | None = Field(None, description=_PATTERN["body_contains"])
    since: int | None = Field(None, description=_PATTERN["since"])


class JournalEntry(Answer):
    """One request the server received and what it answered."""

    seq: int = Field(description="position in the journal, from 1")
    t: float = Field(description="when it arrived, seconds since the epoch")
    method: str = Field(description="the HTTP method (GET, POST, ...; a /ws connection is a GET answered 101)")
    path: str = Field(description="the path as sent (/api/prompt stays /api/prompt)")
    query: dict[str, str] = Field(description="the query parameters, name to value")
    body: str = Field(description="the body as text (over 64 KiB: its size)")
    status: int = Field(description="the status answered (101 for a WebSocket, 0 when the connection was dropped)")
    matched: str = Field(description="what answered: a route, a recording, a fault")
    client: str = Field(description="the client's address:port")
    answer: Any = Field(description="the body of an error answer (status 400 and up), e.g. POST /prompt's {error, "
                                    "node_errors}: JSON when it is JSON, else text (over 64 KiB: its first 64 KiB and size); "
                                    "null for any other answer")


class JournalAnswer(Answer):
    count: int
    entries: list[JournalEntry]
    errors: list[str] = Field(description="errors inside the replay engine since the last reset")


class Found(Answer):
    count: int
    entries: list[JournalEntry]


class Counted(Answer):
    count: int


class Verdict(Answer):
    """The outcome of ``/journal/assert``; ``message`` and ``received`` only when it failed (409)."""

    ok: bool
    count: int = Field(description="how many requests matched")
    expected: str = Field(description="the expectation in words, e.g. 'exactly 3'")
    pattern: dict[str, Any] = Field(description="the pattern applied")
    message: str | None = None
    received: list[str] | None = Field(None, description="the last 50 requests received, 'METHOD /path?query -> status' "
                                                 "(a refused prompt: '... -> 400: invalid prompt: ComfyUI's message')")


class Unmatched(Answer):
    request: str = Field(description="'METHOD /path?query' of the request no route or recording answered")
    closest: list[dict[str, Any]] = Field(description="the closest recorded requests, each with its differences")


class Problems(Answer):
    errors: list[str] = Field(description="errors inside the replay engine (a job it could not run, a cassette it could not answer from), the first 100")
    unmatched: list[Unmatched] = Field(description="requests no route or recording answered (404s) with the closest recordings, the first 100")
    dropped: int = Field(0, description="how many more errors and unmatched requests there were, not kept (absent when none)")


class Cleared(Answer):
    cleared: Literal[True]


class ResetDone(Answer):
    reset: Literal[True]


class State(Answer):
    mode: Literal["static", "dynamic"] = Field(description="static (nothing written) or dynamic (outputs written)")
    timing: Literal["faithful", "floor", "instant", "recorded"] = Field(description="the timing mode")
    seed: int = Field(description="the seed of prompt_ids and temp names")
    cassettes: list[str] = Field(description="the cassette files replayed")
    jobs_recorded: int = Field(description="how many recorded jobs they hold")
    queue_remaining: int = Field(description="jobs running or pending")
    history: int = Field(description="entries in /history")
    output_dir: str = Field(description="the output folder")
    input_dir: str = Field(description="the input folder")
    temp_dir: str = Field(description="the temp folder")
    faults: int = Field(description="active fault rules")
    held: list[str] = Field(description="prompt_ids held by the clock")
    in_flight: int = Field(description="requests received and not answered yet (one a delay fault holds, say)")


# ------------------------------------------------------------------ faults

_ROUTE = Field("*", description="route pattern: /prompt also matches /api/prompt; * globs; * alone is every route")
_METHOD = Field(None, description="only requests with this method")
_COUNT_ONCE = Field(1, description="how many times it fires; null: every time")
_NODE = Field(None, description="the node where it happens (default: the job's last node); a prompt without it is not affected")


class DelayRule(Body):
    """Delay the answers to a route."""

    kind: Literal["delay"]
    route: str = _ROUTE
    method: str | None = _METHOD
    count: Count | None = Field(None, description="how many requests it delays; null (default): every one")
    seconds: Seconds = Field(description="the delay")
    max_seconds: Seconds | None = Field(None, description="when given, a random delay between seconds and this")

    @model_validator(mode="after")
    def _range(self) -> DelayRule:
        if self.max_seconds is not None and self.max_seconds < self.seconds:
            raise ValueError(f"'max_seconds' must be >= 'seconds' ({self.seconds:g}), got {self.max_seconds:g}")
        return self


class StatusRule(Body):
    """Answer requests to a route with an HTTP error (500 answers aiohttp's crash body, like a ComfyUI that raised)."""

    kind: Literal["status"]
    route: str = _ROUTE
    method: str | None = _METHOD
    count: Count | None = _COUNT_ONCE
    status: int = Field(503, ge=400, le=599, description="the HTTP error code, 400-599")
    body: str | None = Field(None, description="the body to send (default: aiohttp's text for the status)")
    headers: dict[str, str] | None = Field(None, description="extra response headers")


class DropRule(Body):
    """Close the connection without an answer."""

    kind: Literal["drop"]
    route: str = _ROUTE
    method: str | None = _METHOD
    count: Count | None = _COUNT_ONCE


class ExecutionErrorRule(Body):
    """The next accepted prompts fail with an ``execution_error`` in the captured shape."""

    kind: Literal["execution_error"]
    count: Count | None = _COUNT_ONCE
    node: NodeId | None = _NODE
    exception_type: str | None = Field(None, description="default 'Exception'")
    exception_message: str | None = Field(None, description="default 'Injected failure (comfy-cassettes fault rule)'")
    traceback: list[str] | None = Field(None, description="the traceback lines to report")


class ExecutionInterruptedRule(Body):
    """The next accepted prompts end in ``execution_interrupted``, as after POST /interrupt."""

    kind: Literal["execution_interrupted"]
    count: Count | None = _COUNT_ONCE
    node: NodeId | None = _NODE


class WsDisconnectRule(Body):
    """Cut the submitting client's WebSocket when a job reaches a node."""

    kind: Literal["ws_disconnect"]
    count: Count | None = _COUNT_ONCE
    node: NodeId | None = Field(None, description="the node where the socket is cut (default: the job's first node)")
    code: int | None = Field(None, ge=1000, le=4999, description="send a close frame with this code; none: cut the TCP connection (clients see 1006)")


class DownRule(Body):
    """Refuse connections (the listening socket is closed, open connections cut) for a while, then serve again."""

    kind: Literal["down"]
    seconds: Seconds = Field(description="how long the server stays down")
    restart: bool = Field(False, description="come back like a restarted ComfyUI: queue and history empty")


FAULT_MODELS: dict[str, type[Body]] = {
    "delay": DelayRule, "status": StatusRule, "drop": DropRule, "execution_error": ExecutionErrorRule,
    "execution_interrupted": ExecutionInterruptedRule, "ws_disconnect": WsDisconnectRule, "down": DownRule,
}
FaultRule = Annotated[
    Union[DelayRule, StatusRule, DropRule, ExecutionErrorRule, ExecutionInterruptedRule, WsDisconnectRule, DownRule],
    Field(discriminator="kind"),
]
FaultRules = Union[FaultRule, list[FaultRule]]
FAULT_RULE: TypeAdapter[Any] = TypeAdapter(FaultRule, config=ConfigDict(defer_build=True))


class ActiveFault(Answer):
    """An active rule: its id, ``remaining`` (null: every time), ``hits``, and the keys of its kind."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    id: str = Field(description="f1, f2, ...: DELETE /faults/{id} removes it")
    kind: Literal["delay", "status", "drop", "execution_error", "execution_interrupted", "ws_disconnect", "down"] = Field(
        description="its kind; the rule's other keys (route, count, node, ...) follow as given")
    remaining: int | None = Field(description="how many more times it acts (null: every time)")
    hits: int = Field(description="how many times it acted")


class FaultState(Answer):
    faults: list[ActiveFault]
    down_for: float = Field(description="seconds until a down period ends (0: serving)")


class FaultsAdded(FaultState):
    added: list[ActiveFault]


# ------------------------------------------------------------------ clock

HoldPoint = Annotated[str, Field(pattern=r"^(queued|finished|node|node:.+|step|step:[^:]+:[^:]+)$",
                                 description="`queued`, `node:<id>`, `node:*` (every node), `step:<id>:<k>`, `step:<id>:*` "
                                             "or `finished`; `node` with a node key, `step` with node and step keys")]


def _step(value: Any) -> Any:
    """One error for a wrong step, not one per branch of the union."""
    if value == "*" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"must be a step number (1, 2, ...) or '*', got {json.dumps(value, default=repr)[:80]}")


Step = Annotated[Union[int, Literal["*"]], BeforeValidator(_step)]


class Hold(Body):
    """Where jobs stop until advanced: ``{"at": "node:2"}``, ``{"at": "node", "node": "2"}``, or a sampler's step
    ``{"at": "step", "node": "3", "step": 2}``."""

    at: HoldPoint | None = Field(None, description="`queued`, `node:<id>`, `node:*`, `step:<id>:<k>`, `step:<id>:*` or "
                                                   "`finished` (or `node`/`step` with the node and step keys)")
    node: NodeId | None = Field(None, description="with at='node' (or alone): hold when this node starts; with at='step': the sampler")
    step: Step | None = Field(
        None, description="with at='step': hold after the sampler's progress k and its preview (a bar shows k/N); '*' every step")
    prompt_id: str | None = Field(None, description="hold only this prompt (default: every job)")


class Advance(Body):
    """Let the held job (the oldest, or ``prompt_id``) go on to its next hold or its end."""

    prompt_id: str | None = Field(None, description="the job to advance (default: the oldest held)")
    timeout: Seconds = Field(5.0, description="seconds to wait for a job to be held, then for it to stop again")


class Wait(Body):
    """Wait until a job is held."""

    prompt_id: str | None = Field(None, description="wait for this job (default: any)")
    at: HoldPoint | None = Field(None, description="held at this point (default: any)")
    timeout: Seconds = Field(5.0, description="seconds to wait before answering 408")


class HoldRule(Answer):
    at: str = Field(description="the hold point")
    prompt_id: str | None = Field(description="the prompt it holds (null: every job)")


class HeldJob(Answer):
    prompt_id: str
    at: str = Field(description="where it waits: `queued`, `node:<id>`, `step:<id>:<k>` or `finished`")
    held_for: float = Field(description="seconds it has been waiting")


class ClockState(Answer):
    holds: list[HoldRule] = Field(description="the hold points, each {at, prompt_id}")
    held: list[HeldJob] = Field(description="the jobs waiting at one, each {prompt_id, at, held_for}")


class Advanced(Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    prompt_id: str = Field(description="the job advanced")
    from_: str = Field(alias="from", description="where it was held")
    to: str = Field(description="its next hold point, 'done', 'deleted', or 'running' (not held again within timeout)")


class WaitTimedOut(ClockState):
    error: str


class Released(Answer):
    released: list[str] = Field(description="the prompt_ids that were held")


# ------------------------------------------------------------------ errors and documents


class Problem(Answer):
    key: str = Field(description="the key at fault ('' for the body as a whole)")
    problem: str


class Refusal(Answer):
    """A refused request: ``error`` says what and, for a bad body, which keys the route accepts."""

    error: str
    problems: list[Problem] | None = None
    accepted: list[str] | None = Field(None, description="the keys this route accepts")


class NoBody(Body):
    """An empty body (or ``{}``): the route takes no options."""
