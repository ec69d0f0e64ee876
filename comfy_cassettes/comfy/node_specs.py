"""What validation reads from an /object_info catalogue about each node class, worked out once per class: a
replay validates every submitted prompt against one catalogue that never changes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["NodeSpecs"]

# One declared input: name, required?, input type, options, the type its constant is converted to (None: kept), and
# whether a constant needs the range and list checks (False: options without min/max for a type with no option list).
_Declared = tuple[str, bool, Any, Any, "type | None", bool]

# ComfyUI's validate_inputs converts a constant of these input types (execution.py: int(val), float(val)...).
_CONVERSIONS: dict[str, type] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


class NodeSpecs:
    """The facts validation reads from an /object_info catalogue, worked out once per class on first use.

    Keep one for as long as its catalogue does not change (the replay's recorded catalogue never does) and every
    prompt validated with it skips re-reading each class's input declarations; ``validate_prompt`` given a plain
    mapping makes a fresh one per call.
    """

    def __init__(self, object_info: Mapping[str, Any]) -> None:
        self.object_info = object_info
        self._inputs: dict[str, tuple[_Declared, ...]] = {}
        self._outputs: dict[str, tuple[Any, ...]] = {}

    def inputs(self, class_type: str) -> tuple[_Declared, ...]:
        """The class's required then optional inputs, in declared order."""
        declared = self._inputs.get(class_type)
        if declared is None:
            declared = self._inputs[class_type] = tuple(_declared_inputs(self.object_info[class_type]))
        return declared

    def outputs(self, class_type: str) -> tuple[Any, ...]:
        """The class's output types, indexed by slot."""
        returns = self._outputs.get(class_type)
        if returns is None:
            returns = self._outputs[class_type] = tuple(self.object_info[class_type].get("output", []))
        return returns


def _declared_inputs(spec: Mapping[str, Any]) -> Iterator[_Declared]:
    """Each required then optional input, in declared order."""
    declared = spec.get("input", {})
    order = spec.get("input_order", {})
    seen: set[str] = set()
    for category in ("required", "optional"):
        entries = declared.get(category, {})
        for name in order.get(category, list(entries)):
            if name in entries and name not in seen:
                seen.add(name)
                config = entries[name]
                input_type = config[0]
                conversion = _CONVERSIONS.get(input_type) if isinstance(input_type, str) else None
                extra_info = config[1] if len(config) > 1 else {}
                yield name, category == "required", input_type, extra_info, conversion, _checked(input_type, extra_info)


def _checked(input_type: Any, extra_info: Any) -> bool:
    """Whether validation's range and option-list checks can find anything wrong with a constant for this input
    (options that are no dict go through them, to fail where ComfyUI's lines do)."""
    if not isinstance(extra_info, dict) or "min" in extra_info or "max" in extra_info:
        return True
    return isinstance(input_type, list) or input_type == "COMBO"
