"""The one generator of a prompt's WebSocket timeline, in the order real ComfyUI sends it.

Used wherever no recorded stream fits: a graph no cassette has, a recorded graph run with other values (more
sampler steps, another size), the rest of an interrupted recording, a job recorded without its socket (vcrpy, a
HAR without WebSocket entries). Values such as the prompt_id are passed in, so callers may pass placeholders and
render them later. A sampler reports each step as the captures show (txt2img): ``progress_state`` with the bar
at k/S, the preview, ``progress`` k/S; previews are :data:`PREVIEW` markers the replay turns into frames.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import TERMINAL, Event, WsEvent, executing, node_state
from .graph import execution_order

# Not a ComfyUI message: marks where a sampler step's preview frame goes ({"node", "step", "steps"}).
PREVIEW = "comfy-cassettes:preview"


@dataclass(frozen=True)
class Pace:
    """How long things take, in seconds: each node's run, each sampler step, and what no recording says."""

    node: Mapping[str, float] = field(default_factory=dict)
    step: Mapping[str, float] = field(default_factory=dict)
    default: float = 0.0
    start: float = 0.0  # from POST /prompt to execution_start

    def run(self, node: str, steps: int) -> float:
        """A node's whole run: its recorded time, or its steps at the recorded pace."""
        if node in self.step:
            return self.step[node] * max(steps, 1)
        return self.node.get(node, self.default)


class ProgressLog:
    """One run's ``progress_state`` node map as it grows: each change kept once, in order. A message's map is a
    :class:`ProgressNodes` view of the first k changes, so a run of n nodes keeps O(n) states instead of a copy
    of the map per message (O(n²): a 10,000-node prompt filled gigabytes)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, dict[str, Any]]] = []
        self.at: dict[str, list[int]] = {}  # each node's changes, by index
        self.first: list[int] = []  # the index where each node appears, in map order

    def set(self, node: str, state: dict[str, Any]) -> ProgressNodes:
        """Change ``node``'s state; the map as it is now."""
        seen = self.at.setdefault(node, [])
        if not seen:
            self.first.append(len(self.changes))
        seen.append(len(self.changes))
        self.changes.append((node, state))
        return ProgressNodes(self, len(self.changes))


class ProgressNodes(Mapping[str, dict[str, Any]]):
    """``progress_state.nodes`` after the first ``size`` changes of a :class:`ProgressLog`, built only when read
    whole (:meth:`as_dict`, to be sent). Its states are shared between messages: read them, never change them."""

    __slots__ = ("log", "size")

    def __init__(self, log: ProgressLog, size: int) -> None:
        self.log, self.size = log, size

    def __getitem__(self, node: str) -> dict[str, Any]:
        seen = self.log.at.get(node, ())
        i = bisect.bisect_left(seen, self.size) - 1
        if i < 0:
            raise KeyError(node)
        return self.log.changes[seen[i]][1]

    def __iter__(self) -> Iterator[str]:
        changes = self.log.changes
        for i in self.log.first[:len(self)]:
            yield changes[i][0]

    def __len__(self) -> int:
        return bisect.bisect_left(self.log.first, self.size)

    def last_change(self) -> tuple[str, dict[str, Any]]:
        """The node this message's change was about, with its new state."""
        return self.log.changes[self.size - 1]

    def follows(self, other: ProgressNodes) -> bool:
        """Whether this map is ``other`` with one more change (consecutive messages of one run)."""
        return self.log is other.log and self.size == other.size + 1

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The map as ComfyUI sends it (insertion order: each node where it first appeared)."""
        nodes: dict[str, dict[str, Any]] = {}
        for node, state in self.log.changes[:self.size]:
            nodes[node] = state
        return nodes


def timeline(
    order: Sequence[str],
    *,
    prompt_id: str,
    timestamp: Any,
    cached: Sequence[str] = (),
    outputs: Mapping[str, Any] | None = None,
    failed_at: str | None = None,
    terminal: tuple[str, Any] | None = None,
    steps: Mapping[str, int] | None = None,
    previews: bool = False,
    pace: Pace | None = None,
    shared_progress: bool = False,
    sent_images: Mapping[str, tuple[int, int, int]] | None = None,
) -> list[WsEvent]:
    """The events of one run over ``order`` (the execution order, cached nodes included).

    ``outputs`` maps an output node to the ``output`` its ``executed`` message carries; a cached output node
    replays it. ``steps`` maps a sampler to its progress steps; ``previews`` puts a :data:`PREVIEW` marker in
    each step. ``failed_at`` stops the run right after that node's ``executing`` (ComfyUI sends the error next);
    ``terminal`` is the last message, ``execution_success`` by default. ``pace`` spreads the events in time.
    With ``shared_progress`` each ``progress_state`` holds a :class:`ProgressNodes` view (for a replay, which sends
    them), else its own copy of the map (for a cassette, which stores them). ``sent_images`` maps a node that sends
    its images over /ws (SaveImageWebsocket) to their (width, height, count): a :data:`PREVIEW` marker each.
    """
    outputs, steps, pace, sent_images = outputs or {}, steps or {}, pace or Pace(), sent_images or {}
    run = _Events(prompt_id, shared_progress)
    run.add(Event.EXECUTION_START.value, {"prompt_id": prompt_id, "timestamp": timestamp})
    run.add(Event.EXECUTION_CACHED.value, {"nodes": list(cached), "prompt_id": prompt_id, "timestamp": timestamp})
    skipped = set(cached)  # cached nodes other than outputs never appear in progress_state
    for node in order:
        if node in skipped:
            if node in outputs:
                run.events.append(_executed(run.t, node, outputs[node], prompt_id))
                run.state(node, 1, 1, "finished")  # a cached output's bar is set by an int (real-sessions README)
            continue
        run.state(node, 0.0, 1.0, "running")
        run.add(Event.EXECUTING.value, executing(node, prompt_id))
        if node == failed_at:
            break
        total = steps.get(node, 0) or (sent_images[node][2] if node in sent_images else 0)
        if node in sent_images:
            run.t += pace.run(node, 0)
            run.sent(node, *sent_images[node])
        elif total:
            run.steps(node, total, pace, previews=previews)
        else:
            run.t += pace.run(node, 0)
        if node in outputs:
            run.events.append(_executed(run.t, node, outputs[node], prompt_id))
        run.state(node, total or 1.0, total or 1.0, "finished")  # ints after steps, floats for a node without
    kind, data = terminal or (Event.EXECUTION_SUCCESS.value, {"prompt_id": prompt_id, "timestamp": timestamp})
    run.add(kind, data)
    return run.events


class _Events:
    """One run's events as they are built, with the time so far and the cumulative progress map (progress_state
    holds every non-pending node of the prompt)."""

    def __init__(self, prompt_id: str, shared_progress: bool) -> None:
        self.prompt_id = prompt_id
        self.shared_progress = shared_progress
        self.t = 0.0
        self.events: list[WsEvent] = []
        self._progress: dict[str, dict[str, Any]] = {}
        self._log = ProgressLog()

    def add(self, kind: str, data: Any) -> None:
        self.events.append(WsEvent(self.t, kind, data))

    def state(self, node: str, value: float, maximum: float, kind: str) -> None:
        new = node_state(node, self.prompt_id, value, maximum, kind)
        if self.shared_progress:
            self.add(Event.PROGRESS_STATE.value, {"prompt_id": self.prompt_id, "nodes": self._log.set(node, new)})
            return
        self._progress[node] = new
        self.add(Event.PROGRESS_STATE.value, {"prompt_id": self.prompt_id, "nodes": copy.deepcopy(self._progress)})

    def steps(self, node: str, total: int, pace: Pace, *, previews: bool) -> None:
        """A sampler's ``total`` steps: each a progress_state, its preview marker, its ``progress``."""
        for k in range(1, total + 1):
            self.t += pace.run(node, total) / total
            self.state(node, k, total, "running")  # a progress bar's values are ints (txt2img capture)
            if previews:
                self.add(PREVIEW, {"node": node, "step": k, "steps": total})
            self.add(Event.PROGRESS.value, {"value": k, "max": total, "prompt_id": self.prompt_id, "node": node})


    def sent(self, node: str, width: int, height: int, count: int) -> None:
        """SaveImageWebsocket's images: its ProgressBar's update_absolute(k, count, image) for each, i.e. the bar at
        k/count, ``progress`` k/count, then the image (ws_binary captures; the bar ends at count/count)."""
        for k in range(count):
            self.state(node, k, count, "running")
            self.add(Event.PROGRESS.value, {"value": k, "max": count, "prompt_id": self.prompt_id, "node": node})
            self.add(PREVIEW, {"node": node, "image": k, "width": width, "height": height})


def _executed(t: float, node: str, output: Any, prompt_id: str) -> WsEvent:
    return WsEvent(t, Event.EXECUTED.value, {"node": node, "display_node": node, "output": output, "prompt_id": prompt_id})


def _messages(history: Mapping[str, Any]) -> list[list[Any]]:
    return [m for m in (history.get("status") or {}).get("messages") or [] if isinstance(m, list) and len(m) == 2]


def cached_in_history(history: Mapping[str, Any]) -> list[str]:
    """The nodes a history entry's ``execution_cached`` message names (ComfyUI keeps the message in history
    whoever its stream reached), in its order."""
    found: list[str] = []
    for kind, data in _messages(history):
        if kind == Event.EXECUTION_CACHED.value and isinstance(data, dict):
            found += [str(n) for n in data.get("nodes") or [] if str(n) not in found]
    return found


def from_history(
    workflow: Mapping[str, Any], outputs_to_execute: Sequence[str], history: Mapping[str, Any], *,
    cached: Sequence[str] = (), prompt_id: str, timestamp: Any,
) -> tuple[list[WsEvent], list[str]]:
    """The events a client with the prompt's client_id would have had, rebuilt from the prompt's history entry
    (for recordings that kept no stream of it); also the cached nodes the history names."""
    messages = _messages(history)
    outputs = history.get("outputs") or {}
    known = list(cached)
    known += [n for n in cached_in_history(history) if n not in known]
    try:
        order = execution_order(workflow, list(outputs_to_execute or outputs))
    except Exception:  # noqa: BLE001 - a workflow we cannot order still replays its outputs
        order = list(outputs)
    terminal = [(str(k), d) for k, d in messages if k in TERMINAL]
    last = terminal[-1] if terminal else None
    failed_at = str(last[1].get("node_id")) if last and isinstance(last[1], dict) and last[0] != Event.EXECUTION_SUCCESS.value else None
    events = timeline(order, prompt_id=prompt_id, timestamp=timestamp, cached=known, outputs=outputs, failed_at=failed_at, terminal=last)
    return events, known
