"""What a run can tell from a planned message without rendering it: whether it is a preview, whether it pairs with
the next one, whether the parts the run itself reads hold a placeholder (a message sent to nobody and kept by
nothing is then never rendered), and in what order the recording listed the nodes a message says ran."""

from __future__ import annotations

from typing import Any

from ...cassette.model import Job
from ...comfy.events import HISTORY_TYPES, Event, WsEvent
from ...comfy.timeline import PREVIEW


def is_preview_event(event: WsEvent) -> bool:
    return event.binary is not None or event.type == PREVIEW


def paired(event: WsEvent, after: WsEvent) -> bool:
    """Whether two planned messages are a step's ``progress`` and its preview, in either order."""
    return (is_preview_event(event) and after.type == Event.PROGRESS) or (event.type == Event.PROGRESS and is_preview_event(after))


def reads_plain(event: WsEvent, kind: str) -> bool:
    """Whether a run may take ``event``'s data as planned when nobody receives it: history keeps none of it (no
    start, cached or terminal message), it names no outputs (``executed``), and what the run reads of it (a
    ``progress_state``'s node ids, states and values; another message's ``node`` and ``value``) holds no
    placeholder. Worked out once per recorded message."""
    plain: bool | None = event.__dict__.get("_reads_plain")
    if plain is None:
        plain = event.__dict__["_reads_plain"] = kind not in HISTORY_TYPES and kind != Event.EXECUTED and _plain(kind, event.data)
    return plain


def _plain(kind: str, data: Any) -> bool:
    if kind == Event.PROGRESS_STATE:
        nodes = data.get("nodes") if isinstance(data, dict) else None
        return isinstance(nodes, dict) and not any(
            "{{" in str(node) or isinstance(state, dict) and ("{{" in str(state.get("state")) or "{{" in str(state.get("value")))
            for node, state in nodes.items())
    return not isinstance(data, dict) or not ("{{" in str(data.get("node")) or "{{" in str(data.get("value")))


def as_recorded(job: Job | None, kind: str, executed: list[str]) -> list[str]:
    """``executed`` in the order the recording listed the same nodes. ComfyUI sends ``list(a set)``, whose order
    is the recorded process's; a replay of that recording keeps it."""
    if job is None:
        return executed
    recorded = [e.data for e in job.ws if e.type == kind]
    recorded += [m[1] for m in ((job.history or {}).get("status") or {}).get("messages") or [] if isinstance(m, list) and len(m) == 2 and m[0] == kind]
    for data in recorded:
        listed = data.get("executed") if isinstance(data, dict) else None
        if isinstance(listed, list) and sorted(map(str, listed)) == sorted(executed):
            return [str(n) for n in listed]
    return executed
