"""Finds the jobs in a RawSession: each POST /prompt, the WebSocket frames of its run, its history entry, its images.

The raw-session side of building a cassette (build.py templates what this finds). Clients differ in how they
follow a job (their own socket, a reconnect, only /history), and real ComfyUI sends a client only its own
prompt's messages; the rules below come from the captures they cite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..comfy.events import TERMINAL
from ..comfy.routes import is_route, normalize
from .session import HttpExchange, RawSession, WsConnection, WsFrame


@dataclass
class JobDraft:
    """What we learn about one POST /prompt while walking the session."""

    index: int
    exchange: HttpExchange
    body: dict[str, Any]
    prompt_id: str | None
    number: Any
    client_id: str | None
    images: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (node, i, image dict)


def _is_prompt_post(x: HttpExchange) -> bool:
    return x.method == "POST" and is_route(x.path, "/prompt")


def job_exchanges(session: RawSession) -> list[HttpExchange]:
    """The POST /prompt exchanges that become the cassette's jobs, in job order (job K is the K-th)."""
    return [draft.exchange for draft in find_jobs(session)]


def find_jobs(session: RawSession) -> list[JobDraft]:
    drafts: list[JobDraft] = []
    for x in session.exchanges:
        if not _is_prompt_post(x) or x.status not in (200, 400):
            continue
        body = x.request_json()
        answer = x.response_json()
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict) or not isinstance(answer, dict):
            continue
        pid = answer.get("prompt_id") if x.status == 200 else None
        draft = JobDraft(len(drafts), x, body, pid, answer.get("number"), body.get("client_id"))
        drafts.append(draft)
    return drafts


def client_ids(session: RawSession, drafts: list[JobDraft]) -> dict[str, str]:
    """Every client id / sid seen, mapped to its placeholder name."""
    names: dict[str, str] = {}
    for draft in drafts:
        if draft.client_id:
            names.setdefault(draft.client_id, "client_id")
    for socket in session.sockets:
        for value in (socket.client_id, socket.sid):
            if value and value not in names:
                names[value] = "client_id" if not names else f"sid.{len(names)}"
    return names


def view_bodies(session: RawSession) -> dict[tuple[str, str, str], bytes]:
    """Bytes of every successful /view, by (type, subfolder, filename)."""
    found: dict[tuple[str, str, str], bytes] = {}
    for x in session.exchanges:
        if x.method == "GET" and is_route(x.path, "/view") and x.status == 200:
            q = dict(x.query)
            if "preview" in q or "channel" in q:
                continue
            name = q.get("filename", "").split(" [")[0]
            found[(q.get("type") or "output", q.get("subfolder", ""), name)] = x.response_body
    return found


def _is_start(frame: WsFrame, pid: str) -> bool:
    m = frame.json()
    return isinstance(m, dict) and m.get("type") == "execution_start" and (m.get("data") or {}).get("prompt_id") == pid


def _socket_for(session: RawSession, pid: str) -> WsConnection | None:
    for socket in session.sockets:
        if any(_is_start(frame, pid) for frame in socket.frames):
            return socket
    return None


def _broadcast_frames(frames: list[WsFrame], pid: str) -> list[WsFrame]:
    """What one socket heard of a job sent without client_id: its frames naming it, but status, and the binary
    previews between them, which name no prompt (the progress hook broadcasts them: more_sessions_0.3/extra_edge).
    One job runs at a time, so a preview among a job's frames is that job's."""
    def names_job(frame: WsFrame) -> bool:
        m = frame.json()
        return isinstance(m, dict) and (m.get("data") or {}).get("prompt_id") == pid and m.get("type") != "status"
    marked = [i for i, frame in enumerate(frames) if names_job(frame)]
    if not marked:
        return []
    return [f for f in frames[marked[0]:marked[-1] + 1] if names_job(f) or (isinstance(f.data, bytes) and not f.sent)]


def _job_frames(session: RawSession, pid: str, occurrence: int = 0) -> list[WsFrame]:
    """The frames of one job from execution_start to its terminal event, on the socket that saw them.

    ``occurrence`` picks the run when a client re-used a prompt_id (prompt_options capture).
    """
    socket = _socket_for(session, pid)
    if socket is None:
        # No client saw execution_start (prompt sent without client_id): keep the broadcast events.
        for s in session.sockets:
            frames = _broadcast_frames(s.frames, pid)
            if frames:
                return frames
        return []
    # A client that reconnects with the same clientId continues the same stream (ws_reconnect capture).
    same = [s for s in session.sockets if s is socket or (s.client_id and s.client_id == socket.client_id)]
    merged = sorted((f for s in same for f in s.frames), key=lambda f: f.t)
    out: list[WsFrame] = []
    inside = False
    starts = 0
    for frame in merged:
        if frame.sent:
            continue
        m = frame.json()
        data = m.get("data") if isinstance(m, dict) else None
        owner = data.get("prompt_id") if isinstance(data, dict) else None
        if _is_start(frame, pid):
            starts += 1
            inside = starts == occurrence + 1
            if not inside:
                out.clear()
        if not inside:
            continue
        if isinstance(m, dict):
            # status and reconnect replays belong to the connection, not the job: the engine makes them.
            if m.get("type") == "status" or (m.get("type") == "executing" and "prompt_id" not in (data or {})):
                continue
            if owner not in (None, pid):
                continue
        out.append(frame)
        if isinstance(m, dict) and m.get("type") in TERMINAL and owner == pid and inside:
            break
    return out


def _history_entry(session: RawSession, pid: str) -> dict[str, Any] | None:
    """The last history entry the session saw for ``pid``."""
    entry = None
    for x in session.exchanges:
        if x.method == "GET" and normalize(x.path).startswith("/history"):
            body = x.response_json()
            if isinstance(body, dict) and isinstance(body.get(pid), dict):
                entry = body[pid]
    return entry


def _removed(session: RawSession, same: list[JobDraft]) -> set[int]:
    """Which of a re-used prompt_id's submissions (``same``, in order) a POST /queue took out before they ran:
    ComfyUI clears every queued item, then deletes one queued item per listed id, the heap's first (the lowest
    number). Submissions run in order, so those that started by then are the first ones not taken out."""
    pid = same[0].prompt_id
    starts = [f.t for s in session.sockets for f in s.frames if not f.sent and _is_start(f, pid or "")]
    removed: set[int] = set()
    for x in session.exchanges:
        body = x.request_json() if x.method == "POST" and is_route(x.path, "/queue") and x.status == 200 else None
        if not isinstance(body, dict):
            continue
        ran = sum(1 for t in starts if t < x.t)
        queued = [d for d in same if d.exchange.t < x.t and d.index not in removed][ran:]
        if body.get("clear"):
            removed.update(d.index for d in queued)
            queued = []
        for _ in range(list(body.get("delete") or []).count(pid)):
            if queued:
                first = min(queued, key=lambda d: d.number if isinstance(d.number, (int, float)) else float("inf"))
                removed.add(first.index)
                queued.remove(first)
    return removed


def collect(
    session: RawSession, draft: JobDraft, drafts_before: list[JobDraft], drafts_after: list[JobDraft]
) -> tuple[list[WsFrame], dict[str, Any] | None]:
    """First pass over one job: its frames, history entry and every image it reported (cached ones too)."""
    if draft.prompt_id is None:
        return [], None
    same = [d for d in (*drafts_before, draft, *drafts_after) if d.prompt_id == draft.prompt_id]
    removed = _removed(session, same) if len(same) > 1 else set()
    if draft.index in removed:
        return [], None  # taken out of the queue before it ran (prompt_edge capture: a re-used id deleted once)
    occurrence = sum(1 for d in drafts_before if d.prompt_id == draft.prompt_id and d.index not in removed)
    frames = _job_frames(session, draft.prompt_id, occurrence)
    # A re-used prompt_id's history entry is replaced in place: it only describes the last run.
    later = any(d.prompt_id == draft.prompt_id and d.index not in removed for d in drafts_after)
    history = None if later else _history_entry(session, draft.prompt_id)
    for frame in frames:
        m = frame.json()
        if isinstance(m, dict) and m.get("type") == "executed" and isinstance(m.get("data"), dict):
            data = m["data"]
            _collect_images(draft, str(data.get("node")), (data.get("output") or {}).get("images", []))
    for node, out in ((history or {}).get("outputs") or {}).items():
        _collect_images(draft, str(node), (out or {}).get("images", []))
    return frames, history


def _collect_images(draft: JobDraft, node: str, images: Any) -> None:
    for i, image in enumerate(images if isinstance(images, list) else []):
        if isinstance(image, dict) and "filename" in image:
            if not any(d[0] == node and d[1] == i for d in draft.images):
                draft.images.append((node, i, image))
