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

# One constant input to convert and check: name, conversion, and its checks: None (none apply), a (min, max) range
# (an infinity for a bound not given: a value it cannot be compared with fails to the full validation), or the
# (input type, options) Validator.check_value is asked about, with the option list's strings as a set when that
# list is all check_value looks at (a string in it passes without the call; any other value asks check_value).
_Constant = tuple[str, "type | None", "tuple[Any, Any] | None", "tuple[Any, Any] | None", "frozenset[str] | None"]
# One node the outputs reach: its id, class, file input (LoadImage's) and its constants.
_Node = tuple[str, str, "str | None", tuple[_Constant, ...]]

_KEPT = 64  # structures kept: a test suite's prompts mostly share a few graphs
_UP_TO_NODES = 256  # larger graphs are validated in full: their key would cost what it saves


class _Plan:
    """What a fully valid prompt of one structure needs checked again: its reachable nodes' constants."""

    __slots__ = ("nodes", "outputs", "shape")

    def __init__(self, nodes: tuple[_Node, ...], outputs: tuple[str, ...], shape: str) -> None:
        self.nodes, self.outputs, self.shape = nodes, outputs, shape


class ValidationPlans:
    """validate_prompt against one catalogue and profile, remembering the structures it accepted whole.

    A prompt whose structure (node ids, classes, input names, links, partial targets) was accepted before, with
    every output valid and no node error, gets the same answer when its constants pass the same conversions and
    checks; any other prompt, or a constant that fails, is validated in full, so every refusal is ComfyUI's own.
    Keep one per :class:`NodeSpecs` (a new catalogue needs new plans). ``order(prompt, outputs, shape)``: the
    caller's order of a structure's outputs, kept with its plan (a function of the structure and outputs alone)."""

    def __init__(self, specs: NodeSpecs, profile: Profile, *, order: Callable[[Any, list[str], str], list[str]] | None = None) -> None:
        self.specs, self.profile, self._order = specs, profile, order
        self._plans: dict[tuple[Any, ...], _Plan] = {}

    def accepted(self, prompt: Any, partial_execution_targets: Any = None, input_file_exists: Callable[[str], bool] | None = None,
                 ) -> tuple[list[str], str] | None:
        """The outputs to execute (in the caller's order) and ``graph.structure(prompt)`` of a prompt a kept plan
        accepts whole, its constants converted in place as validate_prompt converts them; None when it takes a
        full validation (:meth:`validate`). The common case of a replay, without the full answer's objects."""
        key = _key(prompt, partial_execution_targets)
        plan = self._plans.get(key) if key is not None else None
        if plan is not None and _constants_pass(prompt, plan, lambda: Validator(prompt, self.specs, input_file_exists, self.profile)):
            return list(plan.outputs), plan.shape
        return None

    def validate(self, prompt: Any, *, input_file_exists: Callable[[str], bool] | None = None,
                 partial_execution_targets: Any = None) -> tuple[ValidationResult, str | None]:
        """validate_prompt's result (outputs in the caller's order when a plan answers), and
        ``graph.structure(prompt)`` when a plan has it (else None)."""
        key = _key(prompt, partial_execution_targets)
        plan = self._plans.get(key) if key is not None else None
        if plan is not None:
            if _constants_pass(prompt, plan, lambda: Validator(prompt, self.specs, input_file_exists, self.profile)):
                return ValidationResult(200, None, {}, list(plan.outputs)), plan.shape
        result = validate_prompt(prompt, self.specs, input_file_exists=input_file_exists,
                                 partial_execution_targets=partial_execution_targets, profile=self.profile)
        if key is not None and plan is None and result.status == 200 and not result.node_errors:
            return result, self._remember(key, prompt, partial_execution_targets, result)
        return result, None

    def _remember(self, key: tuple[Any, ...], prompt: dict[str, Any], partial: Any, result: ValidationResult) -> str | None:
        """Keep the plan of a prompt accepted whole; its structure, made for the plan (None when not kept)."""
        outputs = output_nodes(prompt, self.specs.object_info, partial, self.profile)
        if result.outputs_to_execute != outputs:
            return None  # an output failed without a reason (a cycle): not a structure every value passes
        if len(self._plans) >= _KEPT:
            self._plans.pop(next(iter(self._plans)))  # the oldest
        shape = structure(prompt)
        ordered = self._order(prompt, outputs, shape) if self._order is not None else outputs
        self._plans[key] = _Plan(self._reached(prompt, outputs), tuple(ordered), shape)
        return shape

    def _reached(self, prompt: dict[str, Any], outputs: list[str]) -> tuple[_Node, ...]:
        """The nodes validation visits from ``outputs`` (through declared inputs that are links), with the
        constants it converts and checks in each."""
        nodes: list[_Node] = []
        seen: set[str] = set()
        stack = list(outputs)
        while stack:
            node_id = stack.pop()
            if node_id in seen:
                continue
            seen.add(node_id)
            class_type, inputs = prompt[node_id]["class_type"], prompt[node_id]["inputs"]
            constants: list[_Constant] = []
            file_input = FILE_CHECKED_INPUTS.get(class_type)
            for name, _, input_type, extra_info, conversion, checked in self.specs.inputs(class_type):
                if name not in inputs:
                    continue
                if type(inputs[name]) is list:
                    stack.append(inputs[name][0])
                elif name == file_input or not checked:
                    constants.append((name, conversion, None, None, None))
                else:
                    constants.append((name, conversion, *self._checks(input_type, extra_info)))
            nodes.append((node_id, class_type, file_input, tuple(constants)))
        return tuple(nodes)

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


def _key(prompt: Any, partial: Any) -> tuple[Any, ...] | None:
    """What validation's outcome depends on besides the constants' values; None for a prompt outside the common
    shape (exact types only: a slot of 0.0 or True must not share the key of a slot 0)."""
    if type(prompt) is not dict or len(prompt) > _UP_TO_NODES:
        return None
    if partial is not None and not (type(partial) is list and all(type(t) is str for t in partial)):
        return None
    parts: list[Any] = [None if partial is None else tuple(partial)]
    append = parts.append
    for node_id, node in prompt.items():
        if type(node) is not dict:
            return None
        class_type, inputs = node.get("class_type"), node.get("inputs")
        if type(class_type) is not str or type(inputs) is not dict:
            return None
        append(node_id)
        append(class_type)
        append(tuple(inputs))  # the input names, in order; then the links, each with its input's name
        for name, value in inputs.items():
            if type(value) is list:
                if len(value) != 2 or type(value[0]) is not str or type(value[1]) is not int:
                    return None
                append((name, value[0], value[1]))
    return tuple(parts)


def _constants_pass(prompt: dict[str, Any], plan: _Plan, validator_of: Callable[[], Validator]) -> bool:
    """Convert and check each constant as Validator._validate_node does; True (and the converted values written
    back, as ComfyUI writes them) when all pass. Nothing is written otherwise: the full validation starts over.
    ``validator_of``: the prompt's Validator, made only when a check needs it (a file, an option list)."""
    validator: Validator | None = None
    writes: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for node_id, class_type, file_input, constants in plan.nodes:
            inputs = prompt[node_id]["inputs"]
            first = len(writes)
            for name, conversion, bounds, general, members in constants:
                val = inputs[name]
                if type(val) is not conversion:  # (a value of the converted type is kept as it is: most are)
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
                    validator = validator or validator_of()
                    if validator.check_value(name, val, *general) is not None:
                        return False
            if file_input is not None:
                validator = validator or validator_of()
                written = {name: val for _, name, val in writes[first:]}
                if validator.check_file(class_type, file_input, {**inputs, **written} if written else inputs):
                    return False
    except Exception:  # a conversion or check that raises: the full validation says what ComfyUI answers
        return False
    for inputs, name, val in writes:
        inputs[name] = val
    return True
