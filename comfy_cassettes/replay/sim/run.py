"""One queued prompt, executed: its plan's events rendered and sent in order, with the points where the clock
holds it, faults end it and an interrupt stops it, and what it leaves behind (history, cache, files).

A run's step points are ``node:<id>`` (right after ComfyUI announces the node, before its outputs),
``step:<id>:<k>`` (after a sampler step's ``progress`` and its preview, which ComfyUI sends back to back) and
``finished`` (after the terminal message, before history is written); the clock waits at them and job faults
fire at them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ...comfy.events import WsEvent
from ...comfy.events import HISTORY_TYPES, STATUS_OF_TERMINAL, TERMINAL, Event, executing, history_meta, interrupted, preview_metadata
from ...comfy.timeline import PREVIEW, ProgressNodes
from ...cassette.model import Job
from ...cassette.naming import JobBinding
from ...cassette.templating import event_renderer, render_value
from ...comfy.shapes import ExecutionStatus
from ...comfy.protocol import dumps
from ..harness.clock import Clock
from ..harness.faults import FaultRule, JobFault
from .job_files import JobFiles
from .outputs import solid_png
from .pixels import output_png
from .pacing import Pacing
from .planned import as_recorded, is_preview_event, paired, reads_plain
from .plan import Plan
from .run_script import ENDED, RunScript, Starts, joined_late, script_of, unseen
from .sockets import Sockets
from .state import History, JobState, NodeCache, PromptQueue, QueueItem, Running


@dataclass(frozen=True)
class RunContext:
    """What a run reaches of the simulated server: the parts it reads and the ones it leaves its results in."""

    queue: PromptQueue
    history: History
    cache: NodeCache
    sockets: Sockets
    clock: Clock
    files: JobFiles
    pacing: Pacing
    running: Running
    recorded_history: Callable[[Job, Mapping[str, Any], tuple[str, ...]], Any]  # parts of a recorded history entry, rendered


@dataclass(frozen=True)
class _Target:
    """A job fault and the node it fires at."""

    fault: JobFault
    node: str | None


# The kinds a run compares every message with, as plain strings: a str enum member equals its value, yet comparing
# with one, or reading its `.value`, costs more on every message of every job.
_PROGRESS_STATE, _PROGRESS = Event.PROGRESS_STATE.value, Event.PROGRESS.value
_EXECUTING, _EXECUTED = Event.EXECUTING.value, Event.EXECUTED.value
_STATE_TEXT = {state: state.value for state in JobState}  # (an enum's .value is a property: a call)
_PAIRED_KINDS = frozenset({_PROGRESS, PREVIEW})  # the only messages a step's pair starts with (planned.paired)


class JobRun:
    """Executes one queue item against a plan; the worker creates one per job and awaits :meth:`execute`."""

    def __init__(self, context: RunContext, item: QueueItem, plan: Plan, binding: JobBinding) -> None:
        self.context = context
        self.item = item
        self.plan = plan
        self.bindings: dict[str, Any] = binding.values  # (the job's own: made for this run, filled in as it goes)
        self.executed: dict[str, None] = {}  # nodes that ran, in order (a dict: looked up per message)
        self.outputs: dict[str, Any] = {}
        self.messages: list[list[Any]] = []  # what history keeps: start, cached, the terminal message
        self.current: str | None = None
        self.status = JobState.SUCCESS
        self.ended = False  # a fault or an interrupt ended the run before its plan did
        self._starts: Starts  # what the messages say of the nodes: made by a run that reads them (execute)
        self._step_point: str | None = None  # a sampler step's clock point, reached after the step's messages
        # A recorded job's events are rendered for every replay of it: compiled once (templating.event_renderer). A synthetic
        # plan's events are new each time, so they are rendered directly.
        job = plan.job
        self._recorded_events = job is not None and plan.events is job.ws
        # Sent to nobody: no client_id (no_client_id capture), or one whose socket was gone (more_sessions_0.8/ws_edge).
        # (Looked for from the end, where a run's terminal message is.)
        self._unseen = job is not None and job.status in ENDED and unseen(job, plan.events)
        if self._unseen and job is not None:
            self.status = JobState(job.status)  # the recording says how it ended
        self._from_history = job is not None and (self._unseen or not job.has_client or joined_late(job, plan.events))  # (_finish)
        refusals = [JobFault("execution_error", node, _save_refusal(message)) for node, message in binding.refused.items()]
        self._pending = self._targets([*item.faults, *refusals]) if item.faults or refusals else {}  # (most jobs: none)
        self._png_text: Mapping[str, str] | None = None  # png_metadata's, made on the first save

    # ------------------------------------------------------------ the run

    async def execute(self) -> None:
        if (script := self._script()) is not None:
            self._apply(script)
            return
        context, pacing = self.context, self.context.pacing
        self._starts = Starts(self.item.client_id is not None, self.executed)
        await pacing.pause(pacing.start_delay(self.item.created, self.item.answered, self.plan.queued_for, self.item.held))
        context.queue.report_taken()  # ComfyUI reports the taken prompt right before execution_start, no delay between
        events = self.plan.events
        previous_t, i = 0.0, 0
        while i < len(events) and not self.ended:
            event = events[i]
            if pacing.waits(event.t - previous_t):
                await pacing.pause(event.t - previous_t)
            previous_t = event.t
            i += 1
            if i < len(events) and (event.binary is not None or event.type in _PAIRED_KINDS) and paired(event, events[i]):
                # A step's preview and its `progress` go out back to back, in the order the client's format has
                # (legacy: progress then preview; metadata: preview then progress; previews.md), and the step's
                # hold point comes after both.
                later = events[i]
                i += 1
                if self._swapped(event, later):
                    event, later = later, event
                else:
                    if pacing.waits(later.t - previous_t):
                        await pacing.pause(later.t - previous_t)
                    previous_t = later.t
                await self._handle(event)
                if not self.ended:
                    await self._handle(later)
            else:
                await self._handle(event)
            if self._step_point is not None and not self.ended:
                point, self._step_point = self._step_point, None
                if context.clock.holds:
                    await context.clock.checkpoint(self.item.prompt_id, point)
        watched = context.sockets.watching(self.item.client_id)
        await pacing.keep_floor(self.item.answered, watched=watched)  # a run sent to nobody, or with no end
        if context.clock.holds:
            await context.clock.checkpoint(self.item.prompt_id, "finished")
        self._finish()

    def _script(self) -> RunScript | None:
        """The job's compiled effects (run_script) when nobody can observe the run: no socket any of its messages would
        reach, no clock hold, fault due, interrupt asked or delay kept. It keeps the loop to its end: none can change."""
        context, job = self.context, self.plan.job
        if job is None or not self._recorded_events or self._pending or context.clock.holds or context.running.interrupt_requested:
            return None
        if context.sockets.watching(self.item.client_id) or not context.pacing.unpaced(watched=False):
            return None
        return script_of(job, self.item.client_id is not None)

    def _apply(self, script: RunScript) -> None:
        """The run from its script: what its messages leave behind as _handle and _observe leave it (the kept messages
        rendered, each node's outputs materialized then enriched, the nodes that ran, the last one started, the
        status), then its end."""
        context, bindings, outputs = self.context, self.bindings, self.outputs
        context.queue.report_taken()
        bindings["now_ms"] = _now_ms()
        for kind, render, node in script.kept:
            data = render(bindings)  # an executed message's output (run_script)
            if node is None:
                self.messages.append([kind, data])
                continue
            context.files.materialize(self.plan, node, data, self.png_metadata)
            outputs[node] = context.files.enrich(data, self.item.prompt_id)
        self.executed.update(dict.fromkeys(script.executed))
        if script.current is not None:
            self.current = context.running.last_node = script.current
        if script.status is not None:
            self.status = script.status
        self._finish()

    async def _handle(self, event: WsEvent) -> None:
        """Send one planned message (or preview), with the step points it reaches."""
        context, item = self.context, self.item
        if event.binary is not None or event.type == PREVIEW:
            self._emit_preview(event)
            return
        kind, data = str(event.type), event.data
        terminal = kind in TERMINAL
        if terminal:  # a client may map the job's end to its POST answer
            await context.pacing.keep_floor(item.answered, watched=context.sockets.watching(item.client_id))
        nodes = data.get("nodes") if kind == _PROGRESS_STATE and isinstance(data, dict) else None
        shared = type(nodes) is ProgressNodes  # made with the job's own prompt_id (plan.synthesize): nothing to fill in
        received = context.sockets.reaches(item.client_id, kind)
        # Sent to nobody and kept by nothing, a message whose parts the run reads hold no placeholder is not rendered.
        if not shared and (received or not reads_plain(event, kind)):
            self.bindings["now_ms"] = _now_ms()
            data = event_renderer(event)(self.bindings) if self._recorded_events else render_value(data, self.bindings)
        if terminal and self._pending:
            # A forced fault whose node never ran (cached, or absent from the recording) fires at the end.
            await self._fire(at_end=True)
            if self.ended:
                return
        if kind == _PROGRESS_STATE and context.running.interrupt_requested and self._step_begins(data):
            # A sampler checks the flag in its progress callback, when a step ends: that step reports nothing
            # (txt2img_interrupt capture).
            self._interrupt(self.current)
            return
        if kind == _EXECUTED and isinstance(data, dict):
            # The node's files exist before `executed` says so (written in dynamic mode).
            context.files.materialize(self.plan, str(data.get("node")), data.get("output"), self.png_metadata)
        started = self._observe(kind, data)
        if shared:
            if received:  # built only for a receiver
                context.sockets.emit(item.client_id, kind, {**data, "nodes": cast(ProgressNodes, nodes).as_dict()})
        elif received or terminal:  # (a terminal message's faults may have awaited: emit asks again)
            context.sockets.emit(item.client_id, kind, data)
        if started:
            await self._at_node()
        elif kind == _PROGRESS and isinstance(data, dict) and data.get("node") is not None:
            self._step_point = f"step:{data['node']}:{data.get('value')}"  # reached once its preview is out too

    def _swapped(self, event: WsEvent, after: WsEvent) -> bool:
        """Whether a step's preview and ``progress`` (a :func:`planned.paired` pair) must trade places for this client:
        after ``progress`` for a legacy client, before it for one that announced preview metadata (txt2img,
        ws_binary_legacy and ws_binary_with_metadata captures)."""
        is_preview = is_preview_event(event)
        client = self.context.sockets.clients.get(self.item.client_id or "")
        if client is None:
            return False
        return client.preview_metadata != is_preview

    def _step_begins(self, data: Any) -> bool:
        """Whether a progress_state moves the running node's bar: the first message of a sampler step."""
        state = (data.get("nodes") or {}).get(self.current or "") if isinstance(data, dict) else None
        if not isinstance(state, dict) or state.get("state") != "running":
            return False
        value = state.get("value")
        return bool(value) and value != self._starts.values.get(self.current or "")

    def _observe(self, kind: str, data: Any) -> bool:
        """Keep what the run's messages say: which nodes ran, what outputs they made, what history keeps.
        True when the message starts a node."""
        if not isinstance(data, dict):
            return False
        started = None
        if kind == _EXECUTING or kind == _PROGRESS_STATE:
            started = self._starts.started(kind, data)
        elif kind == _EXECUTED:
            node = str(data.get("node"))
            data["output"] = self.context.files.enrich(data.get("output"), self.item.prompt_id)
            self.outputs[node] = data.get("output")
        if kind in HISTORY_TYPES:
            self.messages.append([kind, data])
        if kind in TERMINAL:
            self.status = JobState(STATUS_OF_TERMINAL[kind])
        if started is None:
            return False
        if self.current is not None:
            self.executed.setdefault(self.current)
        self.current = self.context.running.last_node = started
        return True

    async def _at_node(self) -> None:
        """The step point after a node's ``executing``: interrupt, clock hold, forced faults."""
        if self.context.running.interrupt_requested:
            self._interrupt(self.current)
            return
        clock = self.context.clock
        if clock.holds:  # (no hold: checkpoint returns at once; its point's name is not even made)
            await clock.checkpoint(self.item.prompt_id, f"node:{self.current}")
        if self._pending:
            await self._fire()

    # ------------------------------------------------------------ endings

    def end_by_reset(self) -> None:
        """A reset took the job away mid-run: its client hears ``execution_interrupted``, as after /interrupt,
        instead of waiting for an end that never comes."""
        if not self.ended:
            self._interrupt(self.current)

    def _interrupt(self, node: str | None) -> None:
        """ComfyUI checks the interrupt flag before a node runs: the node just announced is the one named."""
        node_type = self.item.workflow.get(node or "", {}).get("class_type")
        data = interrupted(self.item.prompt_id, node, node_type, as_recorded(self.plan.job, Event.EXECUTION_INTERRUPTED.value, self._done()), _now_ms())
        self.messages.append([Event.EXECUTION_INTERRUPTED.value, data])
        self.context.sockets.emit(self.item.client_id, Event.EXECUTION_INTERRUPTED.value, data)
        self.status, self.ended = JobState.INTERRUPTED, True

    def _fail(self, fault: JobFault, node: str | None) -> None:
        data = fault.error_payload(self.item.prompt_id, node, self.item.workflow, self._done(), list(reversed(self.item.order)))
        self.messages.append([Event.EXECUTION_ERROR.value, data])
        self.context.sockets.emit(self.item.client_id, Event.EXECUTION_ERROR.value, data)
        self.status, self.ended = JobState.ERROR, True

    def _done(self) -> list[str]:
        return [*self.executed, *(n for n in self.plan.cached if n not in self.executed)]

    def _targets(self, faults: Sequence[JobFault]) -> dict[str, _Target]:
        """Each job fault with the node it fires at: its own, else the last node run (the first for a disconnect)."""
        if not faults:
            return {}  # most jobs: no need to look through the plan for the nodes it runs
        ran = [str(e.data["node"]) for e in self.plan.events
               if e.type == Event.EXECUTING.value and isinstance(e.data, dict) and e.data.get("node") is not None]
        targets: dict[str, _Target] = {}
        for fault in (f for f in faults if not (f.if_run and f.node in self.plan.cached)):  # (a cached node reads nothing)
            default = (ran[0] if fault.kind == "ws_disconnect" else ran[-1]) if ran else None
            targets[fault.kind] = _Target(fault, fault.node or default)
        return targets

    async def _fire(self, *, at_end: bool = False) -> None:
        """Fire the faults due at the current node (all of them at the end of the run)."""
        due = [kind for kind, target in self._pending.items() if at_end or target.node == self.current]
        node = self.current
        if at_end and node is None:
            # Nothing ran (all cached): name the rule's node, else the last output, as the failing one.
            named = [t.node for kind, t in self._pending.items() if kind in due and t.node is not None]
            node = named[0] if named else (self.item.outputs_to_execute[-1] if self.item.outputs_to_execute else None)
        if "ws_disconnect" in due:
            target = self._pending.pop("ws_disconnect")
            self.context.sockets.cut(self.item.client_id, target.fault.rule.code)
        if "execution_interrupted" in due:
            self._pending.pop("execution_interrupted")
            self._interrupt(node)
        elif "execution_error" in due:
            self._fail(self._pending.pop("execution_error").fault, node)

    def _finish(self) -> None:
        """History, cache and queue after the run; then the status and ComfyUI's end-of-prompt ``executing``."""
        context, item, plan = self.context, self.item, self.plan
        job = plan.job
        if job is not None and self._from_history and job.history and self.status.value == job.status:
            # Sent to nobody (only a no-client job's execution_interrupted is broadcast), or before the recording's
            # socket joined, yet ComfyUI keeps these in history: take them from the recording.
            self.bindings["now_ms"] = _now_ms()
            recorded = render_value((job.history.get("status") or {}).get("messages") or [], self.bindings)
            self.messages = recorded or self.messages
        success, outputs = self.status is JobState.SUCCESS, self.outputs
        meta: dict[str, Any] = {}
        if success:
            # The recorded outputs are taken only when the run saw none (its own are the replay's files).
            parts = ("meta",) if outputs else ("outputs", "meta")
            recorded_entry = context.recorded_history(job, self.bindings, parts) if job is not None and job.history else None
            if recorded_entry and isinstance(recorded_entry.get("outputs"), dict) and not outputs:
                outputs = context.files.from_history(plan, recorded_entry["outputs"], self.png_metadata, item.prompt_id)
            meta = recorded_entry["meta"] if recorded_entry and isinstance(recorded_entry.get("meta"), dict) else history_meta(list(outputs))
        status: ExecutionStatus = {"status_str": "success" if success else "error", "completed": success, "messages": self.messages}
        context.history.record(item, outputs if success else {}, status, meta, plan.cached)
        # What the cache keeps: the prompt's nodes it held already (ComfyUI drops the rest), and those that ran; on
        # success every node an output needed. A node no output needed is never run, so never newly cached.
        sigs, cache = item.signatures, context.cache
        ran = item.order if success else self.executed
        done = {*plan.cached, *ran} if plan.cached else ran
        cache.store({sigs[n]: outputs[n] if n in outputs else cache.get(sigs[n]) for n in done if n in sigs})
        context.running.last_node = None  # execution.py execute_async: a client joining the next job is told no stale node
        context.queue.done(item, self.status)  # reports the queue size: the status before `executing null` (basic_save)
        if context.sockets.reaches(item.client_id, _EXECUTING):  # (made for a receiver only)
            context.sockets.emit(item.client_id, _EXECUTING, executing(None, item.prompt_id))
        context.clock.job_finished(item.prompt_id, _STATE_TEXT[self.status])

    # ------------------------------------------------------------ previews

    def _emit_preview(self, event: WsEvent) -> None:
        """A recorded binary frame as recorded, or a step's preview drawn from the sampler's seed."""
        sockets = self.context.sockets
        if not sockets.listening(self.item.client_id):
            return  # drawn for nobody otherwise
        binary = event.binary
        if binary is None:
            data = event.data if isinstance(event.data, dict) else {}
            node = str(data.get("node"))
            if "image" in data:  # an image SaveImageWebsocket sends: full size, PNG (websocket_image_save.py)
                width, height, found = int(data["width"]), int(data["height"]), self.plan.seeds.get(node)
                picture = output_png(found, width, height, int(data["image"])) if found is not None else solid_png(width, height)
                sockets.emit_preview(self.item.client_id, picture, image_format=2, metadata=preview_metadata(node, self.item.prompt_id, "image/png"))
                return
            image = self.context.files.preview(self.item.workflow, node, int(data.get("step", 1)), int(data.get("steps", 1)))
            sockets.emit_preview(self.item.client_id, image, image_format=1,
                                             metadata=preview_metadata(node, self.item.prompt_id, "image/jpeg"))
            return
        image = self.context.files.blob(self.plan.job, binary.file)
        metadata = render_value(binary.metadata, self.bindings) if binary.metadata else None
        if metadata is None:
            # A legacy recording, replayed to a client that wants metadata: build it as ComfyUI would.
            metadata = preview_metadata(self.context.running.last_node, self.item.prompt_id, "image/jpeg" if binary.image_format == 1 else "image/png")
        sockets.emit_preview(self.item.client_id, image, image_format=binary.image_format, metadata=metadata)

    def png_metadata(self) -> Mapping[str, str]:
        """SaveImage/PreviewImage's PNG text chunks: the prompt, then one per extra_pnginfo key, each JSON. The same
        for every image the run saves, so encoded once (a prompt can be large and have several save nodes)."""
        if self._png_text is None:
            metadata = {"prompt": self.item.workflow_json}  # (its history entry takes the same text)
            extra = self.item.extra_data.get("extra_pnginfo")
            if isinstance(extra, dict):
                metadata.update({str(k): dumps(v) for k, v in extra.items()})
            self._png_text = metadata
        return self._png_text


def _save_refusal(message: str) -> FaultRule:
    """SaveImage raises when it runs with a prefix outside the output folder (error_execution capture)."""
    return FaultRule(id="save", kind="execution_error", exception_type="Exception", exception_message=message + "\n")


def _now_ms() -> int:
    return int(time.time() * 1000)
