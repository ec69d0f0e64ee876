"""The one generator of a prompt's WebSocket timeline, in the order real ComfyUI sends it (basic_save capture).

Used wherever no recorded stream exists: a graph no cassette has (replay synthesis), a job recorded without its
socket (vcrpy, a HAR without WebSocket entries). Values such as the prompt_id are passed in, so callers may pass
placeholders and render them later.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .events import Event, WsEvent, executing, node_state


def timeline(
    order: Sequence[str],
    *,
    prompt_id: str,
    timestamp: Any,
    cached: Sequence[str] = (),
    outputs: Mapping[str, Any] | None = None,
    failed_at: str | None = None,
    terminal: tuple[str, Any] | None = None,
) -> list[WsEvent]:
    """The events of one run over ``order`` (the execution order, cached nodes included).

    ``outputs`` maps an output node to the ``output`` its ``executed`` message carries; a cached output node
    replays it. ``failed_at`` stops the run right after that node's ``executing`` (ComfyUI sends the error
    next); ``terminal`` is the last message, ``execution_success`` by default.
    """
    outputs = outputs or {}
    events = [
        WsEvent(0.0, Event.EXECUTION_START.value, {"prompt_id": prompt_id, "timestamp": timestamp}),
        WsEvent(0.0, Event.EXECUTION_CACHED.value, {"nodes": list(cached), "prompt_id": prompt_id, "timestamp": timestamp}),
    ]
    # progress_state is cumulative over the prompt's non-pending nodes; cached nodes other than outputs never appear.
    progress: dict[str, dict[str, Any]] = {}

    def state(node: str, value: float, maximum: float, kind: str) -> WsEvent:
        progress[node] = node_state(node, prompt_id, value, maximum, kind)
        return WsEvent(0.0, Event.PROGRESS_STATE.value, {"prompt_id": prompt_id, "nodes": copy.deepcopy(progress)})

    for node in order:
        if node in cached:
            if node in outputs:
                events.append(_executed(node, outputs[node], prompt_id))
                events.append(state(node, 1, 1, "finished"))  # a cached output's bar is set by an int (real-sessions README)
            continue
        events.append(state(node, 0.0, 1.0, "running"))
        events.append(WsEvent(0.0, Event.EXECUTING.value, executing(node, prompt_id)))
        if node == failed_at:
            break
        if node in outputs:
            events.append(_executed(node, outputs[node], prompt_id))
        events.append(state(node, 1.0, 1.0, "finished"))
    kind, data = terminal or (Event.EXECUTION_SUCCESS.value, {"prompt_id": prompt_id, "timestamp": timestamp})
    events.append(WsEvent(0.0, kind, data))
    return events


def _executed(node: str, output: Any, prompt_id: str) -> WsEvent:
    return WsEvent(0.0, Event.EXECUTED.value, {"node": node, "display_node": node, "output": output, "prompt_id": prompt_id})
