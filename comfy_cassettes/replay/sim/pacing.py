"""How a job's recorded delays pass on replay, one place so the worker and the run agree on what a recorded
second is: not at all (``instant``, ``floor``), at the recording's pace (``faithful``), or at it divided by
``speed`` (``recorded``). The faithful timings (``faithful``, ``floor``) also start a job only once its POST
/prompt answer has gone out and never end it sooner than real ComfyUI ended any job (comfy/latency.py)."""

from __future__ import annotations

import asyncio
import time

from ...comfy.latency import FASTEST_JOB, LONGEST_IDLE_START


class Pacing:
    """The replay's timing mode and speed."""

    def __init__(self, timing: str, speed: float) -> None:
        self.timing = timing
        self.speed = speed
        # Seconds waited per recorded second; 0: recorded delays are not waited.
        self._scale = {"recorded": 1 / speed, "faithful": 1.0}.get(timing, 0.0)
        self.faithful = timing in ("faithful", "floor")

    @property
    def recorded(self) -> bool:
        """Whether recorded delays are kept (``faithful`` and ``recorded``): a graph the cassettes recorded with
        other values runs at the recording's pace too."""
        return bool(self._scale)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` of recorded time. Without recorded delays a job's events go back to back (the worker
        yields once per job): yielding per event let a queue of jobs crawl behind the HTTP traffic it causes."""
        if self._scale and seconds > 0:
            await asyncio.sleep(seconds * self._scale)

    def start_delay(self, created: float, answered: float | None, recorded: float) -> float:
        """What is left of a recorded delay from POST /prompt to ``execution_start``, in recorded seconds, for a job
        queued at wall-clock time ``created`` whose answer went out at ``answered`` (time.monotonic()): time it
        already spent queued counts towards it. Faithful timing counts from the answer instead: a client reading
        it on a busy machine still has the recorded delay to note the prompt_id, at the cost of our own answer
        time (under a millisecond) over the recording; and it leaves out what the recording spent queued behind
        its other prompts (comfy/latency.py)."""
        if not self._scale:
            return 0.0
        if self.timing == "faithful" and answered is not None:
            return max(0.0, min(recorded, LONGEST_IDLE_START) - (time.monotonic() - answered))
        return max(0.0, recorded - (time.time() - created) / self._scale)

    async def keep_floor(self, answered: float | None) -> None:
        """Hold a job's end until real ComfyUI could have ended it: :data:`FASTEST_JOB` after its POST answer went
        out (``answered``, time.monotonic())."""
        if self.faithful and answered is not None:
            remaining = answered + FASTEST_JOB - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
