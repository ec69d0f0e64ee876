"""POST /prompt at the recorded pace: ComfyUI validates a prompt before it queues it, so the queue's ``status`` and
the answer come that long after the request (12 ms for a prompt sent while a job ran, in a 0.3.64 capture, whose
messages went out first). Timings that keep recorded delays hold each accepted prompt for its recording's time
(``Job.took``); other timings, and cassettes recorded before that time was kept, queue it at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ...cassette.model import Job
from .pacing import Pacing
from .state import QueueItem

if TYPE_CHECKING:
    from .plan import JobIndex

T = TypeVar("T")


class AnswerHold:
    """How long each accepted prompt waits before it is queued, and the one lane they wait in: ComfyUI's handler
    validates without letting the event loop run another, so prompts are queued one after the other, in the order
    they came, each its validation time after the one before (or after it came, when later)."""

    def __init__(self, jobs: Sequence[Job], pacing: Pacing, index: Callable[[], JobIndex]) -> None:
        self.pacing = pacing
        self._index = index  # the engine's, built on the first prompt
        self.active = pacing.recorded and any(job.took for job in jobs)
        self._lane = asyncio.Lock()
        self._used: dict[int, int] = {}  # recordings' key -> how many submissions took their times so far

    def reset(self) -> None:
        """A restarted ComfyUI: the next submission of a graph is its first again."""
        self._used.clear()

    def seconds(self, workflow: Any, shape: str | None) -> float:
        """This submission's recorded time: the n-th submission of a graph takes its n-th recording's (the last
        one's past them); 0 for a graph no recording timed."""
        if not isinstance(workflow, dict):
            return 0.0
        key, times = self._index().answer_times(workflow, shape)
        if not times:
            return 0.0
        used = self._used.get(key, 0)
        self._used[key] = used + 1
        return times[min(used, len(times) - 1)]

    async def after(self, item: QueueItem, queue: Callable[[], T]) -> T:
        """``queue()``, once the prompts that came before are queued and ``item``'s recorded time has passed (kept
        on it as ``held``: its job's recorded start-up delay counts from the POST)."""
        async with self._lane:
            item.held = self.seconds(item.workflow, item.shape)
            if item.held > 0:
                await asyncio.sleep(item.held * self.pacing.scale)
            return queue()
