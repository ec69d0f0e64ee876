"""The ComfyUI version a session came from when it never asked ``/system_stats``, read from what its traffic
shows, and only through the rows of the differences table: each thing seen (a queue item's ``create_time``,
the feature flags, an output's ``metadata``, the jobs API's statuses...) is a value of one Profile field, and the
rows of that field say in which versions it has that value. The versions every observation allows are
intersected; the oldest confirmed version among them is the answer (it assumes the fewest differences the traffic
did not show), None when nothing tells or they disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote

from ..comfy.differences import CONFIRMED, DIFFERENCES
from ..comfy.profiles import OLDEST, Profile, parts
from .session import RawSession

Version = tuple[int, ...]
Observed = Callable[[RawSession], Any]  # a Profile field's value seen in a session, None when not seen
INFINITY: Version = (10**9,)


def _answers(session: RawSession, *suffixes: str) -> Iterator[Any]:
    for x in session.exchanges:
        if x.status == 200 and x.path.rstrip("/").endswith(suffixes):
            body = x.response_json()
            if body is not None:
                yield body


def _prompt_items(session: RawSession) -> Iterator[list[Any]]:
    """Every queue item and history entry's prompt tuple the server answered."""
    for x in session.exchanges:
        if x.method != "GET" or x.status != 200 or "/history" not in x.path and not x.path.endswith("/queue"):
            continue
        body = x.response_json()
        if isinstance(body, dict) and ("queue_running" in body or "queue_pending" in body):
            yield from (i for key in ("queue_running", "queue_pending") for i in body.get(key) or [] if isinstance(i, list))
        elif isinstance(body, dict):
            yield from (e["prompt"] for e in body.values() if isinstance(e, dict) and isinstance(e.get("prompt"), list))


def _create_time(session: RawSession) -> bool | None:
    extras = [item[3] for item in _prompt_items(session) if len(item) > 3 and isinstance(item[3], dict)]
    return all("create_time" in e for e in extras) if extras else None


def _features(session: RawSession) -> Any:
    for body in _answers(session, "/features"):
        return body
    for socket in session.sockets:
        for frame in socket.frames:
            message = frame.json()
            if not frame.sent and isinstance(message, dict) and message.get("type") == "feature_flags":
                return message.get("data")
    return None


def _image_items(session: RawSession) -> Iterator[dict[str, Any]]:
    """Saved image entries of history answers (where the versions that have it put ``metadata``)."""
    outputs = [e.get("outputs") for x in session.exchanges if x.status == 200 and "/history" in x.path
               for body in [x.response_json()] if isinstance(body, dict) for e in body.values() if isinstance(e, dict)]
    for node_outputs in outputs:
        for value in (node_outputs or {}).values() if isinstance(node_outputs, dict) else ():
            images = value.get("images") if isinstance(value, dict) else value
            yield from (i for i in images or [] if isinstance(i, dict) and i.get("type") == "output")


def _output_metadata(session: RawSession) -> bool | None:
    items = list(_image_items(session))
    return all("metadata" in i for i in items) if items else None


def _jobs(session: RawSession) -> Iterator[dict[str, Any]]:
    for x in session.exchanges:
        body = x.response_json() if x.status == 200 and "/api/jobs" in x.path else None
        if isinstance(body, dict):
            yield from (j for j in body.get("jobs") or [body] if isinstance(j, dict) and "status" in j)


def _jobs_api(session: RawSession) -> bool | None:
    return True if any(True for _ in _jobs(session)) else None


def _cancelled_status(session: RawSession) -> bool | None:
    for x in session.exchanges:
        body = x.response_json() if x.status == 400 and "/api/jobs" in x.path else None
        if isinstance(body, dict) and "Valid values:" in str(body.get("error")):
            return "cancelled" in str(body["error"]).rsplit("Valid values:", 1)[1]
    return None


def _rich_previews(session: RawSession) -> bool | None:
    jobs = list(_jobs(session))
    return all("previewable_outputs_count" in j for j in jobs) if jobs else None


def _move_checks_destination(session: RawSession) -> bool | None:
    """A user file moved to a destination outside the user folder: 403 where the destination is checked, else
    the 500 of ComfyUI's going on with the refusal as a path."""
    for x in session.exchanges:
        head, move, dest = x.path.partition("/move/")
        if x.method != "POST" or not move or "/userdata/" not in head or x.status not in (403, 500):
            continue
        source = unquote(head.rsplit("/userdata/", 1)[1])
        if ".." not in source.replace("\\", "/").split("/") and ".." in unquote(dest).replace("\\", "/").split("/"):
            return x.status == 403
    return None


def _userdata_times_in_ms(session: RawSession) -> bool | None:
    """A user file's full_info times: seconds (a float near 1.8e9 today) or milliseconds."""
    for x in session.exchanges:
        if x.status != 200 or "/userdata" not in x.path or ("full_info", "true") not in x.query:
            continue
        body = x.response_json()
        for info in body if isinstance(body, list) else [body]:
            modified = info.get("modified") if isinstance(info, dict) else None
            if isinstance(modified, (int, float)) and modified > 0:
                return modified > 1e11
    return None


# The Profile fields a session can show, and how.
OBSERVATIONS: dict[str, Observed] = {
    "stamps_create_time": _create_time, "features": _features, "output_metadata": _output_metadata,
    "jobs_api": _jobs_api, "jobs_cancelled_status": _cancelled_status, "jobs_rich_previews": _rich_previews,
    "move_checks_destination": _move_checks_destination, "userdata_times_in_ms": _userdata_times_in_ms,
}


def allowed(name: str, value: Any) -> tuple[Version, Version] | None:
    """The versions [from, until) in which Profile field ``name`` has ``value`` (None: no row gives it)."""
    rows = sorted((d for d in DIFFERENCES if d.field == name), key=lambda d: parts(d.since))
    default = getattr(Profile(version=OLDEST), name)  # the field's value before any row
    spans = [(parts(OLDEST), default)] if rows and parts(rows[0].since) > parts(OLDEST) else []
    spans += [(parts(d.since), d.value) for d in rows]
    for index, (since, given) in enumerate(spans):
        if given == value:
            return since, spans[index + 1][0] if index + 1 < len(spans) else INFINITY
    return None


def infer_version(sessions: Sequence[RawSession]) -> str | None:
    """The version the sessions' traffic points to: the oldest confirmed version every observation allows,
    else the lowest version they allow; None when nothing was observed or the observations disagree."""
    low, high, seen = parts(OLDEST), INFINITY, False
    for name, observe in OBSERVATIONS.items():
        values = [v for v in (observe(s) for s in sessions) if v is not None]
        for value in values:
            span = allowed(name, value)
            if span is not None:
                seen = True
                low, high = max(low, span[0]), min(high, span[1])
    if not seen or low >= high:
        return None
    inside = [v for v in CONFIRMED if low <= parts(v) < high]
    return min(inside, key=parts) if inside else ".".join(map(str, low))
