"""Judge a POST /prompt graph against a recorded /object_info exactly as ComfyUI 0.3.64's validate_prompt does."""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

# ComfyUI's validate_inputs recurses one frame per link; ours takes three (node, link, memo): room for a chain
# ComfyUI validates (real 0.3.64 runs 600 nodes), bounded so that Python 3.10, whose frames use the C stack,
# cannot overflow it.
_FRAMES_PER_LEVEL = 4
_MAX_RECURSION_LIMIT = 10_000
_ROOM_NEEDED = 200  # frames a prompt may take before the limit is raised for it

from .graph import is_link
from .nodes import FILE_CHECKED_INPUTS
from .node_specs import NodeSpecs
from .profiles import DEFAULT, Profile
from .validation_frames import (
    ENDSWITH_FRAMES, INPUTS_FRAME, LINK_SOURCE_FRAME, MAX_FRAME, MEMBERSHIP_FRAME, MIN_FRAME, RECURSE_FRAME, RETURN_TYPE_FRAME,
    VALIDATE_PROMPT_FRAME, VALUE_FRAME, Raised, custom_frames,
)

__all__ = ["NodeSpecs", "ValidationResult", "Validator", "no_prompt_body", "output_nodes", "validate_prompt"]

_Error = dict[str, Any]
_Outcome = tuple[bool, list[_Error], Any]  # ComfyUI's (valid, reasons, node id)


class ValidationResult(NamedTuple):
    """What POST /prompt answers for a prompt.

    ``status`` is 200 when at least one output validates, 400 when ComfyUI rejects the prompt, and 500
    when ComfyUI itself would crash on the shape (then ``body`` is None and the caller answers with
    ComfyUI's plain-text 500). ``body`` is the 400 JSON body.

    >>> validate_prompt({"1": {"class_type": "Nope", "inputs": {}}}, {}).body["error"]["type"]
    'invalid_prompt'
    """

    status: int
    body: dict[str, Any] | None
    node_errors: dict[str, Any]
    outputs_to_execute: list[str]


def no_prompt_body() -> dict[str, Any]:
    """The 400 body for a POST /prompt whose JSON has no ``"prompt"`` key.

    >>> no_prompt_body()["error"]["type"]
    'no_prompt'
    """
    error = _error("no_prompt", "No prompt provided", "No prompt provided", {})
    return {"error": error, "node_errors": {}}


def validate_prompt(
    prompt: Any,
    object_info: Mapping[str, Any] | NodeSpecs,
    *,
    input_file_exists: Callable[[str], bool] | None = None,
    partial_execution_targets: Any = None,
    profile: Profile = DEFAULT,
) -> ValidationResult:
    """Validate ``prompt`` (the request's ``"prompt"`` value; None when the key is absent) against ``object_info``,
    the catalogue or the :class:`NodeSpecs` kept for it.

    ``input_file_exists(name)`` answers LoadImage's file check; without it a name passes when it is in
    the recorded option list. ``partial_execution_targets`` is the request key of the same name; ``profile`` the
    ComfyUI version whose rules apply (0.3.64 by default).

    >>> info = {"EmptyImage": {"input": {"required": {"width": ["INT", {"min": 1}]}}, "output": ["IMAGE"]},
    ...         "SaveImage": {"input": {"required": {"images": ["IMAGE"]}}, "output": [], "output_node": True}}
    >>> graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 0}},
    ...          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    >>> validate_prompt(graph, info).body["node_errors"]["1"]["errors"][0]["message"]
    'Value 0 smaller than min of 1'
    """
    if prompt is None:
        return ValidationResult(400, no_prompt_body(), {}, [])
    specs = object_info if isinstance(object_info, NodeSpecs) else NodeSpecs(object_info)
    try:
        outputs = output_nodes(prompt, specs.object_info, partial_execution_targets, profile)
    except _Rejected as rejected:
        return ValidationResult(400, {"error": rejected.error, "node_errors": {}}, {}, [])
    except Exception:
        # ComfyUI's own loop raises here (prompt not a dict, node not a dict, unhashable class_type...).
        return ValidationResult(500, None, {}, [])
    if not outputs:
        error = _error("prompt_no_outputs", "Prompt has no outputs", "", {})
        return ValidationResult(400, {"error": error, "node_errors": {}}, {}, [])

    validator = Validator(prompt, specs, input_file_exists, profile)
    frames = _FRAMES_PER_LEVEL * len(prompt)
    if frames <= _ROOM_NEEDED:  # most prompts: the process-wide limit is room enough, and entering nothing is cheaper
        return _validate_outputs(prompt, validator, outputs)
    with _recursion_room(frames):
        return _validate_outputs(prompt, validator, outputs)


@contextlib.contextmanager
def _recursion_room(frames: int) -> Iterator[None]:
    """Raise Python's recursion limit while a large prompt is validated, and put it back after."""
    before = sys.getrecursionlimit()
    wanted = min(_MAX_RECURSION_LIMIT, before + frames)
    if wanted > before:
        sys.setrecursionlimit(wanted)
    try:
        yield
    finally:
        if wanted > before:
            sys.setrecursionlimit(before)


def _validate_outputs(prompt: Any, validator: Validator, outputs: list[str]) -> ValidationResult:
    """Each output with its ancestors, as ComfyUI's validate_prompt loop does; failures charged as it charges them."""
    good_outputs: list[str] = []
    failures: list[tuple[str, list[_Error]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        try:
            valid, reasons, _ = validator.validate_inputs(output)
        except Raised as raised:
            valid = False
            extra = {"exception_type": raised.type_name, "traceback": [VALIDATE_PROMPT_FRAME, *raised.frames]}
            message = "Exception when validating node"
            reasons = [_error("exception_during_validation", message, str(raised.error), extra)]
            validator.validated[output] = (False, reasons, output)
        if valid:
            good_outputs.append(output)
            continue
        failures.append((output, reasons))
        # ComfyUI walks every node validated so far, so a failing node is charged to each later failing output.
        for node_id, (node_valid, node_reasons, _) in validator.validated.items():
            if node_valid or not node_reasons:
                continue
            if node_id not in node_errors:
                class_type = prompt[node_id]["class_type"]
                node_errors[node_id] = {"errors": node_reasons, "dependent_outputs": [], "class_type": class_type}
            node_errors[node_id]["dependent_outputs"].append(output)

    if good_outputs:
        return ValidationResult(200, None, node_errors, good_outputs)
    details = "\n".join(f"{e['message']}: {e['details']}" for _, reasons in failures for e in reasons)
    error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {})
    return ValidationResult(400, {"error": error, "node_errors": node_errors}, node_errors, [])


class _Rejected(Exception):
    """A prompt-level 400 from ComfyUI's first pass over the nodes."""

    def __init__(self, error: _Error) -> None:
        super().__init__(error["message"])
        self.error = error


def _error(kind: str, message: str, details: str, extra_info: dict[str, Any]) -> _Error:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


def output_nodes(prompt: Any, object_info: Mapping[str, Any], partial: Any, profile: Profile) -> list[str]:
    """ComfyUI's first pass: every node needs a known class_type; collect the output nodes."""
    outputs: list[str] = []
    for x in prompt:
        if "class_type" not in prompt[x]:
            if profile.missing_node_type_errors:
                title = (prompt[x].get("_meta") or {}).get("title")
                message = f"Node '{title or f'ID #{x}'}' has no class_type. The workflow may be corrupted or a custom node is missing."
                raise _Rejected(_error("missing_node_type", message, f"Node ID '#{x}'", {"node_id": x, "class_type": None, "node_title": title}))
            message = "Cannot execute because a node is missing the class_type property."
            raise _Rejected(_error("invalid_prompt", message, f"Node ID '#{x}'", {}))
        class_type = prompt[x]["class_type"]
        spec = object_info.get(class_type)
        if spec is None:
            if profile.missing_node_type_errors:
                title = (prompt[x].get("_meta") or {}).get("title", class_type)
                message = f"Node '{title}' not found. The custom node may not be installed."
                raise _Rejected(_error("missing_node_type", message, f"Node ID '#{x}'", {"node_id": x, "class_type": class_type, "node_title": title}))
            message = f"Cannot execute because node {class_type} does not exist."
            raise _Rejected(_error("invalid_prompt", message, f"Node ID '#{x}'", {}))
        # ComfyUI collects these in a set (order varies per process); prompt order keeps replay deterministic.
        if spec.get("output_node") is True and (partial is None or x in partial):
            outputs.append(x)
    return outputs


def _input_config(input_type: Any, extra_info: Any) -> list[Any]:
    """The input's config as an error shows it: a copy, made only for an error (a COMBO's options can be long)."""
    return copy.deepcopy([input_type, extra_info])


def _types_compatible(received: Any, expected: Any) -> bool:
    """comfy_execution.validation.validate_node_input, non-strict."""
    if received == expected or "*" in (received, expected):
        return True
    if isinstance(received, list) and expected == "COMBO":
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    received_types = {t.strip() for t in received.split(",")}
    expected_types = {t.strip() for t in expected.split(",")}
    return "*" in received_types or "*" in expected_types or bool(received_types & expected_types)


class Validator:
    """ComfyUI's validate_inputs with its ``validated`` memo, over a recorded catalogue.

    Each line ComfyUI's traceback names is guarded by a try that turns an exception there into a Raised at that
    line: they run for every input of every submitted node, and a try costs nothing until it catches.
    """

    def __init__(
        self, prompt: Mapping[str, Any], specs: NodeSpecs, file_exists: Callable[[str], bool] | None,
        profile: Profile = DEFAULT,
    ) -> None:
        self.profile = profile
        self.prompt = prompt
        self.specs = specs
        self.object_info = specs.object_info
        self.file_exists = file_exists
        self.validated: dict[Any, _Outcome] = {}
        self.visiting: set[Any] = set()

    def validate_inputs(self, unique_id: Any) -> _Outcome:
        if unique_id in self.validated:
            return self.validated[unique_id]
        if unique_id in self.visiting:
            # 0.3.64 has no cycle check: the recursion overflows, and as the frames unwind each node in the
            # cycle is stored as failed with only its own reasons, so the cycle itself reports nothing.
            return (False, [], unique_id)
        self.visiting.add(unique_id)
        try:
            outcome = self._validate_node(unique_id)
        finally:
            self.visiting.discard(unique_id)
        self.validated[unique_id] = outcome
        return outcome

    def _validate_node(self, unique_id: Any) -> _Outcome:
        node = self.prompt[unique_id]
        try:
            inputs = node["inputs"]
        except Exception as exc:
            raise Raised(exc, [INPUTS_FRAME]) from exc
        class_type = node["class_type"]
        file_input = FILE_CHECKED_INPUTS.get(class_type)
        errors: list[_Error] = []
        valid = True
        for x, required, input_type, extra_info, conversion, checked in self.specs.inputs(class_type):
            try:
                missing = x not in inputs
            except Exception as exc:
                raise Raised(exc, [MEMBERSHIP_FRAME]) from exc
            if missing:
                if required:
                    errors.append(_error("required_input_missing", "Required input is missing", x, {"input_name": x}))
                continue
            try:
                val = inputs[x]
            except Exception as exc:
                raise Raised(exc, [VALUE_FRAME]) from exc
            if isinstance(val, list):
                valid = self._check_link(x, val, input_type, extra_info, errors) and valid
                continue
            # ComfyUI writes the unwrapped and converted value back into the prompt it was sent: the queue,
            # the history and the cache key all see 64 for a width sent as 64.7 (execution.py validate_inputs).
            # A value already of the converted type is left as it is (int(), float()... would return it).
            try:
                if isinstance(val, dict) and "__value__" in val:
                    val = inputs[x] = val["__value__"]
                if conversion is not None and type(val) is not conversion:
                    val = inputs[x] = conversion(val)
            except Exception as ex:
                extra = {"input_name": x, "input_config": _input_config(input_type, extra_info), "received_value": val,
                         "exception_message": str(ex)}
                message = f"Failed to convert an input value to a {input_type} value"
                errors.append(_error("invalid_input_type", message, f"{x}, {val}, {ex}", extra))
                continue
            if x == file_input or not checked:
                continue  # VALIDATE_INPUTS takes a file input, so ComfyUI skips the range and list checks
            error = self.check_value(x, val, input_type, extra_info)
            if error is not None:
                errors.append(error)
        if file_input is not None:
            errors.extend(self.check_file(class_type, file_input, inputs))
        if errors or not valid:
            return (False, errors, unique_id)
        return (True, [], unique_id)

    def _check_link(self, x: str, val: list[Any], input_type: Any, extra_info: Any, errors: list[_Error]) -> bool:
        """Check one linked input and recurse into its source; False when the source is invalid."""
        if len(val) != 2:
            message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
            extra = {"input_name": x, "input_config": _input_config(input_type, extra_info), "received_value": val}
            errors.append(_error("bad_linked_input", message, x, extra))
            return True
        o_id = val[0]
        try:
            o_class_type = self.prompt[o_id]["class_type"]
        except Exception as exc:
            raise Raised(exc, [LINK_SOURCE_FRAME]) from exc
        returns = self.specs.outputs(o_class_type)
        try:
            received_type = returns[val[1]]
        except Exception as exc:
            raise Raised(exc, [RETURN_TYPE_FRAME]) from exc
        if not _types_compatible(received_type, input_type):
            extra = {"input_name": x, "input_config": _input_config(input_type, extra_info), "received_type": received_type,
                     "linked_node": val}
            details = f"{x}, received_type({received_type}) mismatch input_type({input_type})"
            errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes", details, extra))
            return True
        try:
            return self.validate_inputs(o_id)[0]
        except Raised as raised:
            extra = {
                "input_name": x,
                "input_config": _input_config(input_type, extra_info),
                "exception_message": str(raised.error),
                "exception_type": raised.type_name,
                "traceback": [RECURSE_FRAME, *raised.frames],
                "linked_node": val,
            }
            message = "Exception when validating inner node"
            reason = _error("exception_during_inner_validation", message, str(raised.error), extra)
            self.validated[o_id] = (False, [reason], o_id)
            return False

    def check_value(self, x: str, val: Any, input_type: Any, extra_info: Any) -> _Error | None:
        """Range and option-list checks on a converted constant."""
        try:
            too_small = "min" in extra_info and val < extra_info["min"]
        except Exception as exc:
            raise Raised(exc, [MIN_FRAME]) from exc
        if too_small:
            extra = {"input_name": x, "input_config": _input_config(input_type, extra_info), "received_value": val}
            return _error("value_smaller_than_min", f"Value {val} smaller than min of {extra_info['min']}", x, extra)
        try:
            too_big = "max" in extra_info and val > extra_info["max"]
        except Exception as exc:
            raise Raised(exc, [MAX_FRAME]) from exc
        if too_big:
            extra = {"input_name": x, "input_config": _input_config(input_type, extra_info), "received_value": val}
            return _error("value_bigger_than_max", f"Value {val} bigger than max of {extra_info['max']}", x, extra)
        # 0.3.64 checks list types only (execution.py: isinstance(input_type, list)); later versions check V3 combos too.
        combo = input_type == "COMBO" and self.profile.validates_combo_options
        if not isinstance(input_type, list) and not combo:
            return None
        options = extra_info.get("options", []) if combo else input_type
        if val in options:
            return None
        # ComfyUI leaves long lists (scanned model files) out of the response.
        long = len(options) > 20
        list_info = f"(list of length {len(options)})" if long else str(options)
        extra = {"input_name": x, "input_config": None if long else _input_config(input_type, extra_info), "received_value": val}
        shown = repr(val) if self.profile.combo_error_repr else f"'{val}'"
        return _error("value_not_in_list", "Value not in list", f"{x}: {shown} not in {list_info}", extra)

    def check_file(self, class_type: str, name: str, inputs: Any) -> list[_Error]:
        """LoadImage's VALIDATE_INPUTS, run the way ComfyUI feeds it (links arrive as None)."""
        if name not in inputs:
            missing = TypeError(f"{class_type}.VALIDATE_INPUTS() missing 1 required positional argument: '{name}'")
            raise Raised(missing, custom_frames("await process_inputs({})"))
        value = inputs[name]
        if isinstance(value, dict) and "__value__" in value:
            value = value["__value__"]
        elif is_link(value):
            value = None
        if not isinstance(value, str):
            no_method = AttributeError(f"'{type(value).__name__}' object has no attribute 'endswith'")
            raise Raised(no_method, custom_frames("await process_inputs(input_dict, i)") + ENDSWITH_FRAMES)
        if self.file_exists is not None:
            exists = self.file_exists(value)
        else:
            config = self.object_info[class_type]["input"]["required"][name]
            options = config[0] if isinstance(config[0], list) else config[1].get("options", [])
            exists = value in options
        if exists:
            return []
        details = f"{name} - Invalid image file: {value}"
        return [_error("custom_validation_failed", "Custom validation failed for node", details, {"input_name": name})]
