"""ComfyUI's jobs API (``/api/jobs``, 0.6.0+), computed from the engine's real queue and history.

A port of comfy_execution/jobs.py and the routes of server.py as each version has them: 0.8.0's (pollockjj/
ComfyUI 618b803d: four statuses, an interrupted job is failed, plain previews, no cancel routes) and 0.38's
(Comfy-Org/ComfyUI 783545f6: ``cancelled``, previewable counts, text and 3D previews, normalized outputs, the
cancel routes). Which one is the profile's rows ``jobs_cancelled_status`` and ``jobs_rich_previews``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...comfy.events import TERMINAL
from ...comfy.profiles import Profile
from ...comfy.protocol import is_canonical_uuid

if TYPE_CHECKING:
    from ..sim.engine import ReplayEngine

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "pending", "in_progress", "completed", "failed", "cancelled"
PREVIEWABLE_MEDIA_TYPES = frozenset({"images", "video", "audio", "3d", "text"})
PLAIN_PREVIEWABLE_MEDIA_TYPES = frozenset({"images", "video", "audio"})  # 0.8.0
THREE_D_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")
PLAIN_THREE_D_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb")  # 0.8.0
TEXT_EXTENSIONS = (".txt", ".md", ".json")
TEXT_PREVIEW_MAX_LENGTH = 1024


class JobsError(Exception):
    """A 400 of the jobs routes, with ComfyUI's exact message."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.body = {"error": message, **extra}


def _prune(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _metadata(extra_data: Mapping[str, Any]) -> tuple[Any, Any]:
    info = extra_data.get("extra_pnginfo") or {}
    workflow = info.get("workflow") if isinstance(info, dict) else None
    return extra_data.get("create_time"), workflow.get("id") if isinstance(workflow, dict) else None


def statuses(profile: Profile) -> list[str]:
    """JobStatus.ALL of the version, in its order."""
    return [PENDING, IN_PROGRESS, COMPLETED, FAILED] + ([CANCELLED] if profile.jobs_cancelled_status else [])


def queue_job(item: Sequence[Any], status: str, profile: Profile) -> dict[str, Any]:
    """normalize_queue_item: a pending or running queue item."""
    create_time, workflow_id = _metadata(item[3])
    counts = {"outputs_count": 0, "previewable_outputs_count": 0} if profile.jobs_rich_previews else {"outputs_count": 0}
    return _prune({"id": item[1], "status": status, "priority": item[0], "create_time": create_time,
                   **counts, "workflow_id": workflow_id})


def history_job(prompt_id: str, entry: Mapping[str, Any], profile: Profile, *, detail: bool = False) -> dict[str, Any]:
    """normalize_history_item: a finished prompt (with its outputs, status and workflow for ``detail``)."""
    if not profile.jobs_rich_previews:
        return _plain_history_job(prompt_id, entry, detail=detail)
    priority, _, prompt, extra_data, _ = entry["prompt"]
    create_time, workflow_id = _metadata(extra_data)
    status_info = entry.get("status") or {}
    outputs = entry.get("outputs") or {}
    count, preview = _summary(outputs)
    start, end, error, interrupted = _execution(status_info)
    status_str = status_info.get("status_str")
    status = (CANCELLED if interrupted and profile.jobs_cancelled_status else FAILED) if status_str == "error" else COMPLETED
    job = _prune({"id": prompt_id, "status": status, "priority": priority, "create_time": create_time,
                  "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                  "outputs_count": count, "previewable_outputs_count": _previewable(outputs),
                  "preview_output": preview, "workflow_id": workflow_id})
    if detail:
        job["outputs"] = _normalized(outputs)
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _plain_history_job(prompt_id: str, entry: Mapping[str, Any], *, detail: bool) -> dict[str, Any]:
    """0.8.0's normalize_history_item: outputs as stored, the plain preview summary, no previewable count."""
    priority, _, prompt, extra_data, _ = entry["prompt"]
    create_time, workflow_id = _metadata(extra_data)
    status_info = entry.get("status") or {}
    outputs = entry.get("outputs") or {}
    count, preview = _plain_summary(outputs)
    start, end, error, _ = _execution(status_info)
    job = _prune({"id": prompt_id, "status": FAILED if status_info.get("status_str") == "error" else COMPLETED,
                  "priority": priority, "create_time": create_time, "execution_start_time": start,
                  "execution_end_time": end, "execution_error": error, "outputs_count": count,
                  "preview_output": preview, "workflow_id": workflow_id})
    if detail:
        job["outputs"] = outputs
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _execution(status_info: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any] | None, bool]:
    """What a history entry's status messages say of the run: its start and end timestamps, its error message,
    and whether it was interrupted."""
    start = end = error = None
    interrupted = False
    for message in status_info.get("messages") or []:
        if isinstance(message, (list, tuple)) and len(message) >= 2 and isinstance(message[1], dict):
            name, data = message[0], message[1]
            if name == "execution_start":
                start = data.get("timestamp")
            elif name in TERMINAL:
                end = data.get("timestamp")
                error = data if name == "execution_error" else error
                interrupted = interrupted or name == "execution_interrupted"
    return start, end, error, interrupted


def _plain_summary(outputs: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """0.8.0's get_outputs_summary: dict items counted, the first saved (else any) image, video or audio."""
    count = 0
    preview = fallback = None
    for node, media, item in _output_items(outputs):
        if not isinstance(item, dict):
            continue
        count += 1
        fmt, filename = str(item.get("format", "")), str(item.get("filename", "")).lower()
        if preview is not None or not (media in PLAIN_PREVIEWABLE_MEDIA_TYPES or fmt.startswith(("video/", "audio/"))
                                       or filename.endswith(PLAIN_THREE_D_EXTENSIONS)):
            continue
        enriched = {**item, "nodeId": node, "mediaType": media}
        if item.get("type") == "output":
            preview = enriched
        elif fallback is None:
            fallback = enriched
    return count, preview or fallback


def _normalized_item(item: Any) -> Any:
    if isinstance(item, str):
        return {"filename": item, "type": "output", "subfolder": "", "mediaType": "3d"} if item.lower().endswith(THREE_D_EXTENSIONS) else None
    return item if isinstance(item, dict) else None


def _normalized(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """normalize_outputs: 3D filename strings as file entries, None items dropped."""
    result: dict[str, Any] = {}
    for node, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            result[node] = node_outputs
            continue
        result[node] = {media: items if media == "animated" or not isinstance(items, list)
                        else [_normalized_item(i) or i for i in items if i is not None]
                        for media, items in node_outputs.items()}
    return result


def _is_previewable(media: str, item: Mapping[str, Any]) -> bool:
    if media in PREVIEWABLE_MEDIA_TYPES:
        return True
    fmt = str(item.get("format", ""))
    filename = str(item.get("filename", "")).lower()
    return fmt.startswith(("video/", "audio/")) or filename.endswith(THREE_D_EXTENSIONS + TEXT_EXTENSIONS)


def _output_items(outputs: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(node, media type, item) of every listed output, as jobs.py walks them ("animated" flags skipped)."""
    for node, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media, items in node_outputs.items():
            if media == "animated" or not isinstance(items, list):
                continue
            for item in items:
                yield node, media, item


def _summary(outputs: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """get_outputs_summary: how many outputs, and the preview (saved media, other media, text file, text)."""
    count = 0
    preview = fallback = text_file = text = None
    for node, media, item in _output_items(outputs):
        if not isinstance(item, dict):
            normalized = _normalized_item(item)
            if normalized is None:
                if media == "text" and preview is None and text is None:
                    value = (item[0] if item else "") if isinstance(item, tuple) else str(item)
                    shown = {"content": value} if len(value) <= TEXT_PREVIEW_MAX_LENGTH else {"content": value[:TEXT_PREVIEW_MAX_LENGTH], "truncated": True}
                    text = {**shown, "nodeId": node, "mediaType": media}
                continue
            item = normalized
        count += 1
        if preview is not None or not _is_previewable(media, item):
            continue
        enriched = {**item, "nodeId": node}
        if "mediaType" not in item:
            enriched["mediaType"] = media
        if media == "text" or str(item.get("filename", "")).lower().endswith(TEXT_EXTENSIONS):
            text_file = text_file or enriched
        elif item.get("type") == "output":
            preview = enriched
        elif fallback is None:
            fallback = enriched
    return count, preview or fallback or text_file or text


def _previewable(outputs: Mapping[str, Any]) -> int:
    """count_previewable_outputs."""
    count = 0
    for _, media, item in _output_items(outputs):
        item = item if isinstance(item, dict) else _normalized_item(item)
        if item is not None and _is_previewable(media, item):
            count += 1
    return count


# ---------------------------------------------------------------- the routes' logic


def list_jobs(engine: ReplayEngine, query: Mapping[str, str]) -> dict[str, Any]:
    """GET /api/jobs: validate the query like server.py get_jobs, then filter, sort and page."""
    known = wanted = statuses(engine.profile)
    if query.get("status"):
        wanted = [s.strip().lower() for s in query["status"].split(",") if s.strip()]
        invalid = [s for s in wanted if s not in known]
        if invalid:
            raise JobsError(f"Invalid status value(s): {', '.join(invalid)}. Valid values: {', '.join(known)}")
    sort_by, sort_order = query.get("sort_by", "created_at").lower(), query.get("sort_order", "desc").lower()
    if sort_by not in ("created_at", "execution_duration"):
        raise JobsError("sort_by must be 'created_at' or 'execution_duration'")
    if sort_order not in ("asc", "desc"):
        raise JobsError("sort_order must be 'asc' or 'desc'")
    limit = None
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            raise JobsError("limit must be an integer") from None
        if limit <= 0:
            raise JobsError("limit must be a positive integer")
    offset = 0
    if "offset" in query:
        try:
            offset = max(0, int(query["offset"]))
        except ValueError:
            raise JobsError("offset must be an integer") from None

    jobs: list[dict[str, Any]] = []
    running = engine.queue.running
    if IN_PROGRESS in wanted and running is not None:
        jobs.append(queue_job(running.as_list(), IN_PROGRESS, engine.profile))
    if PENDING in wanted:
        jobs.extend(queue_job(item.as_list(), PENDING, engine.profile) for item in engine.queue.pending)
    finished = {COMPLETED, FAILED, CANCELLED} & set(wanted)
    if finished:
        jobs.extend(job for prompt_id, entry in engine.history.entries.items()
                    if (job := history_job(prompt_id, entry, engine.profile))["status"] in finished)
    if query.get("workflow_id"):
        jobs = [j for j in jobs if j.get("workflow_id") == query["workflow_id"]]

    def key(job: dict[str, Any]) -> Any:
        if sort_by == "execution_duration":
            start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
            return end - start if end and start else 0
        return job.get("create_time", 0)

    jobs = sorted(jobs, key=key, reverse=sort_order == "desc")
    total = len(jobs)
    page = jobs[offset:][:limit] if limit is not None else jobs[offset:]
    return {"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total}}


def get_job(engine: ReplayEngine, job_id: str) -> dict[str, Any] | None:
    """GET /api/jobs/{id}: a finished job in full, or a running or pending one; None when unknown."""
    entry = engine.history.entries.get(job_id)
    if entry is not None:
        return history_job(job_id, entry, engine.profile, detail=True)
    running = engine.queue.running
    if running is not None and running.prompt_id == job_id:
        return queue_job(running.as_list(), IN_PROGRESS, engine.profile)
    pending = next((item for item in engine.queue.pending if item.prompt_id == job_id), None)
    return queue_job(pending.as_list(), PENDING, engine.profile) if pending is not None else None


def cancel(engine: ReplayEngine, job_id: str) -> bool:
    """Cancel one job (server.py _cancel_job_by_id): interrupt it when it runs, dequeue it when it waits;
    a finished or unknown id is a no-op. True when a cancel was dispatched."""
    running = engine.queue.running
    if running is not None and running.prompt_id == job_id:
        engine.interrupt({"prompt_id": job_id})
        return True
    if any(item.prompt_id == job_id for item in engine.queue.pending):
        engine.delete_from_queue({"delete": [job_id]})
        return True
    return False


def cancel_batch(engine: ReplayEngine, body: Any) -> bool:
    """POST /api/jobs/cancel: every id checked first (400 naming the invalid ones), then each cancelled."""
    job_ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(job_ids, list):
        raise JobsError("job_ids must be a list")
    invalid = [jid if isinstance(jid, str) else repr(jid) for jid in job_ids if not is_canonical_uuid(jid)]
    if invalid:
        raise JobsError("job_ids contains invalid id(s)", invalid_ids=invalid)
    cancelled = False
    for job_id in job_ids:
        cancelled = cancel(engine, job_id) or cancelled
    return cancelled
