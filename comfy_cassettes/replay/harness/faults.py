"""Fault rules chosen per test: delays, HTTP errors, dropped connections, failed jobs, a server that goes down.

A rule is a small JSON-able dict, the same through the admin API, the CLI and ReplayControl::

    {"kind": "status", "route": "/prompt", "status": 503, "count": 2}
    {"kind": "delay", "route": "/history/*", "seconds": 0.2, "max_seconds": 0.5}
    {"kind": "drop", "route": "/view", "count": 1}
    {"kind": "execution_error", "count": 1, "node": "2", "exception_message": "CUDA out of memory"}
    {"kind": "execution_interrupted", "count": 1}
    {"kind": "ws_disconnect", "count": 1, "node": "2"}
    {"kind": "down", "seconds": 1.0, "restart": true}     # restart: comes back with empty queue and history

HTTP rules act in the app's fault middleware; job rules are taken by ``ReplayEngine.submit`` for the next
accepted prompts; ``down`` needs a :class:`Listener` (ReplayServer attaches one for uvicorn).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol

from ...comfy.events import execution_error
from ...comfy.protocol import CRASH_BODY, CRASH_HEADERS
from ...comfy.routes import route_matches
from ...errors import AdminRequestError, FaultSpecError

HTTP_KINDS = ("delay", "status", "drop")
JOB_KINDS = ("execution_error", "execution_interrupted", "ws_disconnect")
DEFAULT_EXCEPTION = ("Exception", "Injected failure (comfy-cassettes fault rule)")


@dataclass
class FaultRule:
    """One active rule. ``remaining`` is None for "every time"; ``hits`` counts how often it fired."""

    id: str
    kind: str
    route: str = "*"
    method: str | None = None
    remaining: int | None = None
    seconds: float = 0.0
    max_seconds: float | None = None
    status: int = 503
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    node: str | None = None
    exception_type: str = DEFAULT_EXCEPTION[0]
    exception_message: str = DEFAULT_EXCEPTION[1]
    traceback: list[str] | None = None
    code: int | None = None
    restart: bool = False
    hits: int = 0

    def as_dict(self) -> dict[str, Any]:
        keep = {"id": self.id, "kind": self.kind, "remaining": self.remaining, "hits": self.hits}
        extra: dict[str, dict[str, Any]] = {
            "delay": {"route": self.route, "method": self.method, "seconds": self.seconds, "max_seconds": self.max_seconds},
            "status": {"route": self.route, "method": self.method, "status": self.status, "body": self.body, "headers": self.headers},
            "drop": {"route": self.route, "method": self.method},
            "execution_error": {"node": self.node, "exception_type": self.exception_type, "exception_message": self.exception_message},
            "execution_interrupted": {"node": self.node},
            "ws_disconnect": {"node": self.node, "code": self.code},
            "down": {"seconds": self.seconds, "restart": self.restart},
        }
        return {**keep, **extra[self.kind]}

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method.upper()) and route_matches(self.route, path)

    def take(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def error_status_body(self) -> tuple[bytes, dict[str, str]]:
        """The body and headers of an injected error status: aiohttp's own texts unless the rule gives one."""
        if self.body is not None:
            text = self.body
            content_type = "application/json; charset=utf-8" if text.lstrip().startswith(("{", "[")) else "text/plain; charset=utf-8"
        elif self.status == 500:
            text, content_type = CRASH_BODY.decode(), CRASH_HEADERS["Content-Type"]
        else:
            try:
                reason = HTTPStatus(self.status).phrase
            except ValueError:
                reason = "Error"
            text, content_type = f"{self.status}: {reason}", "text/plain; charset=utf-8"
        headers = {"Content-Type": content_type, **self.headers}
        return text.encode(), headers


def parse_rule(spec: Any, rule_id: str) -> FaultRule:
    """A FaultRule from its JSON form (validated by its kind's model in contract/models.py), or FaultSpecError
    naming the bad key and the keys that kind accepts."""
    from ...contract.routes import parse_fault  # pydantic: only once a rule is given, not on every start-up

    try:
        model = parse_fault(spec)
    except AdminRequestError as exc:
        raise FaultSpecError(str(exc)) from None
    rule = FaultRule(rule_id, model.kind)
    rule.remaining = 1 if rule.kind == "down" else model.count  # None: every time
    for key, value in model.model_dump(exclude_none=True, exclude={"kind", "count"}).items():
        setattr(rule, key, value.upper() if key == "method" else value)
    return rule


def parse_cli_status(text: str) -> dict[str, Any]:
    """``ROUTE:STATUS[:COUNT]`` (``/prompt:503:2``; COUNT omitted = once, ``*`` = always) as a rule spec."""
    parts = text.rsplit(":", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        parts = text.rsplit(":", 1)
    if len(parts) < 2 or not parts[1].isdigit():
        raise FaultSpecError(f"--fault {text!r}: expected ROUTE:STATUS[:COUNT], e.g. /prompt:503:2")
    spec: dict[str, Any] = {"kind": "status", "route": parts[0], "status": int(parts[1])}
    if len(parts) == 3:
        spec["count"] = None if parts[2] == "*" else _cli_int(parts[2], text, "--fault")
    return spec


def parse_cli_delay(text: str) -> dict[str, Any]:
    """``ROUTE:SECONDS[-MAX]`` (``/prompt:0.5`` or ``/history/*:0.1-0.4``) as a rule spec (every request)."""
    route, _, seconds = text.rpartition(":")
    low, _, high = seconds.partition("-")
    try:
        spec: dict[str, Any] = {"kind": "delay", "route": route or "*", "seconds": float(low), "count": None}
        if high:
            spec["max_seconds"] = float(high)
    except ValueError:
        raise FaultSpecError(f"--delay {text!r}: expected ROUTE:SECONDS or ROUTE:MIN-MAX, e.g. /prompt:0.5") from None
    return spec


def _cli_int(value: str, text: str, flag: str) -> int:
    if not value.isdigit():
        raise FaultSpecError(f"{flag} {text!r}: COUNT must be a positive integer or '*'")
    return int(value)


# ---------------------------------------------------------------- what a rule does to a request or a job


class HttpFault(NamedTuple):
    """What the fault middleware does to one request: wait ``delay`` seconds, then answer normally, with an
    error ``status`` rule, or by dropping the connection."""

    delay: float = 0.0
    rule: FaultRule | None = None  # a "status" or "drop" rule, already counted


class JobFault(NamedTuple):
    """A job rule taken by one accepted prompt; ``node`` None means the engine's default node for the kind."""

    kind: str
    node: str | None
    rule: FaultRule
    if_run: bool = False  # fires only if its node runs (not if cached): what fails is the node reading its inputs

    def error_payload(
        self, prompt_id: str, node_id: str | None, workflow: Mapping[str, Any], executed: Sequence[str],
        current_outputs: Sequence[str],
    ) -> dict[str, Any]:
        """``execution_error`` data in the captured shape, with this rule's exception."""
        return execution_error(
            prompt_id, node_id, workflow, executed, current_outputs, exception_type=self.rule.exception_type,
            exception_message=self.rule.exception_message, traceback=self.rule.traceback, timestamp=int(time.time() * 1000),
        )


class Listener(Protocol):
    """The transport side a server attaches so rules can drop connections and take the server down."""

    def drop(self, client: tuple[str, int] | None) -> bool: ...

    def drop_all(self, keep: tuple[str, int] | None = None) -> None: ...

    def connected(self, client: tuple[str, int] | None) -> bool: ...

    def stop_listening(self) -> None: ...

    async def listen_again(self) -> None: ...


class Faults:
    """The active rules of one replay server, in the order they were added."""

    def __init__(self, seed: int = 0, *, on_restart: Callable[[], Awaitable[None]] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 spawn: Callable[[Coroutine[Any, Any, None]], object] = asyncio.ensure_future) -> None:
        self.rules: list[FaultRule] = []
        self.listener: Listener | None = None
        self.on_restart = on_restart  # a `down` fault's restart: what a restarted ComfyUI forgets
        self.on_error = on_error
        # Starts the task that ends a down period; the engine keeps it so stopping the server cancels it.
        self.spawn = spawn
        self.down_until: float = 0.0
        self._seed = seed
        self._rng = random.Random(seed)
        self._first_state = self._rng.getstate()  # put back by each clear: cheaper than seeding again
        self._ids = 0
        self._back: asyncio.TimerHandle | None = None
        self._restart = False
        self._cleared: asyncio.Event | None = None  # set when the rules are cleared: delays under way end

    def clear(self) -> None:
        """Forget every rule and end every delay under way (a down period already under way still ends on time)."""
        self.rules.clear()
        self._rng.setstate(self._first_state)
        cleared, self._cleared = self._cleared, None
        if cleared is not None:
            cleared.set()

    async def wait(self, seconds: float) -> None:
        """A delay rule's wait: ``seconds``, or until the rules are cleared (a reset: the test that set it is over)."""
        if self._cleared is None:
            self._cleared = asyncio.Event()
        try:
            await asyncio.wait_for(self._cleared.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    reset = clear

    def add(self, spec: Any, *, keep: tuple[str, int] | None = None) -> FaultRule:
        """Validate and add one rule; ``down`` starts at once (call from the server's event loop), cutting every
        connection but ``keep`` (the client that asked, so it gets its answer)."""
        self._ids += 1
        rule = parse_rule(spec, f"f{self._ids}")
        if rule.kind == "down":
            rule.take()
            self.go_down(rule.seconds, restart=rule.restart, keep=keep)
        else:
            self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def snapshot(self) -> dict[str, Any]:
        down = max(0.0, self.down_until - time.monotonic())
        return {"faults": [r.as_dict() for r in self.rules], "down_for": round(down, 3)}

    def _prune(self) -> None:
        self.rules = [r for r in self.rules if not r.spent]

    # ------------------------------------------------------------ HTTP

    def for_request(self, method: str, path: str) -> HttpFault | None:
        """Consume the rules that apply to one request: every matching delay, then the first error or drop."""
        delay = 0.0
        chosen: FaultRule | None = None
        for rule in self.rules:
            if rule.kind not in HTTP_KINDS or not rule.matches(method, path):
                continue
            if rule.kind == "delay":
                rule.take()
                high = rule.max_seconds if rule.max_seconds is not None else rule.seconds
                delay += rule.seconds if high == rule.seconds else self._rng.uniform(rule.seconds, high)
            elif chosen is None:
                rule.take()
                chosen = rule
        self._prune()
        if delay == 0.0 and chosen is None:
            return None
        return HttpFault(delay, chosen)

    # ------------------------------------------------------------ jobs

    def for_job(self, workflow: Any) -> list[JobFault]:
        """Consume the job rules an accepted prompt takes: at most one outcome (error or interrupt) and one
        WebSocket disconnect. A rule naming a node only applies to prompts that have that node."""
        taken: list[JobFault] = []
        outcome = disconnect = False
        for rule in self.rules:
            if rule.kind not in JOB_KINDS:
                continue
            if rule.node is not None and not (isinstance(workflow, Mapping) and rule.node in workflow):
                continue
            is_outcome = rule.kind != "ws_disconnect"
            if (outcome and is_outcome) or (disconnect and not is_outcome):
                continue
            rule.take()
            taken.append(JobFault(rule.kind, rule.node, rule))
            outcome, disconnect = outcome or is_outcome, disconnect or not is_outcome
        self._prune()
        return taken

    # ------------------------------------------------------------ down

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    @property
    def down_scheduled(self) -> bool:
        """Whether a down period is under way and its end still to come: what :meth:`end_down` would end. Read
        from another thread, it may be a moment behind the loop's."""
        return self._back is not None

    def go_down(self, seconds: float, *, restart: bool = False, keep: tuple[str, int] | None = None) -> None:
        """Refuse connections for ``seconds``, then listen again; open connections and sockets are cut.
        With ``restart`` the server comes back like a restarted ComfyUI: queue and history gone."""
        if self.listener is None:
            raise FaultSpecError("a 'down' fault needs a server that can stop listening (ReplayServer); this app has none")
        loop = asyncio.get_running_loop()
        self.down_until = time.monotonic() + seconds
        if self._back is not None:
            self._back.cancel()
        # Refused from the first instant: the listening socket closes now. Only the connection that asked stays,
        # for its answer (the admin API closes it after answering).
        self._cut(keep)
        self._restart = restart
        self._back = loop.call_later(seconds, lambda: self.spawn(self._come_back(restart)))

    async def end_down(self) -> bool:
        """End a down period now (a test's teardown must not leave the next test a server that refuses it);
        False when the server was not down."""
        if self._back is None:
            return False
        self._back.cancel()
        await self._come_back(self._restart)
        return True

    def _cut(self, keep: tuple[str, int] | None = None) -> None:
        if self.listener is not None and self.is_down:
            self.listener.stop_listening()
            self.listener.drop_all(keep)

    async def _come_back(self, restart: bool) -> None:
        self._back = None
        if restart and self.on_restart is not None:
            await self.on_restart()
        self.down_until = 0.0
        if self.listener is not None:
            try:
                await self.listener.listen_again()
            except Exception as exc:  # noqa: BLE001 - runs in a timer callback: report it where tests look
                if self.on_error is not None:
                    self.on_error(f"the server could not listen again after a down period: {exc}")
