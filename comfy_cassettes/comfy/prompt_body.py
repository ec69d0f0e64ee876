"""What ComfyUI's POST /prompt handler (server.py post_prompt) makes of a body's prompt_id and extra_data.

extra_data is the body's value as it is (not checked to be an object), with the body's client_id written in. What
it cannot write into raises there, and aiohttp answers the request with its 500: a ``TypeError`` from these
functions means that.

0.3.64 keeps an ``extra_data`` that is no object when the body names no client_id: ``["a"]`` is queued and shown
as sent, and the run fails at the first node that reads its hidden extra_pnginfo (more_sessions_0.3/prompt_edge).
From 0.3.69 the handler stamps ``create_time`` into it, so anything but an object is a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .protocol import SENSITIVE_EXTRA_DATA_KEYS


def given_prompt_id(body: Mapping[str, Any], *, must_be_uuid: bool) -> str | None:
    """``str()`` of the body's prompt_id, as ComfyUI does up to 0.8.0 at least, so a null one is ``"None"``
    (more_sessions_0.3/extra_edge); None when the server draws one: none given, or null where it must be a UUID."""
    if "prompt_id" not in body or must_be_uuid and body["prompt_id"] is None:
        return None
    return str(body["prompt_id"])


def given_extra_data(body: Mapping[str, Any]) -> Any:
    """The body's extra_data with its client_id written in, before the prompt's validity is answered: ComfyUI
    does this whatever validation found, so a body it cannot write into is a 500 even for an invalid prompt."""
    extra_data = body["extra_data"] if "extra_data" in body else {}
    if isinstance(extra_data, dict):
        extra_data = dict(extra_data)  # the queue's copy: the recording's body stays as it was
    if "client_id" in body:  # a null one too: the key is copied whenever it is there
        if not isinstance(extra_data, dict):
            raise TypeError(f"'{type(extra_data).__name__}' object does not support item assignment")
        extra_data["client_id"] = body["client_id"]
    return extra_data


def without_secrets(extra_data: Any) -> Any:
    """extra_data with the API credentials taken out (0.3.68+, held beside the queue item): ``in`` then ``pop``,
    so a value ``in`` cannot search, or a list naming one, raises as it does in the handler."""
    for key in SENSITIVE_EXTRA_DATA_KEYS:
        if key in extra_data:
            if not isinstance(extra_data, dict):
                raise TypeError(f"cannot pop {key!r} from a {type(extra_data).__name__}")
            extra_data.pop(key)
    return extra_data


def client_of(extra_data: Any) -> Any:
    """The client a job's messages go to: execution.py reads extra_data's client_id, whoever wrote it there (the
    body's, or one the client put inside extra_data itself); None when extra_data is no object."""
    return extra_data.get("client_id") if isinstance(extra_data, dict) else None
