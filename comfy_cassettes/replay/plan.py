"""Chooses what a submitted prompt will do: a matching recorded job, or a synthetic run built from its graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..comfy.events import WsEvent
from ..model import Job, OutputImage
from ..comfy.graph import InputSize, is_link, output_size, structure
from ..comfy.nodes import COUNT_INPUTS, OUTPUT_CLASSES, VOLATILE_INPUTS
from ..comfy.timeline import timeline
from ..templating import out_name, parse_templated, placeholder


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

    def acceptance(self, workflow: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        """What ComfyUI answered when it accepted exactly this workflow: its ``node_errors`` and the outputs it
        queued (a partly valid prompt runs only its valid outputs: error_invalid_prompt capture)."""
        for job in self._by_structure.get(structure(workflow), []):
            if job.status != "rejected" and job.workflow == workflow and job.outputs_to_execute:
                answer = parse_templated(job.response_body)
                errors = answer.get("node_errors") if isinstance(answer, dict) else None
                return (errors if isinstance(errors, dict) else {}), list(job.outputs_to_execute)
        return None

    def output_order(self, workflow: Mapping[str, Any], outputs: Sequence[str]) -> list[str]:
        """``outputs`` in the order a recording of this graph listed them. ComfyUI builds the list from a set, so
        its order is the recorded process's; a replay of that recording keeps it."""
        wanted = sorted(outputs)
        for job in self._by_structure.get(structure(workflow), []):
            if job.outputs_to_execute and sorted(job.outputs_to_execute) == wanted:
                return list(job.outputs_to_execute)
        return list(outputs)


# ---------------------------------------------------------------- synthetic runs


def synthesize(
    workflow: Mapping[str, Any],
    order: Sequence[str],
    outputs_to_execute: Sequence[str],
    *,
    cached: Sequence[str] = (),
    input_size: InputSize | None = None,
) -> Plan:
    """A run of ``workflow`` in the event order real ComfyUI produces, for graphs no recording has."""
    images: list[OutputImage] = []
    outputs: dict[str, Any] = {}
    for node_id in order:
        cls = workflow[node_id].get("class_type")
        kind = OUTPUT_CLASSES.get(cls) if cls in OUTPUT_CLASSES else None
        if kind and node_id in outputs_to_execute:
            width, height, batch = output_size(workflow, node_id, input_size)
            produced = [OutputImage(node_id, i, kind, width, height) for i in range(batch)]
            images.extend(produced)
            outputs[node_id] = {"images": [_image_ref(image) for image in produced]}
    events = timeline(order, prompt_id=placeholder("prompt_id"), timestamp=placeholder("now_ms"), cached=cached, outputs=outputs)
    return Plan(tuple(events), tuple(images), tuple(cached), "success", None)


def _image_ref(image: OutputImage) -> dict[str, str]:
    return {"filename": placeholder(out_name(image.node, image.index)),
            "subfolder": placeholder(out_name(image.node, image.index, "subfolder")), "type": image.kind}


def resume_interrupted(job: Job, synthetic: Plan) -> Plan:
    """A recorded run that was interrupted: its real events and pace up to the interruption, then the rest of
    the graph synthesized at the recorded pace, so a replay runs to the end unless it is interrupted again."""
    recorded = [e for e in job.ws if e.type != "execution_interrupted"]
    started = set(started_nodes(recorded))
    times = [e.t for e in recorded if e.type == "executing"] or [e.t for e in recorded if e.type == "progress_state"]
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    t = recorded[-1].t if recorded else 0.0
    rest: list[WsEvent] = []
    skipping = True
    for event in synthetic.events:
        node = str(event.data.get("node")) if isinstance(event.data, dict) and "node" in event.data else None
        if event.type in ("execution_start", "execution_cached"):
            continue
        if skipping and event.type == "progress_state" and _running(event) - started:
            skipping = False
            t += step
        if not skipping:
            rest.append(WsEvent(t, event.type, event.data, event.binary))
    return Plan(tuple(recorded + rest), synthetic.outputs, job.cached, "success", job, job.queued_for)


def _running(event: WsEvent) -> set[str]:
    nodes = event.data.get("nodes") if isinstance(event.data, dict) else None
    return {str(n) for n, s in (nodes or {}).items() if isinstance(s, dict) and s.get("state") == "running"}


def started_nodes(events: Sequence[WsEvent]) -> list[str]:
    """The nodes a stream shows starting, in order: by ``executing``, or by their first "running" progress_state
    (all a client sees of a prompt sent without client_id)."""
    started: list[str] = []
    for event in events:
        if event.type == "executing" and isinstance(event.data, dict) and event.data.get("node") is not None:
            found = {str(event.data["node"])}
        elif event.type == "progress_state":
            found = _running(event)
        else:
            continue
        started.extend(sorted(found - set(started)))
    return started


def from_job(job: Job, workflow: Mapping[str, Any], input_size: InputSize | None = None) -> Plan:
    """A plan that replays a recorded job as it happened; images the recording never downloaded get the
    size the submitted graph says."""
    outputs = tuple(_sized(o, workflow, input_size) for o in job.outputs)
    return Plan(job.ws, outputs, job.cached, job.status, job, job.queued_for)


def _sized(image: OutputImage, workflow: Mapping[str, Any], input_size: InputSize | None) -> OutputImage:
    if image.width and image.height:
        return image
    width, height, _ = output_size(workflow, image.node, input_size)
    return OutputImage(image.node, image.index, image.kind, width, height, image.file)
