"""ComfyUI's fixed protocol values, as the real captures show them (tests/data/real_sessions/README.md)."""

from __future__ import annotations

from typing import Any

# GET /features and the WebSocket feature_flags answer.
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}

# Without a client_id ComfyUI only broadcasts these (no_client_id capture); the rest goes to nobody.
BROADCAST_TYPES = frozenset({"status", "progress_state", "execution_interrupted"})

# aiohttp's answer when a handler raises: malformed JSON in POST /prompt, any crash.
CRASH_BODY = b"500 Internal Server Error\n\nServer got itself in trouble"
CRASH_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}

# The events that end a prompt's run; each gives the history status shown.
TERMINAL = ("execution_success", "execution_error", "execution_interrupted")
STATUS_OF_TERMINAL = {"execution_success": "success", "execution_error": "error", "execution_interrupted": "interrupted"}


def is_link(value: Any) -> bool:
    """comfy_execution.graph_utils.is_link: an input wired to ``[source node id, output slot]`` (slot int or float)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
    )
