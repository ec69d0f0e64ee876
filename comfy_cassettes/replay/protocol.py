"""ComfyUI's fixed protocol values, as the real captures show them (tests/data/real_sessions/README.md)."""

from __future__ import annotations

# GET /features and the WebSocket feature_flags answer.
FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}

# Without a client_id ComfyUI only broadcasts these (no_client_id capture); the rest goes to nobody.
BROADCAST_TYPES = frozenset({"status", "progress_state", "execution_interrupted"})

# aiohttp's answer when a handler raises: malformed JSON in POST /prompt, any crash.
CRASH_BODY = b"500 Internal Server Error\n\nServer got itself in trouble"
CRASH_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}
