"""POST /prompt's verdict on a graph: ComfyUI's validation against the served catalogue, or without one what the
recordings answered. Kept apart from the engine, which only queues what this accepts."""

from __future__ import annotations

from typing import Any

from ...comfy.graph import structure
from ...comfy.nodes import OUTPUT_CLASSES
from ...comfy.profiles import Profile
from ...comfy.validation_plans import ValidationPlans
from .catalogue import Catalogue
from .inputs import InputFiles
from .plan import JobIndex
from .reply import Reply

# An accepted prompt: the outputs to execute (in a recording's order), the node errors answered, graph.structure.
Accepted = tuple[list[str], dict[str, Any], str]


class Admission:
    """Judges submitted graphs as the profile's ComfyUI does, remembering what each graph structure needed
    (:class:`ValidationPlans`, made again for a new catalogue: what the old one accepted is moot)."""

    def __init__(self, catalogue: Catalogue, index: JobIndex, inputs: InputFiles, profile: Profile) -> None:
        self.catalogue, self.index, self.inputs, self.profile = catalogue, index, inputs, profile
        self._plans: ValidationPlans | None = None

    def judge(self, workflow: Any, partial: Any) -> Reply | Accepted:
        """The accepted prompt's outputs, node errors and structure; or the refusal to answer with."""
        specs = self.catalogue.node_specs()
        if specs is None:
            return self._as_recorded(workflow, partial)
        plans = self._plans
        if plans is None or plans.specs is not specs:
            plans = self._plans = ValidationPlans(specs, self.profile, order=self.index.output_order)
        known = plans.accepted(workflow, partial, self.inputs.exists)
        if known is not None:  # a structure accepted before, its outputs ordered already
            return known[0], {}, known[1]
        result, shape = plans.validate(workflow, input_file_exists=self.inputs.exists, partial_execution_targets=partial)
        if result.status == 500 or result.body is None and result.status != 200:
            return Reply.crash()
        recorded = self.index.recorded_verdict(workflow, result.status, result.node_errors) if result.node_errors else None
        if result.status != 200:
            return Reply.json(recorded or result.body, result.status)
        outputs, shape = self._ordered(workflow, result.outputs_to_execute, shape)
        return outputs, (recorded or {}).get("node_errors") or result.node_errors, shape

    def _as_recorded(self, workflow: Any, partial: Any) -> Reply | Accepted:
        """Without a catalogue: the recorded refusal or acceptance of this very graph, else every output node."""
        rejection = self.index.rejection(workflow) if isinstance(workflow, dict) else None
        if rejection is not None:
            return Reply.json_text(rejection.response_body.encode(), rejection.response_status)
        if not isinstance(workflow, dict):
            error = {"type": "invalid_prompt", "message": "Cannot execute because the prompt is not a dict", "details": "", "extra_info": {}}
            return Reply.json({"error": error, "node_errors": {}}, 400)
        outputs = [n for n, node in workflow.items() if isinstance(node, dict) and node.get("class_type") in OUTPUT_CLASSES]
        if partial:
            outputs = [n for n in outputs if n in partial]
        accepted = self.index.acceptance(workflow)  # (node_errors, outputs) as a recording answered them
        node_errors, outputs = accepted if accepted is not None else ({}, outputs)
        outputs, shape = self._ordered(workflow, outputs, None)
        return outputs, node_errors, shape

    def _ordered(self, workflow: dict[str, Any], outputs: list[str], shape: str | None) -> tuple[list[str], str]:
        """``outputs`` in a recording's order and the graph's structure (worked out here when not known yet)."""
        shape = shape if shape is not None else structure(workflow)
        return self.index.output_order(workflow, outputs, shape), shape
