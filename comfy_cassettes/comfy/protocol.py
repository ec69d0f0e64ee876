"""ComfyUI's fixed protocol values, as the real captures show them (real-sessions README)."""

from __future__ import annotations

import json
from typing import Any

# GET /features and the WebSocket feature_flags answer.
FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}

# aiohttp's answer when a handler raises: malformed JSON in POST /prompt, any crash.
CRASH_BODY = b"500 Internal Server Error\n\nServer got itself in trouble"
CRASH_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}

# aiohttp's json_response: json.dumps defaults, utf-8.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

MAXIMUM_HISTORY_SIZE = 10000  # execution.MAXIMUM_HISTORY_SIZE: the oldest entries go first


def dumps(value: Any) -> str:
    """JSON text as ComfyUI writes it (``json.dumps`` defaults: ``", "`` and ``": "``, ASCII escapes)."""
    return json.dumps(value)
