"""Turns a RawSession into a templated, typed Cassette: jobs, WebSocket timelines, outputs and interactions.

Every recording source (live runner, proxy, HAR import, vcrpy persister) goes through :func:`build_cassette`,
which scrubs the session first: the one place that keeps secrets out of cassettes. What a session's jobs are
is found by jobs.py; this module templates and assembles them.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from ..cassette.load import INLINE_LIMIT
from ..cassette.model import FORMAT, Cassette, Interaction, Job, OutputImage
from ..cassette.storage import BlobStore
from ..comfy.events import STATUS_OF_TERMINAL, BinaryFrame, Event, WsEvent, decode_frame
from ..comfy.timeline import cached_in_history, from_history
from ..cassette.templating import Templater, dumps_templated, escape_literals, placeholder
from .drafts import JobDraft, client_ids, collect, find_jobs, view_bodies
from ..errors import ConfigError
from .scrub import Scrubber
from .session import HttpExchange, RawSession, WsFrame

# Headers that describe one transfer, not the resource: recomputed (or meaningless) on replay.
_DROP_HEADERS = {"content-length", "date", "etag", "last-modified", "transfer-encoding", "connection", "keep-alive"}
_EXT_OF = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "application/json": "json", "image/gif": "gif"}
NO_SOCKET_NOTE = "synthesized from /history: the recording has no WebSocket"


def build_cassette(
    session: RawSession, output: Path, *, recorded: dict[str, Any] | None = None, scrubber: Scrubber | None = None
) -> Cassette:
    """The cassette for ``session``, to be saved at ``output``, scrubbed by ``scrubber`` (default :class:`Scrubber`);
    binary and large bodies go into blobs beside ``output``. String values of ``recorded`` (metadata such as the
    server URL) are scrubbed too. A recording without any WebSocket (vcrpy, a HAR without socket entries) gets
    each finished job's event timeline rebuilt from its history entry, so ``serve`` can replay it.
    """
    scrubber = scrubber or Scrubber()
    session = scrubber.scrub(session)
    blobs = BlobStore(Path(output).parent)
    drafts = find_jobs(session)
    clients = client_ids(session, drafts)
    views = view_bodies(session)
    collected = [collect(session, d, drafts[:i], drafts[i + 1 :]) for i, d in enumerate(drafts)]
    jobs = [_job(d, c, drafts, clients, views, blobs) for d, c in zip(drafts, collected)]
    jobs = [replace(job, id_head=head) if (head := _tied_id_head(d, drafts)) else job for d, job in zip(drafts, jobs)]
    meta: dict[str, Any] = {"comfyui_version": _comfyui_version(session), "source": Path(session.source).name or "session"}
    if not session.sockets and any(job.history for job in jobs):
        jobs = [_with_timeline(job) for job in jobs]
        meta["ws"] = NO_SOCKET_NOTE
    interactions = [_interaction(x, drafts, clients, blobs) for x in session.exchanges]
    if session.exchanges:
        meta["at"] = datetime.fromtimestamp(session.exchanges[0].t, tz=timezone.utc).isoformat(timespec="seconds")
    meta.update({k: scrubber.scrub_text(v) if isinstance(v, str) else v for k, v in (recorded or {}).items()})
    return Cassette(Path(output), tuple(interactions), tuple(jobs), meta)


def merge_documents(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One cassette document holding the interactions and jobs of several, in order (job placeholders renumbered)."""
    merged: dict[str, Any] = {"version": 1, "interactions": [], "comfy": {"format": FORMAT, "recorded": {}, "jobs": []}}
    sources = []
    versions: dict[str, str] = {}  # version -> the first source that said it
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
        if recorded.get("comfyui_version") is not None:
            versions.setdefault(str(recorded["comfyui_version"]), recorded.get("source", ""))
        merged["comfy"]["recorded"].setdefault("at", recorded.get("at"))
    if len(versions) > 1:
        raise ConfigError("the sessions come from different ComfyUI versions: "
                          + ", ".join(f"{v} ({source or '?'})" for v, source in versions.items()) + "; import them apart")
    merged["comfy"]["recorded"]["comfyui_version"] = next(iter(versions), None)
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


def _job(
    draft: JobDraft,
    collected: tuple[list[WsFrame], dict[str, Any] | None],
    drafts: list[JobDraft],
    clients: dict[str, str],
    views: dict[tuple[str, str, str], bytes],
    blobs: BlobStore,
) -> Job:
    x = draft.exchange
    frames, history = collected
    templater = _templater_for(draft, drafts, clients)
    response_body = _template_json_text(x.response_body, templater, draft, drafts)
    workflow = escape_literals(draft.body["prompt"])
    common = {"name": f"job{draft.index}", "workflow": workflow, "has_client": bool(draft.client_id),
              "response_status": x.status, "response_body": response_body, "took": round(max(0.0, x.duration), 6)}
    if x.status != 200 or draft.prompt_id is None:
        return Job(status="rejected", **common)
    start_t = frames[0].t if frames else x.t
    status, ws, ended = "success", [], False
    cached: tuple[str, ...] = ()
    for frame in frames:
        t = round(max(0.0, frame.t - start_t), 6)
        if isinstance(frame.data, bytes):
            ws.append(WsEvent(t, binary=_binary_frame(frame.data, templater, draft, drafts, blobs)))
            continue
        message = frame.json()
        if not isinstance(message, dict):
            continue
        kind, data = message.get("type"), message.get("data")
        if kind in STATUS_OF_TERMINAL:
            status, ended = STATUS_OF_TERMINAL[str(kind)], True
        if kind == Event.EXECUTION_CACHED.value and isinstance(data, dict):
            cached = tuple(str(n) for n in data.get("nodes", []))
        ws.append(WsEvent(t, str(kind), _template_structure(data, templater, draft, drafts)))
    if history is not None and not any(e.type == Event.EXECUTION_CACHED.value for e in ws):
        cached = tuple(cached_in_history(history))  # sent to nobody (no client_id) or before the socket joined
    if not ended:
        # No terminal frame: a prompt sent without client_id (ComfyUI sends its outcome to nobody, no_client_id
        # capture), deleted from the queue before it ran, or a recording that stopped first. History says how it ended.
        messages = ((history or {}).get("status") or {}).get("messages") or []
        terminal = [m[0] for m in messages if isinstance(m, list) and m and m[0] in STATUS_OF_TERMINAL]
        status = STATUS_OF_TERMINAL[terminal[-1]] if terminal else ("success" if frames else "unfinished")
    outputs = []
    for node, i, image in draft.images:
        data = views.get((image.get("type", "output"), image.get("subfolder", ""), image.get("filename", "")))
        width, height = _image_size(data) if data else (0, 0)
        ref = blobs.put(data, Path(image.get("filename", "x.png")).suffix or ".png") if data else None
        outputs.append(OutputImage(node, i, "temp" if image.get("type") == "temp" else "output", width, height, ref))
    outputs_to_execute: tuple[str, ...] = ()
    templated_history = None
    if history is not None:
        prompt = history.get("prompt") or []
        if len(prompt) >= 5:
            outputs_to_execute = tuple(str(n) for n in prompt[4])
        templated_history = _template_structure({k: v for k, v in history.items() if k != "prompt"}, templater, draft, drafts)
    return Job(
        status=status, outputs_to_execute=outputs_to_execute, history=templated_history, cached=cached,
        queued_for=round(max(0.0, start_t - x.t), 6) if frames else 0.0, outputs=tuple(outputs), ws=tuple(ws), **common,
    )


def _tied_id_head(draft: JobDraft, drafts: list[JobDraft]) -> str:
    """The first group of the prompt_id ComfyUI drew for an accepted prompt that another one's number tied (its
    queue runs ties in id order: recorded_posts.py); "" when the client gave the id or nothing tied."""
    pid, number = draft.prompt_id, draft.number
    if not isinstance(pid, str) or "prompt_id" in draft.body or isinstance(number, bool) or not isinstance(number, (int, float)):
        return ""
    tied = any(other is not draft and other.prompt_id and other.number == number for other in drafts)
    head = pid.split("-")[0].lower()
    return head if tied and len(head) == 8 and not head.strip("0123456789abcdef") else ""


def _with_timeline(job: Job) -> Job:
    """A finished job recorded without its socket, given the events ComfyUI sent (taken from its history)."""
    if job.ws or not job.history:
        return job
    events, cached = from_history(job.workflow, job.outputs_to_execute, job.history, cached=job.cached,
                                  prompt_id=placeholder("prompt_id"), timestamp=placeholder("now_ms"))
    return replace(job, ws=tuple(events), cached=tuple(cached))


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception:  # noqa: BLE001 - not an image we can read: size unknown
        return 0, 0


def _binary_frame(
    data: bytes, templater: Templater, draft: JobDraft, drafts: list[JobDraft], blobs: BlobStore
) -> BinaryFrame:
    """A binary preview frame as header fields and an image blob (real-sessions README, 'Binary WebSocket frames')."""
    frame = decode_frame(data)
    ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(frame.image_type, "png")
    metadata = _template_structure(frame.metadata, templater, draft, drafts) if frame.metadata is not None else None
    return BinaryFrame(frame.event_type, blobs.put(frame.image, ext), frame.image_format, metadata)


# ---------------------------------------------------------------- templating


def _templater_for(own: JobDraft | None, drafts: list[JobDraft], client_ids: dict[str, str]) -> Templater:
    """Own job's values as bare names, other jobs' as job.K names, clients as client_id / sid.K."""
    templater = Templater()
    if own is not None:
        if own.prompt_id:
            templater.add(own.prompt_id, "prompt_id", whole=True)
        for node, i, image in own.images:
            templater.add(image["filename"], f"out.{node}.{i}.filename")
    for draft in drafts:
        if draft.prompt_id and draft is not own:
            templater.add(draft.prompt_id, f"job.{draft.index}.prompt_id", whole=True)
            for node, i, image in draft.images:
                templater.add(image["filename"], f"job.{draft.index}.out.{node}.{i}.filename")
    for value, name in client_ids.items():
        templater.add(value, name, whole=True)
    return templater


def _number_name(pid: Any, own: JobDraft | None, drafts: list[JobDraft]) -> str | None:
    if own is not None and pid == own.prompt_id:
        return "number"
    for draft in drafts:
        if draft.prompt_id is not None and draft.prompt_id == pid:
            return f"job.{draft.index}.number"
    return None


def _template_structure(value: Any, templater: Templater, own: JobDraft | None, drafts: list[JobDraft]) -> Any:
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


def _template_json_text(body: bytes, templater: Templater, own: JobDraft | None, drafts: list[JobDraft]) -> str:
    """A JSON body re-serialised with placeholders, in the same separators the sender used."""
    try:
        text = body.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return templater.text(body.decode("utf-8", "replace"))
    compact = text == json.dumps(value, separators=(",", ":"))
    return dumps_templated(_template_structure(value, templater, own, drafts), compact=compact)


def _owner(x: HttpExchange, drafts: list[JobDraft]) -> JobDraft | None:
    """The job an exchange belongs to: the one whose prompt_id or output file it names, else the latest before it."""
    for draft in drafts:
        if draft.exchange is x:
            return draft
    for draft in drafts:
        if draft.prompt_id and _names(x, draft.prompt_id):
            return draft
    for draft in drafts:
        if any(image["filename"] in x.url for _, _, image in draft.images):
            return draft
    before = [d for d in drafts if d.exchange.t <= x.t]
    return before[-1] if before else None


def _names(x: HttpExchange, prompt_id: str) -> bool:
    """True when the request names ``prompt_id`` as ComfyUI's routes do: a path segment or a query value."""
    return prompt_id in (unquote(segment) for segment in urlsplit(x.url).path.split("/")) or any(v == prompt_id for _, v in x.query)


def _interaction(x: HttpExchange, drafts: list[JobDraft], clients: dict[str, str], blobs: BlobStore) -> Interaction:
    """One vcrpy interaction, templated in the context of the job it belongs to."""
    own = _owner(x, drafts)
    templater = _templater_for(own, drafts, clients)
    parts = urlsplit(x.url)
    query = [(k, _template_query_value(k, v, x, templater, own)) for k, v in x.query]
    uri = urlunsplit((parts.scheme, parts.netloc, templater.path(parts.path), urlencode(query, safe="{}"), ""))
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
    content_type = (x.header("Content-Type") or "").split(";")[0].strip()
    body, body_file = "", None
    if not x.response_body:
        pass
    elif x.response_json() is not None and len(x.response_body) <= INLINE_LIMIT:
        body = _template_json_text(x.response_body, templater, own, drafts)
    elif content_type.startswith("text/") and len(x.response_body) <= INLINE_LIMIT:
        body = templater.text(x.response_body.decode("utf-8", "replace"))
    else:
        body_file = blobs.put(x.response_body, _EXT_OF.get(content_type, "bin"))
    return Interaction(
        method=x.method, uri=uri, status=x.status, reason=x.reason, request_body=request_body,
        request_headers=_headers(x.request_headers, templater), response_headers=_headers(x.response_headers, templater),
        body=body, body_file=body_file, job=own.index if own is not None else None,
    )


def _template_query_value(key: str, value: str, x: HttpExchange, templater: Templater, own: JobDraft | None) -> str:
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
