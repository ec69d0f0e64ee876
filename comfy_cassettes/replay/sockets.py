"""The /ws side of a replay: connected clients, who receives which event, and binary preview frames."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .protocol import BROADCAST_TYPES, FEATURES

Send = Callable[[str | bytes], Awaitable[None]]
Close = Callable[[int | None], Awaitable[None]]
SEND_TIMEOUT = 5.0  # seconds one socket may take to accept a frame before it is dropped


@dataclass
class Client:
    """A connected /ws socket."""

    sid: str
    send: Send
    preview_metadata: bool = False
    close: Close | None = None  # cut the socket (ws_disconnect faults)


class Sockets:
    """The connected clients by sid; the latest socket of a sid is the one that receives (like ComfyUI)."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}

    def add(self, client: Client) -> None:
        self.clients[client.sid] = client

    def remove(self, client: Client) -> None:
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]

    async def on_message(self, client: Client, text: str) -> None:
        """Only the first ``feature_flags`` message means anything (ws_binary_with_metadata)."""
        try:
            message = json.loads(text)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "feature_flags":
            data = message.get("data") or {}
            client.preview_metadata = bool(data.get("supports_preview_metadata"))
            await client.send(json.dumps({"type": "feature_flags", "data": FEATURES}))

    async def send(self, client: Client, payload: str | bytes) -> None:
        """Send, forgetting a socket that went away or stopped reading: one stuck client must not hold up
        every job's events (the worker awaits these sends in order)."""
        try:
            await asyncio.wait_for(client.send(payload), SEND_TIMEOUT)
        except Exception:  # noqa: BLE001 - gone, or stalled for SEND_TIMEOUT
            self.remove(client)

    async def status(self, queue_remaining: int) -> None:
        """The queue-size broadcast every socket gets."""
        text = json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": queue_remaining}}}})
        for client in list(self.clients.values()):
            await self.send(client, text)

    async def emit(self, client_id: str | None, kind: str, data: Any) -> None:
        """A job event: to the submitting client, or broadcast when the prompt came without a client_id."""
        if client_id is None:
            if kind in BROADCAST_TYPES and self.clients:
                text = json.dumps({"type": kind, "data": data})
                for client in list(self.clients.values()):
                    await self.send(client, text)
            return
        target = self.clients.get(client_id)
        if target is not None:
            await self.send(target, json.dumps({"type": kind, "data": data}))

    async def emit_preview(
        self, client_id: str | None, image: bytes, *, image_format: int | None, metadata: dict[str, Any] | None
    ) -> None:
        """A binary preview in the format the client asked for: type 4 with metadata, else legacy type 1."""
        client = self.clients.get(client_id) if client_id is not None else None
        if client is None:
            return
        if client.preview_metadata and metadata is not None:
            meta = json.dumps(metadata).encode()
            payload = struct.pack(">II", 4, len(meta)) + meta + image
        else:
            legacy_format = image_format or (1 if (metadata or {}).get("image_type") == "image/jpeg" else 2)
            payload = struct.pack(">II", 1, legacy_format) + image
        await self.send(client, payload)

    async def cut(self, client_id: str | None, code: int | None) -> None:
        """Close the submitting client's socket (every socket for a prompt sent without client_id)."""
        if client_id is None:
            targets = list(self.clients.values())
        else:
            targets = [self.clients[client_id]] if client_id in self.clients else []
        for client in targets:
            self.remove(client)
            if client.close is not None:
                try:
                    await client.close(code)
                except Exception:  # noqa: BLE001 - already gone is as good as cut
                    pass
