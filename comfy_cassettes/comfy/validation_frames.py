"""The Python tracebacks ComfyUI's validation failures carry (``exception_during_validation``): the frames of
execution.py, nodes.py and folder_paths.py that ComfyUI 0.3.64 prints, and the exception that carries them from
validation's equivalent of those lines."""

from __future__ import annotations

# The server paths in error_invalid_prompt's exception_during_validation traceback.
EXECUTION_PY = "/home/comfy/ComfyUI/execution.py"
NODES_PY = "/home/comfy/ComfyUI/nodes.py"
FOLDER_PATHS_PY = "/home/comfy/ComfyUI/folder_paths.py"


class Raised(Exception):
    """An exception ComfyUI's validate_inputs would raise, with the traceback frames it would print."""

    def __init__(self, error: BaseException, frames: list[str]) -> None:
        super().__init__(str(error))
        self.error = error
        self.frames = frames

    @property
    def type_name(self) -> str:
        # ComfyUI's full_type_name: builtins lose their module prefix.
        klass = type(self.error)
        return klass.__qualname__ if klass.__module__ == "builtins" else f"{klass.__module__}.{klass.__qualname__}"


def frame(line: int, function: str, code: str, tilde: str = "", caret: str = "", path: str = EXECUTION_PY) -> str:
    """One ``traceback.format_tb`` entry as Python 3.11 prints it, with its ~~^^ marker line."""
    text = f'  File "{path}", line {line}, in {function}\n    {code}\n'
    if caret:
        start = code.index(tilde + caret)
        text += "    " + " " * start + "~" * len(tilde) + "^" * len(caret) + "\n"
    return text


# Lines 1010 and 788 are those of error_invalid_prompt's traceback; the others are counted from ComfyUI's
# source around them and the non-execution.py ones are estimates: only the shape is ComfyUI's.
VALIDATE_PROMPT_FRAME = frame(
    1010, "validate_prompt", "m = await validate_inputs(prompt_id, prompt, o, validated)",
    caret="await validate_inputs(prompt_id, prompt, o, validated)",
)
RECURSE_FRAME = frame(
    808, "validate_inputs", "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
    caret="await validate_inputs(prompt_id, prompt, o_id, validated)",
)
INPUTS_FRAME = frame(
    725, "validate_inputs", "inputs = prompt[unique_id]['inputs']", "prompt[unique_id]", "['inputs']"
)
MEMBERSHIP_FRAME = frame(756, "validate_inputs", "if x not in inputs:", caret="x not in inputs")
VALUE_FRAME = frame(770, "validate_inputs", "val = inputs[x]", "inputs", "[x]")
LINK_SOURCE_FRAME = frame(788, "validate_inputs", "o_class_type = prompt[o_id]['class_type']", "prompt", "[o_id]")
RETURN_TYPE_FRAME = frame(790, "validate_inputs", "received_type = r[val[1]]", "r", "[val[1]]")
MIN_FRAME = frame(
    871, "validate_inputs", 'if "min" in extra_info and val < extra_info["min"]:', caret='val < extra_info["min"]'
)
MAX_FRAME = frame(
    884, "validate_inputs", 'if "max" in extra_info and val > extra_info["max"]:', caret='val > extra_info["max"]'
)


def custom_frames(dispatch: str) -> list[str]:
    """From validate_inputs down to the call of a node's VALIDATE_INPUTS (``dispatch``: how it is reached)."""
    call = (
        "await _async_map_node_over_list(prompt_id, unique_id, obj_class, input_filtered, "
        "validate_function_name, v3_data=v3_data)"
    )
    return [
        frame(937, "validate_inputs", f"ret = {call}", caret=call),
        frame(305, "_async_map_node_over_list", dispatch),
        frame(293, "process_inputs", "result = f(**inputs)", caret="f(**inputs)"),
    ]


ENDSWITH_FRAMES = [
    frame(1716, "VALIDATE_INPUTS", "if not folder_paths.exists_annotated_filepath(image):",
           caret="folder_paths.exists_annotated_filepath(image)", path=NODES_PY),
    frame(345, "exists_annotated_filepath", "name, base_dir = annotated_filepath(name)",
           caret="annotated_filepath(name)", path=FOLDER_PATHS_PY),
    frame(314, "annotated_filepath", 'if name.endswith("[output]"):', caret="name.endswith",
           path=FOLDER_PATHS_PY),
]
