"""ComfyUI's WebSocket messages: their types, who receives them, their payloads and the binary preview frames.

Shapes come from the real captures (real-sessions README, "WebSocket /ws" and "Binary WebSocket frames");
payload builders here are the only place a replay or a recording spells one out.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .protocol import dumps


class Event(str, Enum):
    """A server-to-client message type (``{"type": ..., "data": ...}``)."""

    STATUS = "status"
    FEATURE_FLAGS = "feature_flags"
    EXECUTION_START = "execution_start"
    EXECUTION_CACHED = "execution_cached"
    EXECUTING = "executing"
    PROGRESS = "progress"
    PROGRESS_STATE = "progress_state"
    EXECUTED = "executed"
    EXECUTION_SUCCESS = "execution_success"
    EXECUTION_ERROR = "execution_error"
    EXECUTION_INTERRUPTED = "execution_interrupted"

    def __str__(self) -> str:
        return self.value


# The events that end a prompt's run; each gives the history status shown.
TERMINAL = (Event.EXECUTION_SUCCESS.value, Event.EXECUTION_ERROR.value, Event.EXECUTION_INTERRUPTED.value)
STATUS_OF_TERMINAL = {"execution_success": "success", "execution_error": "error", "execution_interrupted": "interrupted"}

# Without a client_id ComfyUI only broadcasts these (no_client_id capture); the rest goes to nobody. ``progress``
# and binary previews come from main.py's progress hook, which sends them to server.client_id unasked: None is
# every socket (more_sessions_0.3/extra_edge, a SaveImageWebsocket job queued without a client).
BROADCAST_TYPES = frozenset({Event.STATUS.value, Event.PROGRESS_STATE.value, Event.PROGRESS.value, Event.EXECUTION_INTERRUPTED.value})

# The start-of-run messages history keeps with the terminal one (history status.messages).
HISTORY_TYPES = frozenset({Event.EXECUTION_START.value, Event.EXECUTION_CACHED.value, *TERMINAL})


@dataclass(frozen=True)
class BinaryFrame:
    """A binary WebSocket frame: a preview image with its header (type 1 legacy, type 4 with metadata)."""

    event_type: int
    file: str
    image_format: int | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class WsEvent:
    """One server-to-client WebSocket message of a job, ``t`` seconds after ``execution_start``."""

    t: float
    type: str | None = None
    data: Any = None
    binary: BinaryFrame | None = None


def message(kind: str, data: Any) -> str:
    """The text frame ComfyUI sends (``json.dumps`` defaults; a job with a socket sends a dozen)."""
    return dumps({"type": kind, "data": data})


def status(queue_remaining: int, sid: str | None = None) -> dict[str, Any]:
    """``status`` data; the greeting carries the socket's ``sid``, later broadcasts do not."""
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return data


def executing(node: str | None, prompt_id: str) -> dict[str, Any]:
    """``executing``: a node starting, or ``node: None`` at the end of the prompt."""
    if node is None:
        return {"node": None, "prompt_id": prompt_id}
    return {"node": node, "display_node": node, "prompt_id": prompt_id}


def node_state(node: str, prompt_id: str, value: float, maximum: float, state: str) -> dict[str, Any]:
    """One entry of ``progress_state.nodes``."""
    return {
        "value": value, "max": maximum, "state": state, "node_id": node, "prompt_id": prompt_id,
        "display_node_id": node, "parent_node_id": None, "real_node_id": node,
    }


def preview_metadata(node: str | None, prompt_id: str, image_type: str) -> dict[str, Any]:
    """The metadata of a type 4 preview frame (ws_binary_with_metadata, txt2img captures)."""
    return {"node_id": node, "prompt_id": prompt_id, "display_node_id": node, "parent_node_id": None,
            "real_node_id": node, "image_type": image_type}


def history_meta(nodes: Sequence[str]) -> dict[str, Any]:
    """History's ``meta``: one entry per output node."""
    return {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in nodes}


def interrupted(prompt_id: str, node_id: str | None, node_type: str | None, executed: Sequence[str], timestamp: int) -> dict[str, Any]:
    """``execution_interrupted`` data (interrupt capture)."""
    return {"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type, "executed": list(executed), "timestamp": timestamp}


def execution_error(
    prompt_id: str, node_id: str | None, workflow: Mapping[str, Any], executed: Sequence[str],
    current_outputs: Sequence[str], *, exception_type: str, exception_message: str, traceback: Sequence[str] | None,
    timestamp: int,
) -> dict[str, Any]:
    """``execution_error`` data in the captured shape (error_execution capture)."""
    from .graph import is_link

    node = workflow.get(node_id or "", {}) if isinstance(workflow, Mapping) else {}
    node_type = node.get("class_type") if isinstance(node, Mapping) else None
    inputs = node.get("inputs", {}) if isinstance(node, Mapping) else {}
    # ComfyUI formats each input list: plain values as they are, anything else (tensors) as str().
    current_inputs = {
        name: ["tensor(...)" if is_link(value) else value if isinstance(value, (str, int, float, bool)) or value is None else str(value)]
        for name, value in inputs.items()
    }
    return {
        "prompt_id": prompt_id, "node_id": node_id, "node_type": node_type, "executed": list(executed),
        "exception_message": exception_message, "exception_type": exception_type,
        "traceback": list(traceback) if traceback is not None else default_traceback(node_type, exception_type, exception_message),
        "current_inputs": current_inputs, "current_outputs": list(current_outputs), "timestamp": timestamp,
    }


def default_traceback(node_type: str | None, exception_type: str, message: str) -> list[str]:
    """The frames ComfyUI's executor always shows (error_execution capture), ending in the raise."""
    name = exception_type.rsplit(".", 1)[-1]
    return [
        '  File "/ComfyUI/execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n',
        '  File "/ComfyUI/execution.py", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n',
        '  File "/ComfyUI/execution.py", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n',
        '  File "/ComfyUI/execution.py", line 277, in process_inputs\n    result = f(**inputs)\n',
        f'  File "<comfy-cassettes fault rule>", line 1, in {node_type or "node"}\n    raise {name}({message!r})\n',
    ]


# ---------------------------------------------------------------- binary frames

PREVIEW_IMAGE = 1  # legacy: [uint32 1][uint32 format][image]
PREVIEW_IMAGE_WITH_METADATA = 4  # [uint32 4][uint32 length][metadata JSON][image]
IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}


def encode_preview(image: bytes, *, metadata: Mapping[str, Any] | None, image_format: int | None, with_metadata: bool) -> bytes:
    """A preview frame in the format the client announced (type 4 with metadata, else legacy type 1)."""
    if with_metadata and metadata is not None:
        meta = json.dumps(metadata).encode()
        return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + image
    legacy_format = image_format or (1 if (metadata or {}).get("image_type") == "image/jpeg" else 2)
    return struct.pack(">II", PREVIEW_IMAGE, legacy_format) + image


@dataclass(frozen=True)
class DecodedFrame:
    """A binary frame taken apart."""

    event_type: int
    image: bytes
    image_format: int | None = None
    metadata: dict[str, Any] | None = None

    @property
    def image_type(self) -> str:
        if self.metadata is not None:
            return str(self.metadata.get("image_type", "image/png"))
        return IMAGE_FORMATS.get(self.image_format or 2, "image/png")


def decode_frame(data: bytes) -> DecodedFrame:
    """Split a binary frame into its header fields and image bytes."""
    event_type = struct.unpack(">I", data[:4])[0]
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        length = struct.unpack(">I", data[4:8])[0]
        return DecodedFrame(event_type, data[8 + length:], metadata=json.loads(data[8 : 8 + length]))
    return DecodedFrame(event_type, data[8:], image_format=struct.unpack(">I", data[4:8])[0])
