"""The simulated server's prompt worker: takes the queue's head, chooses its plan, names its outputs and runs it,
one prompt at a time, as ComfyUI's prompt_worker thread does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ...cassette.naming import JobBinding, bind_job
from ...comfy.events import Event, default_traceback, executing
from ...comfy.folders import OutputNamer
from ..harness.journal import Journal
from ..options import PREVIEW_METHODS
from . import plan as planning
from .inputs import InputFiles
from .run import JobRun, RunContext
from .state import STOP_TIMEOUT, JobState, QueueItem
# A prompt of more nodes is planned in a thread: planning is linear in the graph, yet 10,000 nodes take most of a
# second that the handlers must not wait. A smaller one (most prompts: txt2img has 7) is planned inline, where it
# costs less than a thread's round trip.
PLAN_INLINE_NODES = 64


class Worker:
    """Runs what :class:`RunContext`'s queue holds; :meth:`wake` when the queue or a flag changes."""

    def __init__(self, context: RunContext, index: planning.JobIndex, namer: OutputNamer, inputs: InputFiles,
                 journal: Journal, *, previews: bool, per_prompt_previews: bool = False) -> None:
        self.context = context
        self.index = index
        self.namer = namer
        self.inputs = inputs
        self.journal = journal
        self.previews = previews  # whether synthetic plans draw step previews (--preview-method)
        self.per_prompt_previews = per_prompt_previews  # a prompt's extra_data.preview_method overrides it (0.5.0+)
        self._wake = asyncio.Event()  # set by wake() until the worker looks at the queue again
        self._task: asyncio.Task[None] | None = None
        self._current: JobRun | None = None  # the run in progress
        # Resolved by wake() while the worker is parked with nothing to run. A future of the worker's loop, not
        # Event.wait(): that looks the running loop up on every wait, a getpid() system call per job.
        self._parked: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        """Parked with nothing to run and not woken since: stopping it would cut nothing, and a reset may keep it."""
        return self._parked is not None and not self._wake.is_set()

    def wake(self) -> None:
        self._wake.set()
        parked = self._parked
        if parked is not None and not parked.done():
            parked.set_result(None)

    def start(self) -> None:
        if self._task is None:
            self.namer.settle_on(asyncio.get_running_loop())  # names a pass's jobs with one look at each folder
            self._task = asyncio.create_task(self._work(), name="comfy-cassettes-worker")

    async def stop(self) -> JobRun | None:
        """Stop working; returns the run it cut short, if a job was running."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_TIMEOUT)  # bounded, and never re-raises its cancel
            self._task = None
        cut, self._current = self._current, None
        return cut

    async def _work(self) -> None:
        context, loop = self.context, asyncio.get_running_loop()
        queue, clock = context.queue, context.clock
        context.pacing.restart()  # the budget counts this thread's CPU time: start it here, on the loop's thread
        while True:
            if context.running.free_memory:
                context.running.free_memory = False
                context.cache.reset()
            head = queue.head()
            if head is None or head.answered is None:
                # Nothing to run, or a job whose POST answer has not gone out: a client could not know of it yet.
                self._wake.clear()
                self._parked = loop.create_future()
                try:
                    await self._parked
                finally:
                    self._parked = None
                context.pacing.restart()
                continue
            if clock.holds and clock.holds_at(head.prompt_id, "queued"):
                self._wake.clear()
                advanced = await clock.checkpoint(head.prompt_id, "queued", abandon=self._wake)
                if not advanced or queue.head() is not head:
                    continue  # the queue changed under the held job: look again
            await context.pacing.spend()  # let handlers run between jobs once the work budget is spent
            if queue.head() is not head:
                continue
            try:
                self._current = await self.prepare(head)
                if self._current is not None:
                    await self._current.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the queue
                self.abort(head, exc)
            self._current = None

    async def prepare(self, item: QueueItem) -> JobRun | None:
        """Take ``item``, the head of the queue: choose its plan, name its outputs, and mark it running. A large
        graph is planned in a thread, so handlers keep answering; None when the queue changed meanwhile."""
        context = self.context
        if len(item.workflow) <= PLAN_INLINE_NODES:
            plan, binding = self.plan_and_name(item)
        else:
            plan, binding = await asyncio.to_thread(self.plan_and_name, item)
            if context.queue.head() is not item:
                return None  # deleted, or overtaken by a prompt sent to the front: look again
        # Taken by the worker: /queue shows it running through the recorded start-up delay too, and an
        # interrupt from then on counts (ComfyUI clears the flag as it takes the prompt). The status that reports
        # it waits for the run's start: ComfyUI sends it right before execution_start.
        context.queue.take(report=False)
        context.running.interrupt_requested = False
        context.running.last_client = item.client_id
        return JobRun(context, item, plan, binding)

    def plan_and_name(self, item: QueueItem) -> tuple[planning.Plan, JobBinding]:
        """The plan of ``item`` and its output names. Reads only what the worker alone changes (the node cache,
        the namer), so it may run in a thread while the worker awaits it."""
        context = self.context
        plan = self.plan(item)
        sigs = item.signatures
        known = {}
        for node in plan.cached:
            previous = context.cache.get(sigs.get(node, ""))
            if previous:
                known[node] = [(p["filename"], p["subfolder"]) for p in previous.get("images", [])]
        binding = bind_job(
            prompt_id=item.prompt_id, number=item.number, client_id=item.client_id or "", workflow=item.workflow,
            images=plan.outputs, namer=self.namer, known=known,
        )
        return plan, binding

    def plan(self, item: QueueItem) -> planning.Plan:
        """The recorded job that answers ``item``, else a plan made from its graph."""
        sigs = item.signatures
        # execution_cached lists the prompt's nodes in the prompt's own order (execution.py execute_async), every
        # node the cache holds, also one no output needs (a branch that failed validation, one partial targets skip).
        cached = self.context.cache.holding(sigs, item.workflow)
        has_client = item.client_id is not None
        job = self.index.choose(item.workflow, has_client=has_client, cached=cached, shape=item.shape,
                                outputs=item.outputs_to_execute)
        if job is not None and job.status != "interrupted":
            return planning.from_job(job, item.workflow, self.inputs.size, has_client=has_client)
        # Run the graph with its own values: an interrupted recording's rest, or a graph recorded with other values
        # (at the recording's pace when timing is recorded), or one no cassette has.
        timed = self.context.pacing.recorded
        pace = planning.recorded_pace(job) if job is not None else self.index.pace(item.workflow, has_client=has_client, shape=item.shape) if timed else None
        synthetic = planning.synthesize(item.workflow, item.order, item.outputs_to_execute, cached=cached, input_size=self.inputs.size,
                                        previews=self.previews_for(item), pace=pace, prompt_id=item.prompt_id)
        return planning.resume_interrupted(job, synthetic) if job is not None else synthetic

    def previews_for(self, item: QueueItem) -> bool:
        """Whether ``item``'s samplers send previews: ComfyUI 0.5.0+ sets the method per prompt from
        extra_data.preview_method when it names one (latent_preview.set_preview_method), else --preview-method's."""
        method = item.extra_data.get("preview_method") if self.per_prompt_previews else None
        return method != "none" if method in PREVIEW_METHODS else self.previews

    def abort(self, item: QueueItem, exc: Exception) -> None:
        """A run the replay itself could not complete still ends like a failed ComfyUI job, so no client waits
        forever: an error entry in history, ``execution_error``, the status, ``executing`` null."""
        context = self.context
        self.journal.error(f"job {item.prompt_id} failed in the replay engine: {exc!r}")
        error: dict[str, Any] = {
            "prompt_id": item.prompt_id, "node_id": context.running.last_node, "node_type": None, "executed": [],
            "exception_message": f"comfy-cassettes could not replay this job: {exc!r}", "exception_type": type(exc).__name__,
            "traceback": default_traceback(None, type(exc).__name__, str(exc)), "current_inputs": {}, "current_outputs": [],
            "timestamp": int(time.time() * 1000),
        }
        if item.state is JobState.QUEUED and context.queue.head() is item:
            context.queue.take()
        context.history.record(item, {}, {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}, {})
        context.sockets.emit(item.client_id, Event.EXECUTION_ERROR.value, error)
        if item.state is JobState.RUNNING:
            context.queue.done(item, JobState.ERROR)
        context.sockets.emit(item.client_id, Event.EXECUTING.value, executing(None, item.prompt_id))
        context.clock.job_finished(item.prompt_id, "error")
