"""How a job's recorded delays pass on replay: not at all (``instant``), or at the recording's pace divided by
``speed`` (``recorded``). One place, so the worker and the run agree on what a recorded second is."""

from __future__ import annotations

import asyncio
import time


class Pacing:
    """The replay's timing mode and speed, and the worker's work budget in instant timing.

    Instant timing runs a job's events, and a queue's jobs, back to back. Yielding to the event loop before every
    job let handlers in but cost a loop pass per job (a polling client asked 2-11 times per job); yielding per
    event let a queue crawl behind the traffic it causes. The worker yields once it has worked ``budget``
    seconds instead: a handler waits about that long at most, a long job included, and one pass runs many jobs.
    """

    def __init__(self, timing: str, speed: float, budget: float = 0.002) -> None:
        self.timing = timing
        self.speed = speed
        self.budget = budget
        self._since = time.perf_counter()

    def restart(self) -> None:
        """The loop has just run other work (the worker waited): a full budget again."""
        self._since = time.perf_counter()

    async def spend(self) -> None:
        """Yield to the loop when the budget is used up."""
        if time.perf_counter() - self._since >= self.budget:
            await asyncio.sleep(0)
            self._since = time.perf_counter()

    @property
    def recorded(self) -> bool:
        """Whether recorded delays are kept (``--timing recorded``)."""
        return self.timing == "recorded"

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` of recorded time; in instant timing, yield only when the work budget is spent."""
        if self.recorded and seconds > 0:
            await asyncio.sleep(seconds / self.speed)
            self.restart()
        else:
            await self.spend()

    def since(self, start: float) -> float:
        """Recorded seconds since the wall-clock time ``start``."""
        return (time.time() - start) * self.speed
