"""What the recording's POST /prompt of a submitted graph says that its answer alone does not.

How long it took: ComfyUI validates a prompt before it queues it, so the queue's ``status`` and the answer come that
long after the request (32 ms for a prompt sent while a job ran, in a 0.3.64 capture, whose next messages went out
first). Timings that keep recorded delays hold each accepted prompt for its recording's time (``Job.took``); other
timings, and cassettes recorded before that time was kept, queue it at once.

The id ComfyUI drew for it: its queue is a heap of ``(number, prompt_id, ...)``, so prompts tied on number run in
the order of their ids. A replay draws its own ids; one drawn for a recorded prompt that was tied starts with the
recorded id's first group (``Job.id_head``), so the tie goes as it went (more_sessions_0.3/queue_ops).
"""

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


class RecordedPosts:
    """Which recording a submission is (the n-th submission of a graph is its n-th recording), and the one lane
    held prompts wait in: ComfyUI's handler validates without letting the event loop run another, so prompts are
    queued one after the other, in the order they came, each its validation time after the one before."""

    def __init__(self, jobs: Sequence[Job], pacing: Pacing, index: Callable[[], JobIndex]) -> None:
        self.pacing = pacing
        self._index = index  # the engine's, built on the first prompt
        self.holds = pacing.recorded and any(job.took for job in jobs)
        self.orders = any(job.id_head for job in jobs)
        self.active = self.holds or self.orders  # whether a submission is matched to its recording at all
        self._lane = asyncio.Lock()
        self._used: dict[int, int] = {}  # recordings' key -> how many submissions took them so far

    def reset(self) -> None:
        """A restarted ComfyUI: the next submission of a graph is its first again."""
        self._used.clear()

    def match(self, workflow: Any, shape: str | None) -> tuple[Job | None, bool]:
        """The recording this submission stands for, and whether it is of this very graph (else it is the first
        recording of its structure: its time, never its id)."""
        if not isinstance(workflow, dict):
            return None, False
        key, jobs, exact = self._index().recordings(workflow, shape)
        if not jobs:
            return None, False
        used = self._used.get(key, 0)
        self._used[key] = used + 1
        return jobs[min(used, len(jobs) - 1)], exact

    def stand_in(self, workflow: Any, shape: str | None, prompt_id: str, *, drawn: bool) -> tuple[str, float]:
        """The submission's prompt_id (a ``drawn`` one starting with its recording's head when that was tied) and how
        long to hold it (recorded seconds; 0 unless the timing holds prompts)."""
        job, exact = self.match(workflow, shape)
        if job is None:
            return prompt_id, 0.0
        head = job.id_head if drawn and exact else ""
        return head + prompt_id[len(head):], job.took if self.holds else 0.0

    async def after(self, item: QueueItem, queue: Callable[[], T]) -> T:
        """``queue()``, once the prompts that came before are queued and ``item``'s recorded time has passed."""
        async with self._lane:
            if item.held > 0:
                await asyncio.sleep(item.held * self.pacing.scale)
            return queue()
