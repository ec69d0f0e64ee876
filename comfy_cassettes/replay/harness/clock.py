"""The manual clock: hold jobs at a chosen point (queued, running node K, finished) and advance them by hand.

A test sets holds like breakpoints, watches what a client shows while a job waits there (queue position,
progress, a running prompt it can interrupt), then advances the job to its next hold or releases everything::

    clock.hold("node:2")                  # every job stops right after ComfyUI says it runs node 2
    await clock.wait_held(prompt_id)      # -> {"prompt_id": ..., "at": "node:2", ...}
    await clock.advance(prompt_id)        # -> {"from": "node:2", "to": "done"}

Points: ``queued`` (before the worker takes the job; it stays in ``queue_pending``), ``node:<id>`` (after the
node's ``executing`` message, before its outputs), ``node:*`` (every node: step node by node), ``step:<id>:<k>``
(after a sampler's ``progress`` k: a progress bar shows k/N), ``step:<id>:*`` (every step of that sampler),
``finished`` (after the terminal message — execution_success/error/interrupted — before the history entry is
written).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ...comfy.protocol import MAXIMUM_HISTORY_SIZE
from ...errors import ClockError

POINTS = ("queued", "node:<id>", "node:*", "step:<id>:<k>", "step:<id>:*", "finished")


def parse_point(at: Any, node: Any = None, step: Any = None) -> str:
    """A hold point from ``at`` (``queued``, ``finished``, ``node:K``, ``step:K:N``...), or from ``at="node"``
    with ``node``, or ``at="step"`` with ``node`` and ``step`` (``*`` for every step)."""
    if at == "step" and node is not None:
        return f"step:{node}:{'*' if step is None else step}"
    if at in (None, "node") and node is not None and step is None:
        return f"node:{node}"
    if at in ("queued", "finished"):
        return str(at)
    if isinstance(at, str) and at.startswith("node:") and len(at) > 5:
        return at
    if isinstance(at, str) and at.count(":") == 2 and at.startswith("step:") and all(at.split(":")[1:]):
        return at
    raise ClockError(f"hold point must be one of {', '.join(POINTS)} (or at='node' with node=<id>, at='step' with node=<id> "
                     f"and step=<k>), got at={at!r} node={node!r} step={step!r}")


@dataclass(frozen=True)
class Hold:
    """A breakpoint: ``at`` for every job, or only for ``prompt_id``."""

    at: str
    prompt_id: str | None = None

    def applies(self, prompt_id: str, point: str) -> bool:
        if self.prompt_id is not None and self.prompt_id != prompt_id:
            return False
        if self.at.endswith("*"):
            return point.startswith(self.at[:-1])
        return self.at == point


@dataclass
class Held:
    """A job waiting at a hold point."""

    prompt_id: str
    at: str
    since: float = field(default_factory=time.monotonic)
    permit: asyncio.Event = field(default_factory=asyncio.Event)

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "at": self.at, "held_for": round(time.monotonic() - self.since, 3)}


FINISHED_KEPT = MAXIMUM_HISTORY_SIZE  # finished jobs the clock remembers for advance(): as many as history keeps


class Clock:
    """Holds and held jobs of one engine. Every method runs on the engine's event loop."""

    def __init__(self) -> None:
        self.holds: list[Hold] = []
        self.held: dict[str, Held] = {}
        self.finished: dict[str, str] = {}  # prompt_id -> final state ("success", "error", "interrupted", "deleted")
        # Set (and dropped) at the next change; made only for a test waiting on one: every job's end is a change.
        self._changed: asyncio.Event | None = None

    # ------------------------------------------------------------ setting holds

    def hold(self, at: Any, node: Any = None, prompt_id: str | None = None, step: Any = None) -> Hold:
        """Add a hold point (idempotent)."""
        hold = Hold(parse_point(at, node, step), prompt_id)
        if hold not in self.holds:
            self.holds.append(hold)
        return hold

    def release(self) -> list[str]:
        """Remove every hold and let every held job go on; returns the released prompt_ids."""
        self.holds.clear()
        released = list(self.held)
        for held in self.held.values():
            held.permit.set()
        self._notify()
        return released

    def clear(self) -> None:
        """Release everything and forget finished jobs (engine reset)."""
        self.release()
        self.finished.clear()

    reset = clear

    def holds_at(self, prompt_id: str, point: str) -> bool:
        return any(h.applies(prompt_id, point) for h in self.holds)

    def snapshot(self) -> dict[str, Any]:
        return {
            "holds": [{"at": h.at, "prompt_id": h.prompt_id} for h in self.holds],
            "held": [h.as_dict() for h in sorted(self.held.values(), key=lambda h: h.since)],
        }

    # ------------------------------------------------------------ engine side

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def checkpoint(self, prompt_id: str, point: str, abandon: asyncio.Event | None = None) -> bool:
        """Wait here while a hold applies. True once advanced (or no hold); False if ``abandon`` fired first
        (the queue changed under a job held at ``queued``: the engine looks at the queue again)."""
        if not self.holds_at(prompt_id, point):
            return True
        held = Held(prompt_id, point)
        self.finished.pop(prompt_id, None)  # a re-used prompt_id starts a new life
        self.held[prompt_id] = held
        self._notify()
        try:
            if abandon is None:
                await held.permit.wait()
            else:
                await _first(held.permit, abandon)
        finally:
            if self.held.get(prompt_id) is held:
                del self.held[prompt_id]
                self._notify()
        return held.permit.is_set()

    def job_finished(self, prompt_id: str, state: str) -> None:
        """The engine finished (or deleted) a job: waiters on it can return. Only the latest FINISHED_KEPT are
        kept: a waiter asks within seconds of the end, and a server up for days runs millions of jobs."""
        finished = self.finished
        finished.pop(prompt_id, None)  # a re-used prompt_id goes to the end, with the newest
        finished[prompt_id] = state
        if len(finished) > FINISHED_KEPT:
            del finished[next(iter(finished))]
        self.held.pop(prompt_id, None)  # a deleted job is no longer waiting, even before the worker notices
        self._notify()

    # ------------------------------------------------------------ test side

    async def _until(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow the cancel that stops the server.
            if self._changed is None:
                self._changed = asyncio.Event()
            waiting = asyncio.ensure_future(self._changed.wait())
            try:
                done, _ = await asyncio.wait({waiting}, timeout=remaining)
            finally:
                waiting.cancel()
            if not done:
                return bool(predicate())
        return True

    def _find(self, prompt_id: str | None, at: str | None) -> Held | None:
        for held in sorted(self.held.values(), key=lambda h: h.since):
            if (prompt_id is None or held.prompt_id == prompt_id) and (at is None or held.at == at):
                return held
        return None

    async def wait_held(self, prompt_id: str | None = None, at: str | None = None, timeout: float = 5.0) -> Held | None:
        """The first job held (``prompt_id``/``at`` if given), waiting up to ``timeout`` seconds; None if none."""
        if at is not None:
            at = parse_point(at)
        await self._until(lambda: self._find(prompt_id, at) is not None, timeout)
        return self._find(prompt_id, at)

    async def advance(self, prompt_id: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Let the held job (the oldest, or ``prompt_id``) go on to its next hold or to its end.

        Waits up to ``timeout`` for a job to be held, then up to ``timeout`` for it to stop again; returns
        ``{"prompt_id", "from", "to"}`` where ``to`` is the next point, ``done``/``deleted`` or ``running``.
        """
        held = await self.wait_held(prompt_id, timeout=timeout)
        if held is None:
            raise ClockError(f"nothing to advance: no job {'with prompt_id ' + repr(prompt_id) + ' ' if prompt_id else ''}is held (holds: {[h.at for h in self.holds]})")
        target = held.prompt_id
        held.permit.set()

        def moved() -> bool:
            again = self.held.get(target)
            return (again is not None and again is not held) or target in self.finished

        await self._until(moved, timeout)
        again = self.held.get(target)
        if again is not None and again is not held:
            to = again.at
        elif target in self.finished:
            to = "deleted" if self.finished[target] == "deleted" else "done"
        else:
            to = "running"
        return {"prompt_id": target, "from": held.at, "to": to}


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
