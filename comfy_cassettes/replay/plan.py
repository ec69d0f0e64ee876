"""Chooses what a submitted prompt will do: a matching recorded job, or a synthetic run built from its graph."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..cassette import Job, OutputImage, WsEvent
from .protocol import is_link

OUTPUT_CLASSES = {"SaveImage": "output", "PreviewImage": "temp", "SaveImageWebsocket": None}
# Inputs that vary per run without changing what the server does: never used to tell recordings apart.
VOLATILE_INPUTS = {"seed", "noise_seed", "text", "filename_prefix"}
# Inputs that decide how many images come out: a recording with other values would replay the wrong count.
COUNT_INPUTS = {"batch_size", "amount", "length"}


@dataclass(frozen=True)
class Plan:
    """The event stream and images one queued prompt will produce."""

    events: tuple[WsEvent, ...]
    outputs: tuple[OutputImage, ...]
    cached: tuple[str, ...]
    status: str
    job: Job | None  # the recorded job replayed, None when synthetic
    queued_for: float = 0.0

    @property
    def synthetic(self) -> bool:
        return self.job is None


def structure(workflow: Mapping[str, Any]) -> str:
    """A key equal for workflows with the same node ids, classes and links (values ignored)."""
    shape = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        links = sorted((k, v[0], v[1]) for k, v in inputs.items() if is_link(v))
        shape[str(node_id)] = [node.get("class_type") if isinstance(node, dict) else None, links]
    return json.dumps(shape, sort_keys=True)


def _same_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """How many non-volatile widget values two structurally equal workflows share."""
    score = 0
    for node_id, node in a.items():
        other = b.get(node_id, {}).get("inputs", {})
        for key, value in node.get("inputs", {}).items():
            if key not in VOLATILE_INPUTS and not is_link(value) and other.get(key) == value:
                score += 1
    return score


def _differs(a: Mapping[str, Any], b: Mapping[str, Any], node: str, key: str) -> bool:
    left = (a.get(node) or {}).get("inputs", {}).get(key)
    right = (b.get(node) or {}).get("inputs", {}).get(key)
    return bool(left != right)


def signatures(workflow: Mapping[str, Any]) -> dict[str, str]:
    """Each node's cache signature: its class and values plus its ancestors' signatures, like ComfyUI's cache key."""
    done: dict[str, str] = {}

    def sig(node_id: str, seen: frozenset[str]) -> str:
        if node_id in done:
            return done[node_id]
        node = workflow.get(node_id)
        if not isinstance(node, dict) or node_id in seen:
            return f"missing:{node_id}"
        parts = []
        for key, value in sorted(node.get("inputs", {}).items()):
            parts.append([key, sig(value[0], seen | {node_id}) + f"#{value[1]}" if is_link(value) else value])
        done[node_id] = json.dumps([node.get("class_type"), parts], sort_keys=True, default=str)
        return done[node_id]

    for node_id in workflow:
        sig(str(node_id), frozenset())
    return done


class JobIndex:
    """The recorded jobs, grouped once by workflow structure, so matching a submission costs one lookup."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = list(jobs)
        self._by_structure: dict[str, list[Job]] = {}
        for job in self.jobs:
            self._by_structure.setdefault(structure(job.workflow), []).append(job)

    def choose(self, workflow: Mapping[str, Any], *, has_client: bool, cached: Sequence[str]) -> Job | None:
        """The recorded job that best matches a submission, or None.

        Same structure is required; then the recorded cache pattern must agree with the engine's (a fully
        cached re-run only replays a fully cached recording) and so must the image counts; then shared values,
        recorded image bytes, client presence and a finished recording break ties.
        """
        best: tuple[tuple[int, ...], Job] | None = None
        for job in self._by_structure.get(structure(workflow), []):
            if job.status in ("rejected", "unfinished") or sorted(job.cached) != sorted(cached):
                continue
            if any(_differs(workflow, job.workflow, node, name) for node in workflow for name in COUNT_INPUTS):
                continue
            if has_client and not job.has_client:
                continue  # recorded without a client_id: it holds only the broadcast events, not the client's stream
            shared = _same_values(workflow, job.workflow)
            # A recorded failure was caused by its values: replay it only for the very same values.
            if job.status == "error" and shared != _same_values(job.workflow, job.workflow):
                continue
            finished = int(job.status != "interrupted")  # an interrupted recording only knows half the run
            with_bytes = int(all(o.file for o in job.outputs))
            score = (finished, shared, with_bytes, int(job.has_client == has_client), len(job.ws))
            if best is None or score > best[0]:
                best = (score, job)
        return best[1] if best else None

    def rejection(self, workflow: Mapping[str, Any]) -> Job | None:
        """A recorded 400 for exactly this workflow (used when no /object_info is recorded to validate against)."""
        for job in self._by_structure.get(structure(workflow), []):
            if job.status == "rejected" and job.workflow == workflow:
                return job
        return None


# ---------------------------------------------------------------- synthetic runs


def image_size(workflow: Mapping[str, Any], node_id: str, input_size: Any = None) -> tuple[int, int, int]:
    """(width, height, batch) flowing out of ``node_id``, read from the graph where its nodes say it."""
    node = workflow.get(node_id)
    if not isinstance(node, dict):
        return 512, 512, 1
    inputs = node.get("inputs", {})
    cls = node.get("class_type")
    upstream = next((v for k, v in inputs.items() if is_link(v) and k in ("image", "images", "pixels", "samples")), None)
    w, h, b = image_size(workflow, upstream[0], input_size) if upstream else (512, 512, 1)
    if cls in ("EmptyImage", "EmptyLatentImage", "EmptySD3LatentImage"):
        return _number(inputs.get("width"), 512), _number(inputs.get("height"), 512), _number(inputs.get("batch_size"), 1)
    if cls in ("ImageScale", "LatentUpscale"):
        return _number(inputs.get("width"), w) or w, _number(inputs.get("height"), h) or h, b
    if cls in ("ImageScaleBy", "LatentUpscaleBy"):
        f = _number(inputs.get("scale_by"), 1.0, float)
        return max(1, round(w * f)), max(1, round(h * f)), b
    if cls == "LoadImage" and callable(input_size):
        size = input_size(str(inputs.get("image", "")))
        if size:
            return int(size[0]), int(size[1]), 1
    return w, h, b


def _number(value: Any, fallback: Any, kind: type = int) -> Any:
    """A widget's number; a value wired from another node (a primitive) is unknown here: ``fallback``."""
    try:
        return kind(value) if value is not None and not is_link(value) else fallback
    except (TypeError, ValueError):
        return fallback


def synthesize(
    workflow: Mapping[str, Any],
    order: Sequence[str],
    outputs_to_execute: Sequence[str],
    *,
    cached: Sequence[str] = (),
    input_size: Any = None,
) -> Plan:
    """A run of ``workflow`` in the event order real ComfyUI produces (basic_save capture), for unrecorded graphs."""
    events: list[WsEvent] = [
        WsEvent(0.0, "execution_start", {"prompt_id": "{{prompt_id}}", "timestamp": "{{now_ms}}"}),
        WsEvent(0.0, "execution_cached", {"nodes": list(cached), "prompt_id": "{{prompt_id}}", "timestamp": "{{now_ms}}"}),
    ]
    images: list[OutputImage] = []
    progress: dict[str, dict[str, Any]] = {}

    def state(node_id: str, value: float, kind: str) -> WsEvent:
        progress[node_id] = {
            "value": value, "max": 1.0, "state": kind, "node_id": node_id, "prompt_id": "{{prompt_id}}",
            "display_node_id": node_id, "parent_node_id": None, "real_node_id": node_id,
        }
        return WsEvent(0.0, "progress_state", {"prompt_id": "{{prompt_id}}", "nodes": json.loads(json.dumps(progress))})

    for node_id in order:
        node = workflow[node_id]
        cls = node.get("class_type")
        kind = OUTPUT_CLASSES.get(cls, "") if cls in OUTPUT_CLASSES else ""
        produced: list[OutputImage] = []
        if kind and node_id in outputs_to_execute:
            link = node.get("inputs", {}).get("images")
            w, h, b = image_size(workflow, link[0], input_size) if is_link(link) else (512, 512, 1)
            produced = [OutputImage(node_id, i, kind, w, h) for i in range(b)]
        if node_id in cached:
            if produced:
                events.append(_executed(node_id, produced))
                progress[node_id] = {"value": 1, "max": 1, "state": "finished", "node_id": node_id, "prompt_id": "{{prompt_id}}",
                                     "display_node_id": node_id, "parent_node_id": None, "real_node_id": node_id}
                events.append(WsEvent(0.0, "progress_state", {"prompt_id": "{{prompt_id}}", "nodes": json.loads(json.dumps(progress))}))
                images.extend(produced)
            continue
        events.append(state(node_id, 0.0, "running"))
        events.append(WsEvent(0.0, "executing", {"node": node_id, "display_node": node_id, "prompt_id": "{{prompt_id}}"}))
        if produced:
            events.append(_executed(node_id, produced))
            images.extend(produced)
        events.append(state(node_id, 1.0, "finished"))
    events.append(WsEvent(0.0, "execution_success", {"prompt_id": "{{prompt_id}}", "timestamp": "{{now_ms}}"}))
    return Plan(tuple(events), tuple(images), tuple(cached), "success", None)


def _executed(node_id: str, images: Sequence[OutputImage]) -> WsEvent:
    listed = [
        {"filename": f"{{{{out.{node_id}.{i.index}.filename}}}}", "subfolder": f"{{{{out.{node_id}.{i.index}.subfolder}}}}", "type": i.kind}
        for i in images
    ]
    data = {"node": node_id, "display_node": node_id, "output": {"images": listed}, "prompt_id": "{{prompt_id}}"}
    return WsEvent(0.0, "executed", data)


def resume_interrupted(job: Job, synthetic: Plan) -> Plan:
    """A recorded run that was interrupted: its real events and pace up to the interruption, then the rest of
    the graph synthesized at the recorded pace, so a replay runs to the end unless it is interrupted again."""
    recorded = [e for e in job.ws if e.type != "execution_interrupted"]
    started = {str(e.data.get("node")) for e in recorded if e.type == "executing" and isinstance(e.data, dict)}
    times = [e.t for e in recorded if e.type == "executing"]
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    t = recorded[-1].t if recorded else 0.0
    rest: list[WsEvent] = []
    skipping = True
    for event in synthetic.events:
        node = str(event.data.get("node")) if isinstance(event.data, dict) and "node" in event.data else None
        if event.type in ("execution_start", "execution_cached"):
            continue
        if event.type == "executing" and node not in started:
            skipping = False
            t += step
        if not skipping:
            rest.append(WsEvent(t, event.type, event.data, event.binary))
    return Plan(tuple(recorded + rest), synthetic.outputs, job.cached, "success", job, job.queued_for)


def from_job(job: Job, workflow: Mapping[str, Any], input_size: Any = None) -> Plan:
    """A plan that replays a recorded job as it happened; images the recording never downloaded get the
    size the submitted graph says."""
    outputs = tuple(_sized(o, workflow, input_size) for o in job.outputs)
    return Plan(job.ws, outputs, job.cached, job.status, job, job.queued_for)


def _sized(image: OutputImage, workflow: Mapping[str, Any], input_size: Any) -> OutputImage:
    if image.width and image.height:
        return image
    link = (workflow.get(image.node) or {}).get("inputs", {}).get("images")
    width, height, _ = image_size(workflow, link[0], input_size) if is_link(link) else (512, 512, 1)
    return OutputImage(image.node, image.index, image.kind, width, height, image.file)
