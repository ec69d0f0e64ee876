"""validate_prompt for the prompts a replay sees again and again: the same graph with new values. What validation
finds in a graph's structure (its outputs, which nodes they reach, the links' types) is worked out by the full
validation once, and each later prompt of that structure only has its constants converted and checked."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .graph import structure
from .node_specs import NodeSpecs
from .nodes import FILE_CHECKED_INPUTS
from .profiles import Profile
from .validation import ValidationResult, Validator, output_nodes, validate_prompt

# One constant input to convert and check: name, the type a value keeps as it is (the conversion's; a string without
# one: an option), conversion, and its checks: None (none apply), a (min, max) range (an infinity for a bound not
# given: a value it cannot be compared with fails to the full validation), or the (input type, options)
# Validator.check_value is asked about, with the option list's strings as a set when that list is all check_value
# looks at (a string in it passes without the call; any other value asks check_value).
_Constant = tuple[str, type, "type | None", "tuple[Any, Any] | None", "tuple[Any, Any] | None", "frozenset[str] | None"]
# One node of the structure, in the prompt's order: its id, class, input names (in order), links (name and the
# [node id, slot] list), the constants validation converts and checks (those of a node the outputs reach), the names
# of the other inputs (no link either), and its file input (LoadImage's, when the outputs reach it).
_Node = tuple[str, str, tuple[str, ...], tuple[tuple[str, list[Any]], ...], tuple[_Constant, ...], tuple[str, ...], "str | None"]

_KEPT = 64  # structures kept: a test suite's prompts mostly share a few graphs
_UP_TO_NODES = 256  # larger graphs are validated in full: their key would cost what it saves


class _Plan:
    """What a fully valid prompt of one structure needs checked again: the structure itself, node by node, and the
    constants of the nodes its outputs reach."""

    __slots__ = ("key", "nodes", "outputs", "shape")

    def __init__(self, key: tuple[Any, ...], nodes: tuple[_Node, ...], outputs: tuple[str, ...], shape: str) -> None:
        self.key, self.nodes, self.outputs, self.shape = key, nodes, outputs, shape


class ValidationPlans:
    """validate_prompt against one catalogue and profile, remembering the structures it accepted whole.

    A prompt whose structure (node ids, classes, input names, links, partial targets) was accepted before, with
    every output valid and no node error, gets the same answer when its constants pass the same conversions and
    checks; any other prompt, or a constant that fails, is validated in full, so every refusal is ComfyUI's own.
    Keep one per :class:`NodeSpecs` (a new catalogue needs new plans). ``order(prompt, outputs, shape)``: the
    caller's order of a structure's outputs, kept with its plan (a function of the structure and outputs alone)."""

    def __init__(self, specs: NodeSpecs, profile: Profile, *, order: Callable[[Any, list[str], str], list[str]] | None = None) -> None:
        self.specs, self.profile, self._order = specs, profile, order
        self._kept: dict[tuple[Any, ...], _Plan] = {}  # by _key, oldest first
        # The kept plans by node ids and partial targets: a prompt is compared with these alone, node by node, as its
        # constants are checked (one walk, no key to build and hash).
        self._by_ids: dict[tuple[Any, ...], list[_Plan]] = {}

    def accepted(self, prompt: Any, partial_execution_targets: Any = None, input_file_exists: Callable[[str], bool] | None = None,
                 ) -> tuple[list[str], str] | None:
        """The outputs to execute (in the caller's order) and ``graph.structure(prompt)`` of a prompt a kept plan
        accepts whole, its constants converted in place as validate_prompt converts them; None when it takes a
        full validation (:meth:`validate`). The common case of a replay, without the full answer's objects."""
        plan = self._passing(prompt, partial_execution_targets, input_file_exists)
        return None if plan is None else (list(plan.outputs), plan.shape)

    def validate(self, prompt: Any, *, input_file_exists: Callable[[str], bool] | None = None,
                 partial_execution_targets: Any = None) -> tuple[ValidationResult, str | None]:
        """validate_prompt's result (outputs in the caller's order when a plan answers), and
        ``graph.structure(prompt)`` when a plan has it (else None)."""
        plan = self._passing(prompt, partial_execution_targets, input_file_exists)
        if plan is not None:
            return ValidationResult(200, None, {}, list(plan.outputs)), plan.shape
        result = validate_prompt(prompt, self.specs, input_file_exists=input_file_exists,
                                 partial_execution_targets=partial_execution_targets, profile=self.profile)
        if result.status == 200 and not result.node_errors:
            key = _key(prompt, partial_execution_targets)
            if key is not None and key not in self._kept:
                return result, self._remember(key, prompt, partial_execution_targets, result)
        return result, None

    def _passing(self, prompt: Any, partial: Any, input_file_exists: Callable[[str], bool] | None) -> _Plan | None:
        """The kept plan of the prompt's structure when its constants pass (converted in place), else None."""
        if type(prompt) is not dict or (partial is not None and not _targets(partial)):
            return None
        plans = self._by_ids.get((tuple(prompt), None if partial is None else tuple(partial)))
        if plans is not None:
            for plan in plans:
                if _passes(prompt, plan.nodes, (self.specs, input_file_exists, self.profile)):
                    return plan
        return None

    def _remember(self, key: tuple[Any, ...], prompt: dict[str, Any], partial: Any, result: ValidationResult) -> str | None:
        """Keep the plan of a prompt accepted whole; its structure, made for the plan (None when not kept)."""
        outputs = output_nodes(prompt, self.specs.object_info, partial, self.profile)
        if result.outputs_to_execute != outputs:
            return None  # an output failed without a reason (a cycle): not a structure every value passes
        if len(self._kept) >= _KEPT:
            oldest = self._kept.pop(next(iter(self._kept)))
            alike = self._by_ids[oldest.key[0]]
            alike.remove(oldest)
            if not alike:
                del self._by_ids[oldest.key[0]]
        shape = structure(prompt)
        ordered = self._order(prompt, outputs, shape) if self._order is not None else outputs
        plan = self._kept[key] = _Plan(key, self._nodes(prompt, outputs), tuple(ordered), shape)
        self._by_ids.setdefault(key[0], []).append(plan)
        return shape

    def _nodes(self, prompt: dict[str, Any], outputs: list[str]) -> tuple[_Node, ...]:
        """The prompt's nodes as a plan compares them: each with its links and other inputs, and the constants
        validation converts and checks in the nodes it reaches from ``outputs``."""
        reached = self._reached(prompt, outputs)
        nodes: list[_Node] = []
        for node_id, node in prompt.items():
            inputs = node["inputs"]
            file_input, constants = reached.get(node_id, (None, ()))
            named = {constant[0] for constant in constants}
            links = tuple((name, list(value)) for name, value in inputs.items() if type(value) is list)
            plain = tuple(name for name, value in inputs.items() if type(value) is not list and name not in named)
            nodes.append((node_id, node["class_type"], tuple(inputs), links, constants, plain, file_input))
        return tuple(nodes)

    def _reached(self, prompt: dict[str, Any], outputs: list[str]) -> dict[str, tuple[str | None, tuple[_Constant, ...]]]:
        """The nodes validation visits from ``outputs`` (through declared inputs that are links), each with its file
        input and the constants it converts and checks in it."""
        reached: dict[str, tuple[str | None, tuple[_Constant, ...]]] = {}
        stack = list(outputs)
        while stack:
            node_id = stack.pop()
            if node_id in reached:
                continue
            class_type, inputs = prompt[node_id]["class_type"], prompt[node_id]["inputs"]
            constants: list[_Constant] = []
            file_input = FILE_CHECKED_INPUTS.get(class_type)
            for name, _, input_type, extra_info, conversion, checked in self.specs.inputs(class_type):
                if name not in inputs:
                    continue
                if type(inputs[name]) is list:
                    stack.append(inputs[name][0])
                elif name == file_input or not checked:
                    constants.append((name, conversion or str, conversion, None, None, None))
                else:
                    constants.append((name, conversion or str, conversion, *self._checks(input_type, extra_info)))
            reached[node_id] = (file_input, tuple(constants))
        return reached

    def _checks(self, input_type: Any, extra_info: Any) -> tuple[tuple[Any, Any] | None, tuple[Any, Any] | None, frozenset[str] | None]:
        """A constant's checks: the plain range check_value makes of a min and max alone, else check_value's own
        (with the strings of its option list when it checks nothing else: an option list of a combo, no range)."""
        combo = input_type == "COMBO" and self.profile.validates_combo_options
        if type(extra_info) is dict and not isinstance(input_type, list) and not combo:
            return (extra_info.get("min", -math.inf), extra_info.get("max", math.inf)), None, None
        members = None
        if type(extra_info) is dict and "min" not in extra_info and "max" not in extra_info:
            options = extra_info.get("options", []) if combo else input_type
            if type(options) is list:
                members = frozenset(o for o in options if type(o) is str)
        return None, (input_type, extra_info), members


def _targets(partial: Any) -> bool:
    """Partial execution targets in the common shape: a list of node ids."""
    return type(partial) is list and all(type(t) is str for t in partial)


def _key(prompt: Any, partial: Any) -> tuple[Any, ...] | None:
    """What validation's outcome depends on besides the constants' values, led by the node ids and partial targets
    (a kept plan is looked up by these); None for a prompt outside the common shape (exact types only: a slot of 0.0
    or True must not share the key of a slot 0). Made once per structure kept: a prompt is matched by :func:`_passes`."""
    if type(prompt) is not dict or len(prompt) > _UP_TO_NODES or (partial is not None and not _targets(partial)):
        return None
    parts: list[Any] = [(tuple(prompt), None if partial is None else tuple(partial))]
    append = parts.append
    for node_id, node in prompt.items():
        if type(node) is not dict:
            return None
        class_type, inputs = node.get("class_type"), node.get("inputs")
        if type(class_type) is not str or type(inputs) is not dict:
            return None
        append(class_type)
        append(tuple(inputs))  # the input names, in order; then the links, each with its input's name
        for name, value in inputs.items():
            if type(value) is list:
                if len(value) != 2 or type(value[0]) is not str or type(value[1]) is not int:
                    return None
                append((name, value[0], value[1]))
    return tuple(parts)


def _passes(prompt: dict[str, Any], nodes: tuple[_Node, ...], context: tuple[NodeSpecs, Callable[[str], bool] | None, Profile]) -> bool:
    """Whether the prompt has the structure of ``nodes`` (their ids matched already), node by node as :func:`_key`
    keys it, and each constant converts and passes its checks as Validator._validate_node does; when it does, the
    converted values are written back, as ComfyUI writes them. Nothing is written otherwise: the full validation
    starts over. ``context``: the rest of the prompt's Validator, made only when a check needs it (a file, an option
    list)."""
    validator: Validator | None = None
    writes: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for node_id, class_type, names, links, constants, plain, file_input in nodes:
            node = prompt[node_id]
            if type(node) is not dict:
                return False
            inputs = node["inputs"]
            if type(inputs) is not dict or node["class_type"] != class_type or tuple(inputs) != names:
                return False
            for name, link in links:
                value = inputs[name]  # [node id, slot]: equal, a slot of int type (1.0 and True equal 1)
                if value != link or type(value[1]) is not int:
                    return False
            if plain:
                for name in plain:
                    if type(inputs[name]) is list:
                        return False  # a link where the structure has a value
            first = len(writes)
            for name, kept, conversion, bounds, general, members in constants:
                val = inputs[name]
                if type(val) is not kept:  # (a value of the type it keeps is not converted: most are)
                    if type(val) is list:
                        return False  # a link where the structure has a value
                    original = val
                    if isinstance(val, dict) and "__value__" in val:
                        val = val["__value__"]
                    if conversion is not None and type(val) is not conversion:
                        val = conversion(val)
                    if val is not original:
                        writes.append((inputs, name, val))
                if bounds is not None:
                    low, high = bounds  # check_value's first two tests, made as it makes them
                    if val < low or val > high:
                        return False
                elif general is not None:
                    if members is not None and type(val) is str and val in members:
                        continue  # (in the option list: check_value finds nothing else to say)
                    validator = validator or Validator(prompt, *context)
                    if validator.check_value(name, val, *general) is not None:
                        return False
            if file_input is not None:
                validator = validator or Validator(prompt, *context)
                written = {name: val for _, name, val in writes[first:]}
                if validator.check_file(class_type, file_input, {**inputs, **written} if written else inputs):
                    return False
    except Exception:  # a conversion or check that raises: the full validation says what ComfyUI answers
        return False
    for inputs, name, val in writes:
        inputs[name] = val
    return True
