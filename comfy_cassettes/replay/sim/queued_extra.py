"""The ``extra_data`` a queued prompt keeps, as the profile's ComfyUI makes it from the POST /prompt body: the
body's ``client_id``, the usage-source header, secrets held apart, a ``create_time`` stamp."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ...comfy.profiles import Profile
from ...comfy.protocol import SENSITIVE_EXTRA_DATA_KEYS


class QueuedExtra:
    """Makes each accepted prompt's extra_data; keeps the last ``create_time`` handed out."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.last_create_time = 0  # ms: each queued prompt's create_time is later than the one before

    def of(self, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """The queue item's extra_data as the profile's ComfyUI keeps it."""
        profile = self.profile
        sent = body.get("extra_data")
        extra_data = dict(sent) if isinstance(sent, dict) else {}  # (no object: queued as sent, foreign_extra.py)
        if "client_id" in body:  # a null one too: server.py copies the key whenever it is there
            extra_data["client_id"] = body["client_id"]
        # The header is looked up only for a version that reads it (a request's headers are searched, not indexed).
        usage_source = headers.get("comfy-usage-source") if profile.usage_source_header else None
        if usage_source and "comfy_usage_source" not in extra_data:
            extra_data["comfy_usage_source"] = usage_source
        if profile.hides_secrets:  # held beside the queue item, never shown (server.py post_prompt since 0.3.68)
            for key in SENSITIVE_EXTRA_DATA_KEYS:
                extra_data.pop(key, None)
        if profile.stamps_create_time:
            # Never the previous prompt's ms (ComfyUI's validation outlasts one): /api/jobs sorts as prompts were sent.
            self.last_create_time = max(int(time.time() * 1000), self.last_create_time + 1)
            extra_data["create_time"] = self.last_create_time
        return extra_data
