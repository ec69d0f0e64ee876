"""How a job's recorded delays pass on replay: not at all (``instant``), or at the recording's pace divided by
``speed`` (``recorded``). One place, so the worker and the run agree on what a recorded second is."""

from __future__ import annotations

import asyncio
import time


class Pacing:
    """The replay's timing mode and speed."""

    def __init__(self, timing: str, speed: float) -> None:
        self.timing = timing
        self.speed = speed

    @property
    def recorded(self) -> bool:
        """Whether recorded delays are kept (``--timing recorded``)."""
        return self.timing == "recorded"

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` of recorded time. Instant timing runs a job's events back to back (the worker yields
        once per job): yielding per event let a queue of jobs crawl behind the HTTP traffic it causes."""
        if self.recorded and seconds > 0:
            await asyncio.sleep(seconds / self.speed)

    def since(self, start: float) -> float:
        """Recorded seconds since the wall-clock time ``start``."""
        return (time.time() - start) * self.speed
