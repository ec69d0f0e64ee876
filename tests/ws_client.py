"""A blocking /ws client for tests: connect past the greeting, read a job's events to its end."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from websockets.sync.client import ClientConnection, connect

from comfy_cassettes.replay.server import ReplayServer


@contextlib.contextmanager
def open_ws(server: ReplayServer, client_id: str) -> Iterator[ClientConnection]:
    """A /ws client past its greeting; unbounded buffer, so a test can read everything at the end."""
    with connect(server.url.replace("http://", "ws://") + f"/ws?clientId={client_id}", max_queue=None) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "status" and hello["data"]["sid"] == client_id
        yield ws


def events_until_done(ws: ClientConnection, prompt_id: str) -> list[dict[str, Any]]:
    """Text events up to and including ``executing`` with node null for ``prompt_id`` (binary frames skipped)."""
    events = []
    while True:
        message = ws.recv(timeout=5)
        if isinstance(message, str):
            events.append(json.loads(message))
            if events[-1] == {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}:
                return events
