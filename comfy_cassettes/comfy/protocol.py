"""ComfyUI's fixed protocol values, as the real captures show them (real-sessions README)."""

from __future__ import annotations

import json
import uuid
from typing import Any

# GET /features and the WebSocket feature_flags answer.
FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}

# aiohttp's answer when a handler raises: malformed JSON in POST /prompt, any crash.
CRASH_BODY = b"500 Internal Server Error\n\nServer got itself in trouble"
CRASH_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}

# aiohttp's json_response: json.dumps defaults, utf-8.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"

MAXIMUM_HISTORY_SIZE = 10000  # execution.MAXIMUM_HISTORY_SIZE: the oldest entries go first

# extra_data keys holding API credentials: never in history (execution.py task_done), nor queues from 0.3.68.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
# comfy_api/latest/_io.py Hidden: the values /object_info gives hidden inputs, under the same key names as the
# secrets above ("api_key_comfy_org": "API_KEY_COMFY_ORG") yet public type names, not credentials.
HIDDEN_INPUT_TYPES = frozenset({"UNIQUE_ID", "PROMPT", "EXTRA_PNGINFO", "DYNPROMPT", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"})

# POST /prompt's 400 for a prompt_id that is not a canonical UUID (server.py, validate_job_id, since 0.25.0).
INVALID_PROMPT_ID = {
    "type": "invalid_prompt_id", "message": "prompt_id must be a valid UUID",
    "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one",
    "extra_info": {},
}


def is_canonical_uuid(value: Any) -> bool:
    """comfy_execution/jobs.py validate_job_id: a string equal to ``str(uuid.UUID(value))``."""
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def dumps(value: Any) -> str:
    """JSON text as ComfyUI writes it (``json.dumps`` defaults: ``", "`` and ``": "``, ASCII escapes)."""
    return json.dumps(value)
