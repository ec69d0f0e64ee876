"""Chooses what a submitted prompt will do: a matching recorded job replayed as recorded, or the graph run with
the submitted values (at a recording's pace when one has the same graph)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...comfy.behaviours import InputSize, output_size, sampler_steps, seed, seed_at, seed_holder
from ...comfy.events import Event, WsEvent
from ...comfy.graph import node_roles, structure
from ...comfy.nodes import OUTPUT_CLASSES
from ...comfy.timeline import PREVIEW, Pace, from_history, timeline
from ...cassette.model import Job, OutputImage
from ...cassette.naming import out_name
from ...cassette.templating import Renderer, compile_value, parse_templated, placeholder
from .matching import KINDS_KEPT, Facts, Kind, decisive_values


@dataclass(frozen=True)
class Plan:
    """The event stream and images one queued prompt will produce."""

    events: tuple[WsEvent, ...]
    outputs: tuple[OutputImage, ...]
    cached: tuple[str, ...]
    status: str
    job: Job | None  # the recorded job replayed, None when synthetic
    queued_for: float = 0.0
    seeds: Mapping[str, int] = field(default_factory=dict)  # output node -> the seed its images come from

    @property
    def synthetic(self) -> bool:
        return self.job is None

    def images_of(self, node: str) -> dict[int, OutputImage]:
        """One output node's images by index (indexed once: a wide prompt asks for each of its outputs)."""
        by_node: dict[str, dict[int, OutputImage]] | None = self.__dict__.get("_by_node")
        if by_node is None:
            by_node = self.__dict__["_by_node"] = {}
            for image in self.outputs:
                by_node.setdefault(image.node, {})[image.index] = image
        return by_node.get(node, {})


class JobIndex:
    """The recorded jobs, grouped once by workflow structure, so matching a submission costs one lookup."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = list(jobs)
        self._by_structure: dict[str, list[Job]] = {}
        self._by_roles: dict[str, list[Job]] = {}  # the same, whatever the node ids (for a recording's pace)
        self._facts = {id(job): Facts.of(job) for job in self.jobs}
        self._kinds: dict[tuple[str, bool, tuple[str, ...], tuple[str, ...]], Kind] = {}
        self._history_renderers: dict[tuple[int, tuple[str, ...]], Renderer] = {}
        # Per structure, each recorded set of outputs (sorted) in the order the first recording listed it.
        self._output_orders: dict[str, dict[tuple[str, ...], list[str]]] = {}
        for job in self.jobs:
            shape = structure(job.workflow)
            self._by_structure.setdefault(shape, []).append(job)
            self._by_roles.setdefault(_roles_key(node_roles(job.workflow)), []).append(job)
            if job.outputs_to_execute:
                self._output_orders.setdefault(shape, {}).setdefault(tuple(sorted(job.outputs_to_execute)), list(job.outputs_to_execute))

    def rendered_history(self, job: Job, bindings: Mapping[str, Any], parts: tuple[str, ...] = ("outputs", "meta")) -> Any:
        """The ``parts`` of the job's recorded history entry a run takes (of ``outputs`` and ``meta``: its status
        messages are the run's own), with a replay's values; each renderer is compiled on first use."""
        key = (id(job), parts)
        render = self._history_renderers.get(key)
        if render is None:
            kept = {k: v for k, v in job.history.items() if k in parts} if isinstance(job.history, dict) else job.history
            render = self._history_renderers[key] = compile_value(kept)
        return render(bindings)

    def _same_shape(self, workflow: Mapping[str, Any], shape: str | None) -> list[Job]:
        """The recorded jobs with ``workflow``'s structure (``shape``, when the caller worked it out already)."""
        return self._by_structure.get(shape if shape is not None else structure(workflow), [])

    def choose(self, workflow: Mapping[str, Any], *, has_client: bool, cached: Sequence[str], shape: str | None = None,
               outputs: Sequence[str] = ()) -> Job | None:
        """The recorded job that best matches a submission, or None.

        Same structure is required, the same output nodes run (``outputs``, the submission's outputs_to_execute: a
        job recorded with partial_execution_targets ran only those), and the same values where they decide what a
        client sees (sizes, image counts, sampler steps); the recorded cache pattern must agree with the engine's (a
        fully cached re-run only replays a fully cached recording); then shared values, recorded image bytes, client
        presence and a finished recording break ties.
        """
        kind = self._kind(shape if shape is not None else structure(workflow), has_client, cached, outputs)
        if kind is None:
            return None
        decisive = decisive_values(workflow)
        candidates, compare = kind.matching(decisive)
        return candidates.best(workflow, decisive if compare else None)

    def _kind(self, shape: str, has_client: bool, cached: Sequence[str], outputs: Sequence[str]) -> Kind | None:
        """The recorded jobs of ``shape`` that :meth:`choose` may take whatever the values, worked out once per kind of
        submission: the same cache pattern, the same outputs, and with a client, a stream a client can be sent."""
        if shape not in self._by_structure:
            return None
        wanted_cached, wanted_outputs = sorted(cached), sorted(outputs)
        key = (shape, has_client, tuple(wanted_cached), tuple(wanted_outputs))
        found = self._kinds.get(key)
        if found is None:
            jobs = []
            for job in self._by_structure[shape]:
                facts = self._facts[id(job)]
                if job.status in ("rejected", "unfinished") or facts.cached != wanted_cached:
                    continue
                if wanted_outputs and job.outputs_to_execute and sorted(job.outputs_to_execute) != wanted_outputs:
                    continue
                if has_client and not job.has_client and (job.status not in ("success", "error") or not job.history):
                    continue  # recorded without a client_id: only history can tell the client's stream, for a finished job
                jobs.append((job, facts))
            if len(self._kinds) >= KINDS_KEPT:
                self._kinds.clear()  # (a bounded few: submissions of the recorded graphs, with their cache patterns)
            found = self._kinds[key] = Kind(jobs, has_client)
        return found

    def pace(self, workflow: Mapping[str, Any], *, has_client: bool, shape: str | None = None) -> Pace | None:
        """How long this graph's nodes took in a recording of the same structure (any values, any node ids: a
        client such as ComfyScript names its nodes its own way), for running it with other values at the recorded
        pace; None when no finished recording has it."""
        same = self._same_shape(workflow, shape)
        roles = None if same else node_roles(workflow)
        candidates = same or self._by_roles.get(_roles_key(roles or {}), [])
        jobs = [j for j in candidates if j.status in ("success", "interrupted") and j.ws and (j.has_client or not has_client)]
        if not jobs:
            return None
        job = max(jobs, key=lambda j: (j.status == "success", len(j.ws)))
        pace = recorded_pace(job)
        if roles is None:
            return pace
        # The recording's node ids -> this graph's, by role.
        theirs = {role: node for node, role in node_roles(job.workflow).items()}
        ours = {node: theirs[role] for node, role in roles.items() if role in theirs}
        return Pace({n: pace.node[r] for n, r in ours.items() if r in pace.node},
                    {n: pace.step[r] for n, r in ours.items() if r in pace.step}, pace.default, pace.start)

    def rejection(self, workflow: Mapping[str, Any]) -> Job | None:
        """A recorded 400 for exactly this workflow (used when no /object_info is recorded to validate against)."""
        for job in self._same_shape(workflow, None):
            if job.status == "rejected" and job.workflow == workflow:
                return job
        return None

    def acceptance(self, workflow: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
        """What ComfyUI answered when it accepted exactly this workflow: its ``node_errors`` and the outputs it
        queued (a partly valid prompt runs only its valid outputs: error_invalid_prompt capture)."""
        for job in self._same_shape(workflow, None):
            if job.status != "rejected" and job.workflow == workflow and job.outputs_to_execute:
                answer = parse_templated(job.response_body)
                errors = answer.get("node_errors") if isinstance(answer, dict) else None
                return (errors if isinstance(errors, dict) else {}), list(job.outputs_to_execute)
        return None

    def recordings(self, workflow: Mapping[str, Any], shape: str | None = None) -> tuple[int, tuple[Job, ...], bool]:
        """The accepted recordings of this very workflow in recorded order (True), else the first of its structure
        (False), with a key for them (recorded_posts.py counts the submissions each set stood for)."""
        same = [j for j in self._same_shape(workflow, shape) if j.status != "rejected"]
        exact = [j for j in same if j.workflow == workflow]
        found = exact or same[:1]
        return (id(found[0]) if found else -1), tuple(found), bool(exact)

    def recorded_verdict(self, workflow: Mapping[str, Any], status: int, node_errors: Mapping[str, Any]) -> dict[str, Any] | None:
        """The answer recorded for exactly this workflow when ComfyUI found the same errors in the same nodes: the
        order of its details lines and the outputs each node error names follow a set of output ids, whose order
        is the recorded process's string hashing; a replay of that recording keeps it."""
        for job in self._same_shape(workflow, None):
            if job.response_status != status or job.workflow != workflow:
                continue
            answer = parse_templated(job.response_body)
            if not isinstance(answer, dict):
                continue
            recorded = answer.get("node_errors")
            if isinstance(recorded, dict) and _same_errors(recorded, node_errors):
                return answer
        return None

    def output_order(self, workflow: Mapping[str, Any], outputs: Sequence[str], shape: str | None = None) -> list[str]:
        """``outputs`` in the order a recording of this graph listed them. ComfyUI builds the list from a set, so
        its order is the recorded process's; a replay of that recording keeps it."""
        recorded = self._output_orders.get(shape if shape is not None else structure(workflow), {}).get(tuple(sorted(outputs)))
        return list(recorded if recorded is not None else outputs)


def _same_errors(recorded: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """Whether two ``node_errors`` name the same nodes with the same kinds of error (tracebacks and the outputs
    charged aside: the former name the recording machine's files, the latter follow the set order). A node's errors
    are compared in any order: validate_inputs walks a set of input names, in the recorded process's hash order."""
    def kinds(errors: Any) -> list[tuple[str, str]]:
        entries = errors.get("errors") if isinstance(errors, dict) else None
        found = [(repr(e.get("type")), repr(e.get("details"))) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        return sorted(found)
    return recorded.keys() == found.keys() and all(kinds(recorded[n]) == kinds(found[n]) for n in found)


# ---------------------------------------------------------------- runs from the graph


def synthesize(
    workflow: Mapping[str, Any],
    order: Sequence[str],
    outputs_to_execute: Sequence[str],
    *,
    cached: Sequence[str] = (),
    input_size: InputSize | None = None,
    previews: bool = False,
    pace: Pace | None = None,
    prompt_id: str | None = None,
) -> Plan:
    """A run of ``workflow`` with its own values, in the event order real ComfyUI produces: each sampler's steps
    (with preview markers when ``previews``), images of the size the graph says, at ``pace``.

    Its ``progress_state`` maps are shared views (timeline.ProgressNodes), made with ``prompt_id`` when given so
    that a message needs no rendering, only building when a client will receive it."""
    images: list[OutputImage] = []
    wanted = set(outputs_to_execute)
    outputs: dict[str, Any] = {}
    seeds: dict[str, int] = {}
    sent: dict[str, tuple[int, int, int]] = {}
    for node_id in order:
        cls = workflow[node_id].get("class_type")
        kind = OUTPUT_CLASSES.get(cls) if cls in OUTPUT_CLASSES else None
        if cls in OUTPUT_CLASSES and kind is None and node_id in wanted and node_id not in cached:
            sent[node_id] = output_size(workflow, node_id, input_size)  # sent over /ws, not saved (SaveImageWebsocket)
        if kind and node_id in wanted:
            width, height, batch = output_size(workflow, node_id, input_size)
            produced = [OutputImage(node_id, i, kind, width, height) for i in range(batch)]
            images.extend(produced)
            outputs[node_id] = {"images": [_image_ref(image) for image in produced]}
        if node_id in sent or node_id in outputs:
            found = seed(workflow, node_id)
            if found is not None:
                seeds[node_id] = found
    skipped = set(cached)
    steps = {n: s for n in order if n not in skipped and (s := sampler_steps(workflow, n)) is not None}
    events = timeline(order, prompt_id=prompt_id or placeholder("prompt_id"), timestamp=placeholder("now_ms"), cached=cached,
                      outputs=outputs, steps=steps, previews=previews, pace=pace, shared_progress=True, sent_images=sent)
    return Plan(tuple(events), tuple(images), tuple(cached), "success", None, pace.start if pace else 0.0, seeds=seeds)


def _roles_key(roles: Mapping[str, str]) -> str:
    """A key equal for graphs whose nodes have the same roles (graph.node_roles), whatever their ids."""
    return json.dumps(sorted(roles.values()))


def _image_ref(image: OutputImage) -> dict[str, str]:
    return {"filename": placeholder(out_name(image.node, image.index)),
            "subfolder": placeholder(out_name(image.node, image.index, "subfolder")), "type": image.kind}


def recorded_pace(job: Job) -> Pace:
    """Each node's recorded run time (start to the next node's start) and each sampler's time per step."""
    starts: list[tuple[str, float]] = []
    steps: dict[str, list[float]] = {}
    for event in job.ws:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == Event.PROGRESS_STATE.value:
            for node in _running(event) - {n for n, _ in starts}:
                starts.append((node, event.t))
        elif event.type == Event.PROGRESS.value and data.get("node") is not None:
            steps.setdefault(str(data["node"]), []).append(event.t)
    end = job.ws[-1].t if job.ws else 0.0
    began = dict(starts)
    node_time = {n: max(0.0, (starts[i + 1][1] if i + 1 < len(starts) else end) - t) for i, (n, t) in enumerate(starts)}
    step_time = {n: (times[-1] - began.get(n, times[0])) / len(times) for n, times in steps.items() if times}
    return Pace(node_time, step_time, start=job.queued_for)


def resume_interrupted(job: Job, synthetic: Plan) -> Plan:
    """A recorded run that was interrupted: its real events and pace up to the interruption, then the rest of the
    graph (the interrupted sampler's remaining steps first), so a replay runs to the end unless it is interrupted
    again."""
    recorded = [e for e in job.ws if e.type != Event.EXECUTION_INTERRUPTED.value]
    seen = {_signature(e) for e in recorded} - {None}
    events = list(synthetic.events)
    frontier = max((i for i, e in enumerate(events) if _signature(e) in seen), default=1)
    t = recorded[-1].t if recorded else 0.0
    offset = t - events[frontier].t
    rest = [WsEvent(e.t + offset, e.type, e.data, e.binary) for e in events[frontier + 1:]]
    return Plan(tuple(recorded + rest), synthetic.outputs, job.cached, "success", job, job.queued_for, synthetic.seeds)


def _signature(event: WsEvent) -> tuple[Any, ...] | None:
    """What identifies a message in a run regardless of ids and times: the node a progress_state last changed
    with its state and value, a node's ``executing``, a step's ``progress``."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.type == Event.PROGRESS_STATE.value and data.get("nodes"):
        node, state = list(data["nodes"].items())[-1]
        return ("state", str(node), state.get("state"), state.get("value")) if isinstance(state, dict) else None
    if event.type == Event.EXECUTING.value and data.get("node") is not None:
        return ("executing", str(data["node"]))
    if event.type == Event.PROGRESS.value:
        return ("progress", str(data.get("node")), data.get("value"))
    return None


def _running(event: WsEvent) -> set[str]:
    nodes = event.data.get("nodes") if isinstance(event.data, dict) else None
    return {str(n) for n, s in (nodes or {}).items() if isinstance(s, dict) and s.get("state") == "running"}


def from_job(job: Job, workflow: Mapping[str, Any], input_size: InputSize | None = None, *, has_client: bool = True) -> Plan:
    """A plan that replays a recorded job as it happened; images the recording never downloaded get the
    size the submitted graph says. A client's stream of a job recorded without one is rebuilt from its history.
    ``workflow`` has the job's structure (JobIndex.choose), so the samplers its outputs' seeds come from are the
    recording's, found once per job."""
    replayed = _Replayed.of(job)
    rebuilt = has_client and not job.has_client and bool(job.history)
    if replayed.fixed:  # nothing the plan holds comes from the submission: one plan serves every replay of the job
        plan = replayed.plans.get(rebuilt)
        if plan is None:
            plan = replayed.plans[rebuilt] = Plan(replayed.events(rebuilt), tuple(job.outputs), job.cached, job.status, job, job.queued_for, {})
        return plan
    outputs = tuple(_sized(o, workflow, input_size) for o in job.outputs)
    seeds = {n: s for n, holder in replayed.holders.items() if (s := seed_at(workflow, holder)) is not None}
    return Plan(replayed.events(rebuilt), outputs, job.cached, job.status, job, job.queued_for, seeds)


class _Replayed:
    """What :func:`from_job` takes from a recorded job whatever the submission, worked out on its first replay and
    kept on the job (a Job never changes once loaded)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        # Each output node's seed holder (behaviours.seed_holder: by classes and links, which the submission shares).
        self.holders = {o.node: holder for o in job.outputs if (holder := seed_holder(job.workflow, o.node)) is not None}
        # Neither a seed nor an image size to read from the submitted graph: the plan is the recording's alone.
        self.fixed = not self.holders and all(o.width and o.height for o in job.outputs)
        self.plans: dict[bool, Plan] = {}
        self._rebuilt: tuple[WsEvent, ...] | None = None

    @classmethod
    def of(cls, job: Job) -> _Replayed:
        found: _Replayed | None = job.__dict__.get("_replayed")
        if found is None:
            found = job.__dict__["_replayed"] = cls(job)
        return found

    def events(self, rebuilt: bool) -> tuple[WsEvent, ...]:
        """The recorded stream, or with ``rebuilt`` the one a client would have had, from the job's history."""
        job = self.job
        if not rebuilt:
            return job.ws
        if self._rebuilt is None:
            self._rebuilt = tuple(from_history(job.workflow, job.outputs_to_execute, job.history or {}, cached=job.cached,
                                               prompt_id=placeholder("prompt_id"), timestamp=placeholder("now_ms"))[0])
        return self._rebuilt


def _sized(image: OutputImage, workflow: Mapping[str, Any], input_size: InputSize | None) -> OutputImage:
    if image.width and image.height:
        return image
    width, height, _ = output_size(workflow, image.node, input_size)
    return OutputImage(image.node, image.index, image.kind, width, height, image.file)


__all__ = ["PREVIEW", "Plan", "JobIndex", "from_job", "recorded_pace", "resume_interrupted", "synthesize"]
