"""POST /prompt's ``extra_data`` when a client sends something other than an object. server.py post_prompt sets
and pops keys on whatever it got, so what a version answers follows from which of those lines it has:

- ``extra_data["client_id"] = ...`` whenever the body has ``client_id`` (every version): a TypeError, 500;
- from 0.3.68, ``if key in extra_data: extra_data.pop(key)`` for each secret (hides_secrets): 500 when the value
  holds one, or cannot answer ``in`` (null, a number);
- from 0.3.69, ``extra_data["create_time"] = ...`` (stamps_create_time): 500 (more_sessions_0.8/prompt_edge,
  ``extra_data`` a list, with and without ``client_id``).

Before them (0.3.64) a list or a string is queued as it is and runs: ``"client_id" in extra_data`` is False, so it
runs sent to nobody, until a node reading a hidden ``EXTRA_PNGINFO`` (SaveImage, PreviewImage), ``AUTH_TOKEN_COMFY_ORG``
or ``API_KEY_COMFY_ORG`` input calls ``extra_data.get`` (execution.py get_input_data): an AttributeError before
the node reads any input. One that holds ``client_id`` or a secret (the worker's own ``extra_data[...]`` and
task_done's ``pop`` raise outside any handler, and the worker thread dies), and null, numbers or booleans (``in``
raises there too) are not served as queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .profiles import Profile
from .protocol import SENSITIVE_EXTRA_DATA_KEYS

__all__ = ["READS_EXTRA_DATA", "queued_as_sent", "raises_on", "reading_node", "read_error"]

# Hidden input values get_input_data fills from extra_data.get (execution.py, 0.3.64): the line and its text.
READS_EXTRA_DATA = {
    "EXTRA_PNGINFO": (194, "input_data_all[x] = [extra_data.get('extra_pnginfo', None)]"),
    "AUTH_TOKEN_COMFY_ORG": (198, 'input_data_all[x] = [extra_data.get("auth_token_comfy_org", None)]'),
    "API_KEY_COMFY_ORG": (200, 'input_data_all[x] = [extra_data.get("api_key_comfy_org", None)]'),
}


def queued_as_sent(body: Mapping[str, Any], profile: Profile) -> bool:
    """Whether ``body``'s ``extra_data``, which is not an object, is queued as it is (else post_prompt raises)."""
    value = body.get("extra_data")
    if "client_id" in body or profile.hides_secrets or profile.stamps_create_time or not isinstance(value, (list, str)):
        return False
    return not any(key in value for key in ("client_id", *SENSITIVE_EXTRA_DATA_KEYS))


def raises_on(body: Mapping[str, Any], profile: Profile) -> bool:
    """Whether post_prompt raises (500) on a valid prompt whose ``extra_data`` is no object. A null one without
    ``client_id`` is queued as ``{}`` before 0.3.68 (ComfyUI queues it as null, and its worker dies on it)."""
    if body.get("extra_data") is None and "client_id" not in body:
        return profile.hides_secrets or profile.stamps_create_time
    return not queued_as_sent(body, profile)


def reading_node(order: Iterable[str], workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first node in execution ``order`` whose class reads extra_data, with the hidden value it reads."""
    for node_id in order:
        node = workflow.get(node_id)
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        spec = object_info.get(class_type) if isinstance(class_type, str) else None
        hidden = ((spec.get("input") or {}).get("hidden") or {}) if isinstance(spec, Mapping) else {}
        for value in hidden.values() if isinstance(hidden, Mapping) else ():
            if value in READS_EXTRA_DATA:
                return node_id, str(value)
    return None


def read_error(sent: Any, hidden: str) -> tuple[str, str, list[str]]:
    """The exception get_input_data raises reading ``hidden`` from extra_data ``sent``: type, message, traceback
    (the frames of execution.py in 0.3.64, as traceback.format_tb writes them)."""
    line, text = READS_EXTRA_DATA[hidden]
    frames = [
        '  File "/ComfyUI/execution.py", line 449, in execute\n    input_data_all, missing_keys, hidden_inputs = '
        "get_input_data(inputs, class_def, unique_id, caches.outputs, dynprompt, extra_data)\n",
        f'  File "/ComfyUI/execution.py", line {line}, in get_input_data\n    {text}\n',
    ]
    return "AttributeError", f"'{type(sent).__name__}' object has no attribute 'get'", frames
