"""One queued prompt, executed: its plan's events rendered and sent in order, with the points where the clock
holds it, faults end it and an interrupt stops it, and what it leaves behind (history, cache, files).

A run's step points are ``node:<id>`` (right after ComfyUI announces the node, before its outputs),
``step:<id>:<k>`` (after a sampler step's ``progress`` and its preview, which ComfyUI sends back to back) and
``finished`` (after the terminal message, before history is written); the clock waits at them and job faults
fire at them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ...comfy.events import WsEvent
from ...comfy.events import HISTORY_TYPES, STATUS_OF_TERMINAL, TERMINAL, Event, executing, history_meta, interrupted, preview_metadata
from ...comfy.timeline import PREVIEW, ProgressNodes
from ...cassette.model import Job
from ...cassette.naming import JobBinding
from ...cassette.templating import event_renderer, render_value
from ...comfy.shapes import ExecutionStatus
from ..harness.clock import Clock
from ..harness.faults import FaultRule, JobFault
from .job_files import JobFiles
from .outputs import solid_png
from .pixels import output_png
from .pacing import Pacing
from .planned import is_preview_event, paired, reads_plain
from .plan import Plan
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
_PAIRED_KINDS = frozenset({_PROGRESS, PREVIEW})  # the only messages a step's pair starts with (planned.paired)


class JobRun:
    """Executes one queue item against a plan; the worker creates one per job and awaits :meth:`execute`."""

    def __init__(self, context: RunContext, item: QueueItem, plan: Plan, binding: JobBinding) -> None:
        self.context = context
        self.item = item
        self.plan = plan
        self.bindings: dict[str, Any] = dict(binding.values)
        self.executed: dict[str, None] = {}  # nodes that ran, in order (a dict: looked up per message)
        self.outputs: dict[str, Any] = {}
        self.messages: list[list[Any]] = []  # what history keeps: start, cached, the terminal message
        self.current: str | None = None
        self.status = JobState.SUCCESS
        self.ended = False  # a fault or an interrupt ended the run before its plan did
        # A node has started once its last start message is out: `executing` for a client; without a client_id
        # ComfyUI sends `executing` to nobody, and the broadcast progress_state is the last (no_client_id capture).
        self._announced = item.client_id is not None
        self._values: dict[str, Any] = {}  # each node's last progress_state value (a new one starts a step)
        self._progress: ProgressNodes | None = None  # the last shared progress map observed
        self._step_point: str | None = None  # a sampler step's clock point, reached after the step's messages
        # Sent to nobody: no client_id (no_client_id capture), or one whose socket was gone (more_sessions_0.8/ws_edge).
        # (Looked for from the end, where a run's terminal message is.)
        self._unseen = (plan.job is not None and plan.job.status in STATUS_OF_TERMINAL.values()
                        and not any(e.type in TERMINAL for e in reversed(plan.events)))
        if self._unseen and plan.job is not None:
            self.status = JobState(plan.job.status)  # the recording says how it ended
        # A recorded job's events are rendered for every replay of it: compiled once (templating.event_renderer). A synthetic
        # plan's events are new each time, so they are rendered directly.
        self._recorded_events = plan.job is not None and plan.events is plan.job.ws
        refusals = [JobFault("execution_error", node, _save_refusal(message)) for node, message in binding.refused.items()]
        self._pending = self._targets([*item.faults, *refusals])
        self._png_text: Mapping[str, str] | None = None  # png_metadata's, made on the first save

    # ------------------------------------------------------------ the run

    async def execute(self) -> None:
        context, pacing = self.context, self.context.pacing
        await pacing.pause(pacing.start_delay(self.item.created, self.item.answered, self.plan.queued_for))
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
        return bool(value) and value != self._values.get(self.current or "")

    def _observe(self, kind: str, data: Any) -> bool:
        """Keep what the run's messages say: which nodes ran, what outputs they made, what history keeps.
        True when the message starts a node."""
        if not isinstance(data, dict):
            return False
        started = None
        if kind == _EXECUTING and data.get("node") is not None and self._announced:
            started = str(data["node"])
        elif kind == _PROGRESS_STATE:
            for node_id, state in self._progress_changes(data.get("nodes") or {}):
                if not isinstance(state, dict):
                    continue
                if state.get("state") == "running" and not self._announced and node_id not in self._values:
                    started = str(node_id)
                self._values[str(node_id)] = state.get("value")
                # A recording made without a client_id has no `executing`: finished nodes say what ran.
                if state.get("state") == "finished" and node_id not in self.executed:
                    self.executed[str(node_id)] = None
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

    def _progress_changes(self, nodes: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
        """The entries of a progress map to look at: all of them, or for a shared map that follows the last one
        seen, only its change (so a run of n nodes reads O(n) states, not O(n²))."""
        previous = self._progress
        if type(nodes) is ProgressNodes:  # (not isinstance: an ABC's check costs on every message)
            self._progress = nodes
            if previous is not None and nodes.follows(previous):
                return (nodes.last_change(),)
        else:
            self._progress = None
        return nodes.items()

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
        data = interrupted(self.item.prompt_id, node, node_type, self._as_recorded(Event.EXECUTION_INTERRUPTED.value, self._done()), _now_ms())
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

    def _as_recorded(self, kind: str, executed: list[str]) -> list[str]:
        """``executed`` in the order the recording listed the same nodes. ComfyUI sends ``list(a set)``, whose order
        is the recorded process's; a replay of that recording keeps it."""
        job = self.plan.job
        if job is None:
            return executed
        recorded = [e.data for e in job.ws if e.type == kind]
        recorded += [m[1] for m in ((job.history or {}).get("status") or {}).get("messages") or [] if isinstance(m, list) and len(m) == 2 and m[0] == kind]
        for data in recorded:
            listed = data.get("executed") if isinstance(data, dict) else None
            if isinstance(listed, list) and sorted(map(str, listed)) == sorted(executed):
                return [str(n) for n in listed]
        return executed

    def _targets(self, faults: Sequence[JobFault]) -> dict[str, _Target]:
        """Each job fault with the node it fires at: its own, else the last node run (the first for a disconnect)."""
        if not faults:
            return {}  # most jobs: no need to look through the plan for the nodes it runs
        ran = [str(e.data["node"]) for e in self.plan.events
               if e.type == Event.EXECUTING.value and isinstance(e.data, dict) and e.data.get("node") is not None]
        targets: dict[str, _Target] = {}
        for fault in faults:
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
        if job is not None and (self._unseen or not job.has_client) and job.history and self.status.value == job.status:
            # Sent to nobody (only a no-client job's execution_interrupted is broadcast), yet ComfyUI keeps these in
            # history: take them from the recording.
            self.bindings["now_ms"] = _now_ms()
            recorded = render_value((job.history.get("status") or {}).get("messages") or [], self.bindings)
            self.messages = recorded or self.messages
        success = self.status is JobState.SUCCESS
        outputs, meta = self.outputs, dict[str, Any]()
        if success:
            # The recorded outputs are taken only when the run saw none (its own are the replay's files).
            parts = ("meta",) if outputs else ("outputs", "meta")
            recorded_entry = context.recorded_history(job, self.bindings, parts) if job is not None and job.history else None
            if recorded_entry and isinstance(recorded_entry.get("outputs"), dict) and not outputs:
                outputs = recorded_entry["outputs"]
            meta = recorded_entry["meta"] if recorded_entry and isinstance(recorded_entry.get("meta"), dict) else history_meta(list(outputs))
        status: ExecutionStatus = {"status_str": "success" if success else "error", "completed": success, "messages": self.messages}
        context.history.record(item, outputs if success else {}, status, meta, plan.cached)
        sigs = item.signatures
        if success:  # every node of the prompt is done
            results = {sig: outputs.get(n) for n, sig in sigs.items()}
        else:
            results = {sigs[n]: outputs.get(n) for n in {*self.executed, *plan.cached} if n in sigs}
        context.cache.store(results)
        context.queue.done(item, self.status)  # reports the queue size: the status before `executing null` (basic_save)
        context.sockets.emit(item.client_id, Event.EXECUTING.value, executing(None, item.prompt_id))
        context.clock.job_finished(item.prompt_id, self.status.value)

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
            metadata = {"prompt": json.dumps(self.item.workflow)}
            extra = self.item.extra_data.get("extra_pnginfo")
            if isinstance(extra, dict):
                metadata.update({str(k): json.dumps(v) for k, v in extra.items()})
            self._png_text = metadata
        return self._png_text


def _save_refusal(message: str) -> FaultRule:
    """SaveImage raises when it runs with a prefix outside the output folder (error_execution capture)."""
    return FaultRule(id="save", kind="execution_error", exception_type="Exception", exception_message=message + "\n")


def _now_ms() -> int:
    return int(time.time() * 1000)
