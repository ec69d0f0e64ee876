"""The /ws side of a replay: connected clients, who receives which message, and one ordered outbox.

Like ComfyUI's server (send_sync → messages queue → publish_loop), every message is queued when the engine
produces it, with its values taken then, and one publisher sends them in that order. Recipients are resolved
when a message is sent: a client that connects later still receives broadcasts queued before it. A message
that no connected socket could receive when it is produced is not rendered at all: a job submitted by a
client polling /history costs no JSON for a socket that is not there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...comfy.events import BROADCAST_TYPES, Event, encode_preview, message
from ...comfy.events import status as status_data
from ...comfy.protocol import FEATURES

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


@dataclass(frozen=True)
class _Text:
    client_id: str | None  # None: every socket
    text: str


@dataclass(frozen=True)
class _Preview:
    client_id: str
    image: bytes
    image_format: int | None
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class _Cut:
    client_id: str | None  # None: every socket
    code: int | None


_Outgoing = _Text | _Preview | _Cut


class Sockets:
    """The connected clients by sid (the latest socket of a sid is the one that receives, like ComfyUI)."""

    def __init__(self, features: dict[str, Any] | None = None) -> None:
        self.clients: dict[str, Client] = {}
        self.features = features if features is not None else FEATURES  # the feature_flags answer
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()

    def add(self, client: Client) -> None:
        self.clients[client.sid] = client

    def remove(self, client: Client) -> None:
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]

    async def greet(self, client: Client, queue_remaining: int, running_node: str | None) -> None:
        """What ComfyUI sends a socket as it connects, before anything queued: ``status`` with its sid, and
        ``executing`` for the node running when the same client reconnects (ws_reconnect capture)."""
        await client.send(message(Event.STATUS.value, status_data(queue_remaining, client.sid)))
        if running_node is not None:
            await client.send(message(Event.EXECUTING.value, {"node": running_node}))

    async def on_message(self, client: Client, text: str) -> None:
        """Only the first ``feature_flags`` message means anything (ws_binary_with_metadata)."""
        try:
            parsed = json.loads(text)
        except ValueError:
            return
        if isinstance(parsed, dict) and parsed.get("type") == Event.FEATURE_FLAGS.value:
            data = parsed.get("data") or {}
            client.preview_metadata = isinstance(data, dict) and bool(data.get("supports_preview_metadata"))
            await client.send(message(Event.FEATURE_FLAGS.value, self.features))

    # ------------------------------------------------------------ queued messages

    def listening(self, client_id: str | None) -> bool:
        """Whether a job's binary frames would reach anyone: its client is connected (previews go to it alone)."""
        return client_id is not None and client_id in self.clients

    def status(self, queue_remaining: int) -> None:
        """The queue-size broadcast every socket gets, with the size at this moment."""
        if self.clients:
            self._outbox.put_nowait(_Text(None, message(Event.STATUS.value, status_data(queue_remaining))))

    def emit(self, client_id: str | None, kind: str, data: Any) -> None:
        """A job's message: to the submitting client, or to everyone when the prompt came without a client_id
        (and then only the types ComfyUI broadcasts)."""
        if self.reaches(client_id, kind):
            self._outbox.put_nowait(_Text(client_id, message(kind, data)))

    def reaches(self, client_id: str | None, kind: str) -> bool:
        """Whether a job's message of ``kind`` would go to anyone now (else it is not even built)."""
        if client_id is None:
            return kind in BROADCAST_TYPES and bool(self.clients)
        return client_id in self.clients

    def emit_preview(self, client_id: str | None, image: bytes, *, image_format: int | None, metadata: dict[str, Any] | None) -> None:
        """A binary preview, framed for the client when it is sent (type 4 if it announced metadata support)."""
        if client_id is not None and self.listening(client_id):
            self._outbox.put_nowait(_Preview(client_id, image, image_format, metadata))

    def cut(self, client_id: str | None, code: int | None) -> None:
        """Close the submitting client's socket (every socket for a prompt sent without client_id), in order."""
        self._outbox.put_nowait(_Cut(client_id, code))

    async def publish(self) -> None:
        """Send queued messages in order, forever (the engine runs this as a task)."""
        while True:
            item = await self._outbox.get()
            try:
                await self._deliver(item)
            finally:
                self._outbox.task_done()

    async def _deliver(self, item: _Outgoing) -> None:
        if isinstance(item, _Text):
            targets = list(self.clients.values()) if item.client_id is None else [c for c in (self.clients.get(item.client_id),) if c]
            for client in targets:
                await self._send(client, item.text)
        elif isinstance(item, _Preview):
            receiver = self.clients.get(item.client_id)
            if receiver is not None:
                frame = encode_preview(item.image, metadata=item.metadata, image_format=item.image_format, with_metadata=receiver.preview_metadata)
                await self._send(receiver, frame)
        else:
            targets = list(self.clients.values()) if item.client_id is None else [c for c in (self.clients.get(item.client_id),) if c]
            for client in targets:
                self.remove(client)
                if client.close is not None:
                    try:
                        await client.close(item.code)
                    except Exception:  # noqa: BLE001 - already gone is as good as cut
                        pass

    async def _send(self, client: Client, payload: str | bytes) -> None:
        """Send, forgetting a socket that went away or stopped reading: one stuck client must not hold up
        every job's messages for long."""
        try:
            await asyncio.wait_for(client.send(payload), SEND_TIMEOUT)
        except Exception:  # noqa: BLE001 - gone, or stalled for SEND_TIMEOUT
            self.remove(client)
