"""How a job's recorded delays pass on replay, one place so the worker and the run agree on what a recorded
second is: not at all (``instant``, ``floor``), at the recording's pace (``faithful``), or at it divided by
``speed`` (``recorded``). The faithful timings (``faithful``, ``floor``) also start a job only once its POST
/prompt answer has gone out and never end it sooner than real ComfyUI ended any job (comfy/latency.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ...comfy.latency import FASTEST_JOB, LONGEST_IDLE_START

_TIMER = 0.001  # seconds the event loop's timer may sleep past a due time (epoll counts in milliseconds)
LONGEST_PASS = 0.1  # seconds of work a pass may take however long the queue: thousands of prompts queued at once
# still let the handlers in ten times a second


class Pacing:
    """The replay's timing mode and speed, and the worker's work budget when recorded delays are not kept.

    Without them a job's events, and a queue's jobs, run back to back. Yielding to the event loop before every
    job let handlers in but cost a loop pass per job (a polling client asked 2-11 times per job); yielding per
    event let a queue crawl behind the traffic it causes. The worker yields once it has worked ``budget``
    seconds per job waiting (``backlog()``, counted as it starts a pass) instead, in the loop thread's CPU time (on
    a busy machine, time the process is not running is no work done): a queue the handlers filled in
    one pass is run in the next, before the polls its clients send as their answers arrive (a fixed 2 ms let
    64 clients' jobs wait 3-5 polls each); a lone long job still lets a handler in every ``budget`` to 2 ``budget`` seconds, and
    a pass never works over :data:`LONGEST_PASS`. A pass for one job starts on the wall clock: the thread's CPU
    clock is a system call that, on a loaded machine, often hands the CPU to another process right there (measured
    under 16 clients: p50 2 us, p90 0.5-5 ms, while a getppid() beside it stayed under 4 us), and such a pass mostly
    ends long before its allowance.
    """

    def __init__(self, timing: str, speed: float, budget: float = 0.002, backlog: Callable[[], int] = lambda: 1) -> None:
        self.timing = timing
        self.speed = speed
        self.budget = budget
        self._backlog = backlog
        # time.thread_time() the pass began, on the loop's thread (restart() sets it); None: a one-job pass, on the
        # wall clock until it has run its allowance there.
        self._since: float | None = None
        # time.perf_counter() before which the pass cannot have spent its allowance: a thread's CPU time never runs
        # ahead of the wall clock, which costs a twentieth as much to read.
        self._wall_due = 0.0
        self._allowance = budget  # seconds this pass may work: budget per job waiting as it began
        # Seconds waited per recorded second; 0: recorded delays are not waited.
        self._scale = {"recorded": 1 / speed, "faithful": 1.0}.get(timing, 0.0)
        self._due = 0.0  # time.monotonic() the recorded gaps so far add up to
        self.faithful = timing in ("faithful", "floor")

    def restart(self) -> None:
        """The loop has just run other work (the worker waited): a new pass, with a budget per job waiting."""
        waiting = self._backlog()
        self._allowance = min(self.budget * max(1, waiting), max(self.budget, LONGEST_PASS))
        self._wall_due = time.perf_counter() + self._allowance
        self._since = time.thread_time() if waiting > 1 else None

    async def spend(self) -> None:
        """Yield to the loop when this pass's budget is used up."""
        if self._spent():
            await asyncio.sleep(0)
            self.restart()

    def _spent(self) -> bool:
        """Whether this pass has worked its allowance. The thread's own clock is read only once the wall clock says
        it may have; when it has not (the process was not running all along), not before the wall clock could
        again: on a busy machine it was read for every message of every job. A one-job pass reads it first once the
        wall clock says the pass has run its allowance (a process descheduled then has not worked it): its allowance
        counts from there."""
        if time.perf_counter() < self._wall_due:
            return False
        if self._since is None:  # (a one-job pass, from now on timed by the thread's clock)
            self._since = time.thread_time()
            self._wall_due = time.perf_counter() + self._allowance
            return False
        left = self._allowance - (time.thread_time() - self._since)
        if left <= 0:
            return True
        self._wall_due = time.perf_counter() + left
        return False

    def waits(self, seconds: float) -> bool:
        """Whether :meth:`pause` of ``seconds`` would wait or yield: a run skips awaiting it when not (most messages
        of an instant run), which is two coroutines per message fewer."""
        return bool(self._scale and seconds > 0) or time.perf_counter() >= self._wall_due and self._spent()

    @property
    def scale(self) -> float:
        """Seconds waited per recorded second (0: recorded delays are not waited)."""
        return self._scale

    @property
    def recorded(self) -> bool:
        """Whether recorded delays are kept (``faithful`` and ``recorded``): a graph the cassettes recorded with
        other values runs at the recording's pace too."""
        return bool(self._scale)

    def unpaced(self, *, watched: bool) -> bool:
        """Whether a run neither waits recorded delays nor has its end held (:meth:`keep_floor`), ``watched`` or not."""
        return not self._scale and (not self.faithful or self.timing == "floor" and not watched)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` of recorded time; without recorded delays, yield only when the work budget is spent.

        The waits run to a due time that adds the gaps up: the loop's timer rounds each sleep up to a millisecond,
        and a job of ten 0.1 ms gaps took 10 ms instead of 1. A due time long past (the job was held) starts anew."""
        if self._scale and seconds > 0:
            now = time.monotonic()
            self._due = max(self._due, now - _TIMER) + seconds * self._scale
            if self._due > now:
                await asyncio.sleep(self._due - now)
                self.restart()
                return
        await self.spend()

    def start_delay(self, created: float, answered: float | None, recorded: float, held: float = 0.0) -> float:
        """What is left of a recorded delay from POST /prompt to ``execution_start``, in recorded seconds, for a job
        whose POST came at wall-clock time ``created`` and whose answer went out at ``answered``
        (time.monotonic()), ``held`` recorded seconds after it came (recorded_posts.py): time it already spent counts
        towards it. Faithful timing counts from the answer instead: a client reading it on a busy machine still has
        the recorded delay to note the prompt_id, at the cost of our own answer time (under a millisecond) over the
        recording; and it leaves out what the recording spent queued behind its other prompts (comfy/latency.py)."""
        if not self._scale:
            return 0.0
        if self.timing == "faithful" and answered is not None:
            return max(0.0, min(recorded, LONGEST_IDLE_START) - held - (time.monotonic() - answered))
        return max(0.0, recorded - (time.time() - created) / self._scale)

    async def keep_floor(self, answered: float | None, *, watched: bool = True) -> None:
        """Hold a job's end until real ComfyUI could have ended it: :data:`FASTEST_JOB` after its POST answer went
        out (``answered``, time.monotonic()).

        ``floor`` holds it only while a socket would receive the job's messages (``watched``): the hold keeps a
        job's end on /ws from overtaking its POST answer, and a job nobody watches is seen only by asking for it,
        which a client does after the answer. A test polling its job then finds it ended at the first poll
        instead of sleeping to a second one."""
        if self.timing == "floor" and not watched:
            return
        if self.faithful and answered is not None:
            remaining = answered + FASTEST_JOB - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                self.restart()
