"""Turns a RawSession into a templated cassette document: jobs, WebSocket timelines, outputs and interactions.

Every recording source (live runner, proxy, HAR import, vcrpy persister) goes through :func:`build_cassette`,
which scrubs the session first: the one place that keeps secrets out of cassettes.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..cassette import FORMAT, INLINE_LIMIT, BlobStore
from ..replay.protocol import STATUS_OF_TERMINAL, TERMINAL
from ..templating import Templater, dumps_templated, escape_literals, placeholder
from .scrub import Scrubber
from .session import HttpExchange, RawSession, WsConnection, WsFrame

# Headers that describe one transfer, not the resource: recomputed (or meaningless) on replay.
_DROP_HEADERS = {"content-length", "date", "etag", "last-modified", "transfer-encoding", "connection", "keep-alive"}
_EXT_OF = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "application/json": "json", "image/gif": "gif"}


@dataclass
class _JobDraft:
    """What we learn about one POST /prompt while walking the session."""

    index: int
    exchange: HttpExchange
    body: dict[str, Any]
    prompt_id: str | None
    number: Any
    client_id: str | None
    images: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (node, i, image dict)


def build_cassette(
    session: RawSession, blobs: BlobStore, *, recorded: dict[str, Any] | None = None, scrubber: Scrubber | None = None
) -> dict[str, Any]:
    """The cassette document for ``session``, scrubbed by ``scrubber`` (default :class:`Scrubber`); binary and large
    bodies go into ``blobs``. String values of ``recorded`` (metadata such as the server URL) are scrubbed too.
    """
    scrubber = scrubber or Scrubber()
    session = scrubber.scrub(session)
    drafts = _find_jobs(session)
    client_ids = _client_ids(session, drafts)
    views = _view_bodies(session)
    collected = [_collect(session, d, drafts[:i], drafts[i + 1 :]) for i, d in enumerate(drafts)]
    jobs = [_job(d, c, drafts, client_ids, views, blobs) for d, c in zip(drafts, collected)]
    interactions = [_interaction(x, drafts, client_ids, blobs) for x in session.exchanges]
    meta: dict[str, Any] = {"comfyui_version": _comfyui_version(session), "source": Path(session.source).name or "session"}
    if session.exchanges:
        meta["at"] = datetime.fromtimestamp(session.exchanges[0].t, tz=timezone.utc).isoformat(timespec="seconds")
    meta.update({k: scrubber.scrub_text(v) if isinstance(v, str) else v for k, v in (recorded or {}).items()})
    return {"version": 1, "interactions": interactions, "comfy": {"format": FORMAT, "recorded": meta, "jobs": jobs}}


def merge_documents(documents: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One cassette holding the interactions and jobs of several (job placeholders stay per job)."""
    merged: dict[str, Any] = {"version": 1, "interactions": [], "comfy": {"format": FORMAT, "recorded": {}, "jobs": []}}
    sources = []
    for doc in documents:
        offset = len(merged["comfy"]["jobs"])
        for item in doc["interactions"]:
            item = dict(item)
            if "job" in item:
                item["job"] += offset
            merged["interactions"].append(_shift_jobs(item, offset))
        merged["comfy"]["jobs"].extend(_shift_jobs(job, offset) for job in doc["comfy"]["jobs"])
        recorded = doc["comfy"].get("recorded", {})
        sources.append(recorded.get("source", ""))
        merged["comfy"]["recorded"].setdefault("comfyui_version", recorded.get("comfyui_version"))
        merged["comfy"]["recorded"].setdefault("at", recorded.get("at"))
    merged["comfy"]["recorded"]["source"] = ", ".join(s for s in sources if s)
    return merged


def _shift_jobs(value: Any, offset: int) -> Any:
    """Renumber ``{{job.K...}}`` placeholders after a merge."""
    if not offset:
        return value
    if isinstance(value, str) and "{{job." in value:
        return re.sub(r"\{\{job\.(\d+)\.", lambda m: "{{job." + str(int(m.group(1)) + offset) + ".", value)
    if isinstance(value, dict):
        return {_shift_jobs(k, offset): _shift_jobs(v, offset) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift_jobs(v, offset) for v in value]
    return value


# ---------------------------------------------------------------- jobs


def _is_prompt_post(x: HttpExchange) -> bool:
    return x.method == "POST" and x.path.rstrip("/") in ("/prompt", "/api/prompt")


def job_exchanges(session: RawSession) -> list[HttpExchange]:
    """The POST /prompt exchanges that become the cassette's jobs, in job order (job K is the K-th)."""
    return [draft.exchange for draft in _find_jobs(session)]


def _find_jobs(session: RawSession) -> list[_JobDraft]:
    drafts: list[_JobDraft] = []
    for x in session.exchanges:
        if not _is_prompt_post(x) or x.status not in (200, 400):
            continue
        body = x.request_json()
        answer = x.response_json()
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict) or not isinstance(answer, dict):
            continue
        pid = answer.get("prompt_id") if x.status == 200 else None
        draft = _JobDraft(len(drafts), x, body, pid, answer.get("number"), body.get("client_id"))
        drafts.append(draft)
    return drafts


def _client_ids(session: RawSession, drafts: list[_JobDraft]) -> dict[str, str]:
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


def _view_bodies(session: RawSession) -> dict[tuple[str, str, str], bytes]:
    """Bytes of every successful /view, by (type, subfolder, filename)."""
    found: dict[tuple[str, str, str], bytes] = {}
    for x in session.exchanges:
        if x.method == "GET" and x.path.rstrip("/") in ("/view", "/api/view") and x.status == 200:
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


def _job_frames(session: RawSession, pid: str, occurrence: int = 0) -> list[WsFrame]:
    """The frames of one job from execution_start to its terminal event, on the socket that saw them.

    ``occurrence`` picks the run when a client re-used a prompt_id (prompt_options capture).
    """
    socket = _socket_for(session, pid)
    if socket is None:
        # No client saw execution_start (prompt sent without client_id): keep the broadcast events.
        frames = []
        for s in session.sockets:
            for f in s.frames:
                m = f.json()
                if isinstance(m, dict) and (m.get("data") or {}).get("prompt_id") == pid and m.get("type") != "status":
                    frames.append(f)
            if frames:
                break
        return frames
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
        if x.method == "GET" and "/history" in x.path:
            body = x.response_json()
            if isinstance(body, dict) and isinstance(body.get(pid), dict):
                entry = body[pid]
    return entry


def _collect(
    session: RawSession, draft: _JobDraft, drafts_before: list[_JobDraft], drafts_after: list[_JobDraft]
) -> tuple[list[WsFrame], dict[str, Any] | None]:
    """First pass over one job: its frames, history entry and every image it reported (cached ones too)."""
    if draft.prompt_id is None:
        return [], None
    occurrence = sum(1 for d in drafts_before if d.prompt_id == draft.prompt_id)
    frames = _job_frames(session, draft.prompt_id, occurrence)
    # A re-used prompt_id's history entry is replaced in place: it only describes the last run.
    later = any(d.prompt_id == draft.prompt_id for d in drafts_after)
    history = None if later else _history_entry(session, draft.prompt_id)
    for frame in frames:
        m = frame.json()
        if isinstance(m, dict) and m.get("type") == "executed" and isinstance(m.get("data"), dict):
            data = m["data"]
            _collect_images(draft, str(data.get("node")), (data.get("output") or {}).get("images", []))
    for node, out in ((history or {}).get("outputs") or {}).items():
        _collect_images(draft, str(node), (out or {}).get("images", []))
    return frames, history


def _job(
    draft: _JobDraft,
    collected: tuple[list[WsFrame], dict[str, Any] | None],
    drafts: list[_JobDraft],
    client_ids: dict[str, str],
    views: dict[tuple[str, str, str], bytes],
    blobs: BlobStore,
) -> dict[str, Any]:
    x = draft.exchange
    frames, history = collected
    templater = _templater_for(draft, drafts, client_ids)
    job: dict[str, Any] = {"name": f"job{draft.index}", "workflow": escape_literals(draft.body["prompt"]), "has_client": bool(draft.client_id)}
    response = {"status": x.status, "body": _template_json_text(x.response_body, templater, draft, drafts)}
    if x.status != 200 or draft.prompt_id is None:
        job.update(status="rejected", response=response)
        return job
    start_t = frames[0].t if frames else x.t
    status, cached, ws = "success", [], []
    for frame in frames:
        event: dict[str, Any] = {"t": round(max(0.0, frame.t - start_t), 6)}
        if isinstance(frame.data, bytes):
            event["binary"] = _binary_frame(frame.data, templater, draft, drafts, blobs)
        else:
            message = frame.json()
            if not isinstance(message, dict):
                continue
            kind, data = message.get("type"), message.get("data")
            status = STATUS_OF_TERMINAL.get(str(kind), status)
            if kind == "execution_cached" and isinstance(data, dict):
                cached = [str(n) for n in data.get("nodes", [])]
            event.update(type=kind, data=_template_structure(data, templater, draft, drafts))
        ws.append(event)
    if not frames:
        # Deleted from the queue before it ran, or the recording stopped first.
        messages = ((history or {}).get("status") or {}).get("messages") or []
        status = STATUS_OF_TERMINAL.get(messages[-1][0], "unfinished") if messages else "unfinished"
    outputs = []
    for node, i, image in draft.images:
        data = views.get((image.get("type", "output"), image.get("subfolder", ""), image.get("filename", "")))
        width, height = _image_size(data) if data else (0, 0)
        item: dict[str, Any] = {"node": node, "index": i, "kind": "temp" if image.get("type") == "temp" else "output"}
        item.update(width=width, height=height)
        if data:
            item["file"] = blobs.put(data, Path(image.get("filename", "x.png")).suffix or ".png")
        outputs.append(item)
    job.update(status=status, response=response)
    if history is not None:
        prompt = history.get("prompt") or []
        if len(prompt) >= 5:
            job["outputs_to_execute"] = [str(n) for n in prompt[4]]
        entry = {k: v for k, v in history.items() if k != "prompt"}
        job["history"] = _template_structure(entry, templater, draft, drafts)
    job.update(cached=cached, queued_for=round(max(0.0, start_t - x.t), 6) if frames else 0.0, outputs=outputs, ws=ws)
    return job


def _collect_images(draft: _JobDraft, node: str, images: Any) -> None:
    for i, image in enumerate(images if isinstance(images, list) else []):
        if isinstance(image, dict) and "filename" in image:
            if not any(d[0] == node and d[1] == i for d in draft.images):
                draft.images.append((node, i, image))


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception:  # noqa: BLE001 - not an image we can read: size unknown
        return 0, 0


def _binary_frame(
    data: bytes, templater: Templater, draft: _JobDraft, drafts: list[_JobDraft], blobs: BlobStore
) -> dict[str, Any]:
    """Split a binary preview frame into header fields and an image blob (README: 'Binary WebSocket frames')."""
    event_type = struct.unpack(">I", data[:4])[0]
    if event_type == 4:
        length = struct.unpack(">I", data[4:8])[0]
        metadata = json.loads(data[8 : 8 + length])
        image = data[8 + length :]
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(metadata.get("image_type"), "png")
        return {
            "event_type": 4,
            "metadata": _template_structure(metadata, templater, draft, drafts),
            "file": blobs.put(image, ext),
        }
    image_format = struct.unpack(">I", data[4:8])[0]
    return {"event_type": event_type, "image_format": image_format, "file": blobs.put(data[8:], "jpg" if image_format == 1 else "png")}


# ---------------------------------------------------------------- templating


def _templater_for(own: _JobDraft | None, drafts: list[_JobDraft], client_ids: dict[str, str]) -> Templater:
    """Own job's values as bare names, other jobs' as job.K names, clients as client_id / sid.K."""
    templater = Templater()
    if own is not None:
        if own.prompt_id:
            templater.add(own.prompt_id, "prompt_id")
        for node, i, image in own.images:
            templater.add(image["filename"], f"out.{node}.{i}.filename")
    for draft in drafts:
        if draft.prompt_id and draft is not own:
            templater.add(draft.prompt_id, f"job.{draft.index}.prompt_id")
            for node, i, image in draft.images:
                templater.add(image["filename"], f"job.{draft.index}.out.{node}.{i}.filename")
    for value, name in client_ids.items():
        templater.add(value, name)
    return templater


def _number_name(pid: Any, own: _JobDraft | None, drafts: list[_JobDraft]) -> str | None:
    if own is not None and pid == own.prompt_id:
        return "number"
    for draft in drafts:
        if draft.prompt_id is not None and draft.prompt_id == pid:
            return f"job.{draft.index}.number"
    return None


def _template_structure(value: Any, templater: Templater, own: _JobDraft | None, drafts: list[_JobDraft]) -> Any:
    """Template a parsed JSON value: strings by the templater, numbers and timestamps by position."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            k = templater.text(key) if isinstance(key, str) else key
            if key == "timestamp" and isinstance(item, int):
                out[k] = placeholder("now_ms")
            elif key == "number" and "prompt_id" in value and isinstance(item, (int, float)):
                name = _number_name(value["prompt_id"], own, drafts)
                out[k] = placeholder(name) if name else item
            elif key == "subfolder" and isinstance(value.get("filename"), str):
                ref = templater.name_of(value["filename"])
                out[k] = ref.replace(".filename}}", ".subfolder}}") if ref and ".filename}}" in ref else item
            else:
                out[k] = _template_structure(item, templater, own, drafts)
        return out
    if isinstance(value, list):
        items = [_template_structure(item, templater, own, drafts) for item in value]
        # Queue and history items: [number, prompt_id, prompt, extra_data, outputs_to_execute]
        if len(value) == 5 and isinstance(value[0], (int, float)) and isinstance(value[1], str):
            name = _number_name(value[1], own, drafts)
            if name:
                items[0] = placeholder(name)
        return items
    if isinstance(value, str):
        return templater.text(value)
    return value


def _template_json_text(body: bytes, templater: Templater, own: _JobDraft | None, drafts: list[_JobDraft]) -> str:
    """A JSON body re-serialised with placeholders, in the same separators the sender used."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return templater.text(body.decode("utf-8", "replace"))
    compact = text == json.dumps(value, separators=(",", ":"))
    return dumps_templated(_template_structure(value, templater, own, drafts), compact=compact)


def _owner(x: HttpExchange, drafts: list[_JobDraft]) -> _JobDraft | None:
    """The job an exchange belongs to: the one whose prompt_id or output file it names, else the latest before it."""
    haystack = x.url + x.request_body.decode("utf-8", "replace")[:4096]
    if x.response_body[:1] in (b"{", b"["):
        haystack += x.response_body[:4096].decode("utf-8", "replace")
    for draft in drafts:
        if draft.exchange is x:
            return draft
    for draft in drafts:
        if draft.prompt_id and draft.prompt_id in x.url:
            return draft
    for draft in drafts:
        if any(image["filename"] in x.url for _, _, image in draft.images):
            return draft
    before = [d for d in drafts if d.exchange.t <= x.t]
    return before[-1] if before else None


def _interaction(x: HttpExchange, drafts: list[_JobDraft], client_ids: dict[str, str], blobs: BlobStore) -> dict[str, Any]:
    """One vcrpy interaction, templated in the context of the job it belongs to."""
    own = _owner(x, drafts)
    templater = _templater_for(own, drafts, client_ids)
    parts = urlsplit(x.url)
    query = [(k, _template_query_value(k, v, x, templater, own)) for k, v in x.query]
    uri = urlunsplit((parts.scheme, parts.netloc, templater.text(parts.path), urlencode(query, safe="{}"), ""))
    request_body: str | bytes | None
    if not x.request_body:
        request_body = None
    elif x.request_json() is not None:
        request_body = _template_json_text(x.request_body, templater, own, drafts)
    else:
        try:
            request_body = x.request_body.decode("utf-8")
        except UnicodeDecodeError:
            request_body = x.request_body
    headers = _headers(x.response_headers, templater)
    response: dict[str, Any] = {"status": {"code": x.status, "message": x.reason}, "headers": headers}
    content_type = (x.header("Content-Type") or "").split(";")[0].strip()
    if not x.response_body:
        response["body"] = {"string": ""}
    elif x.response_json() is not None and len(x.response_body) <= INLINE_LIMIT:
        response["body"] = {"string": _template_json_text(x.response_body, templater, own, drafts)}
    elif content_type.startswith("text/") and len(x.response_body) <= INLINE_LIMIT:
        response["body"] = {"string": templater.text(x.response_body.decode("utf-8", "replace"))}
    else:
        response["body"] = {"file": blobs.put(x.response_body, _EXT_OF.get(content_type, "bin"))}
    item: dict[str, Any] = {
        "request": {"method": x.method, "uri": uri, "body": request_body, "headers": _headers(x.request_headers, templater)},
        "response": response,
    }
    if own is not None:
        item["job"] = own.index
    return item


def _template_query_value(key: str, value: str, x: HttpExchange, templater: Templater, own: _JobDraft | None) -> str:
    if key == "subfolder" and own is not None:
        name = dict(x.query).get("filename", "").split(" [")[0]
        ref = templater.name_of(name)
        if ref and ".filename}}" in ref:
            return ref.replace(".filename}}", ".subfolder}}")
    return templater.text(value)


def _headers(items: list[tuple[str, str]], templater: Templater) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for key, value in items:
        if key.lower() in _DROP_HEADERS or key.lower() in ("host", "user-agent", "accept", "accept-encoding"):
            continue
        headers.setdefault(key, []).append(templater.text(value))
    return headers


def _comfyui_version(session: RawSession) -> str | None:
    for x in session.exchanges:
        if x.path.rstrip("/").endswith("/system_stats") and x.status == 200:
            body = x.response_json()
            version = (body.get("system") or {}).get("comfyui_version") if isinstance(body, dict) else None
            if version is not None:
                return str(version)
    return None
