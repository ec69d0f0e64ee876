"""What a run reads from its messages about the nodes it runs (:class:`Starts`), and a recorded job's run reduced to
those reads and the messages it keeps (:class:`RunScript`): a run nobody can observe while it runs needs only its
effects, so it applies the script compiled once per recorded job instead of walking and rendering every message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...cassette.model import Job
from ...cassette.templating import Renderer, compile_value, event_renderer
from ...comfy.events import HISTORY_TYPES, STATUS_OF_TERMINAL, TERMINAL, Event, WsEvent
from ...comfy.timeline import PREVIEW, ProgressNodes
from .planned import reads_plain
from .state import JobState

_PROGRESS_STATE, _EXECUTING, _EXECUTED = Event.PROGRESS_STATE.value, Event.EXECUTING.value, Event.EXECUTED.value
_EXECUTION_START = Event.EXECUTION_START.value
_KEPT = HISTORY_TYPES | {_EXECUTED}  # the messages whose rendered data a run keeps (history, outputs)
ENDED = frozenset(STATUS_OF_TERMINAL.values())  # the statuses a recording ends with, had its stream a terminal message


def unseen(job: Job, events: tuple[WsEvent, ...]) -> bool:
    """Whether a run's stream holds no terminal message (looked for from the end, where it is); kept on the job for
    its recorded stream, replayed again and again (a Job never changes once loaded)."""
    if events is not job.ws:
        return not any(e.type in TERMINAL for e in reversed(events))
    found: bool | None = job.__dict__.get("_unseen")
    if found is None:
        found = job.__dict__["_unseen"] = not any(e.type in TERMINAL for e in reversed(events))
    return found


def joined_late(job: Job, events: tuple[WsEvent, ...]) -> bool:
    """Whether a recorded stream lacks its ``execution_start``: the client's /ws connected after the job began (a
    client that connects after its POST /prompt, such as comfy-api-simplified), so the stream holds only the job's
    end and history's start and cached messages are in the recorded history alone. Kept on the job."""
    if events is not job.ws:
        return False
    found: bool | None = job.__dict__.get("_joined_late")
    if found is None:
        found = job.__dict__["_joined_late"] = bool(events) and all(e.type != _EXECUTION_START for e in events)
    return found


class Starts:
    """Which node a run's ``executing`` or ``progress_state`` starts, and the nodes its progress says finished (put in
    ``executed``, the run's nodes that ran, in order)."""

    def __init__(self, announced: bool, executed: dict[str, None]) -> None:
        # A node has started once its last start message is out: `executing` for a client; without a client_id
        # ComfyUI sends `executing` to nobody, and the broadcast progress_state is the last (no_client_id capture).
        self.announced = announced
        self.executed = executed
        self.values: dict[str, Any] = {}  # each node's last progress_state value (a new one starts a step)
        self._progress: ProgressNodes | None = None  # the last shared progress map observed

    def started(self, kind: str, data: dict[str, Any]) -> str | None:
        """The node ``data`` starts, if it starts one."""
        started = None
        if kind == _EXECUTING:
            if data.get("node") is not None and self.announced:
                started = str(data["node"])
        elif kind == _PROGRESS_STATE:
            for node_id, state in self._changes(data.get("nodes") or {}):
                if not isinstance(state, dict):
                    continue
                if state.get("state") == "running" and not self.announced and node_id not in self.values:
                    started = str(node_id)
                self.values[str(node_id)] = state.get("value")
                # A recording made without a client_id has no `executing`: finished nodes say what ran.
                if state.get("state") == "finished" and node_id not in self.executed:
                    self.executed[str(node_id)] = None
        return started

    def _changes(self, nodes: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
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


@dataclass(frozen=True)
class RunScript:
    """A recorded run's effects when nobody receives its messages: the messages it keeps, in order, as
    ``(kind, renderer, node)`` (history's start, cached and terminal messages, node None; each ``executed``, whose
    node's output alone the run materializes and keeps: its renderer renders that); the nodes that ran, in order;
    the last node started; how its messages say it ended (None: they do not)."""

    kept: tuple[tuple[str, Renderer, str | None], ...]
    executed: tuple[str, ...]
    current: str | None
    status: JobState | None


def script_of(job: Job, announced: bool) -> RunScript | None:
    """``job``'s recorded messages as a :class:`RunScript` (``announced``: the run's client has a client_id), made
    once per job; None when what a run reads of a message it does not keep holds a placeholder (then only a
    rendering run knows it)."""
    scripts: dict[bool, RunScript | None] | None = job.__dict__.get("_run_scripts")
    if scripts is None:
        scripts = job.__dict__["_run_scripts"] = {}
    if announced not in scripts:
        scripts[announced] = _compile(job.ws, announced)
    return scripts[announced]


def _compile(events: Sequence[WsEvent], announced: bool) -> RunScript | None:
    """What JobRun._handle and _observe do with each message when nobody receives it, done once."""
    executed: dict[str, None] = {}
    starts = Starts(announced, executed)
    kept: list[tuple[str, Renderer, str | None]] = []
    current: str | None = None
    status: JobState | None = None
    for event in events:
        kind, data = str(event.type), event.data
        if event.binary is not None or kind == PREVIEW or not isinstance(data, dict):
            continue  # a preview is drawn for a client only; a message without an object says nothing of the run
        if kind in _KEPT:
            node = str(data.get("node")) if kind == _EXECUTED else None
            if node is not None and "{{" in node:
                return None
            kept.append((kind, event_renderer(event) if node is None else compile_value(data.get("output")), node))
            status = JobState(STATUS_OF_TERMINAL[kind]) if kind in TERMINAL else status
            continue
        if not reads_plain(event, kind):
            return None
        started = starts.started(kind, data)
        if started is not None:
            if current is not None:
                executed.setdefault(current)
            current = started
    return RunScript(tuple(kept), tuple(executed), current, status)
