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
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...comfy.events import BROADCAST_TYPES, Event, encode_preview, message
from ...comfy.events import status as status_data
from ...comfy.protocol import FEATURES

Send = Callable[[str | bytes], Awaitable[None]]
Close = Callable[[int | None], Awaitable[None]]
# Seconds one socket may take to accept a frame before it is cut (COMFY_CASSETTES_WS_SEND_TIMEOUT overrides).
SEND_TIMEOUT = float(os.environ.get("COMFY_CASSETTES_WS_SEND_TIMEOUT", "5"))
CLIENT_BACKLOG = 4096  # messages waiting for one socket before it counts as stalled and is cut


# The outbox's records are NamedTuples, not frozen dataclasses: made per message, and a dataclass's generated
# methods are compiled when the module is imported (serve's start-up).
class _Closing(NamedTuple):
    code: int | None  # None: cut the connection; else a close frame


@dataclass(eq=False)
class Client:
    """A connected /ws socket. Its messages go through its own bounded queue and writer task, so a client
    that stops reading delays nobody else."""

    sid: str
    send: Send
    preview_metadata: bool = False
    close: Close | None = None  # cut the socket (ws_disconnect faults, stalled clients)
    outbox: asyncio.Queue[str | bytes | _Closing] = field(default_factory=lambda: asyncio.Queue(CLIENT_BACKLOG))
    writer: asyncio.Task[None] | None = None
    first_message: bool = True  # no JSON object read from it yet: only then is feature_flags answered


class _Text(NamedTuple):
    client_id: str | None  # None: every socket
    text: str


class _Preview(NamedTuple):
    client_id: str | None  # None: every socket, none of them told metadata
    image: bytes
    image_format: int | None
    metadata: dict[str, Any] | None


class _Cut(NamedTuple):
    client_id: str | None  # None: every socket
    code: int | None


_Outgoing = _Text | _Preview | _Cut


class Sockets:
    """The connected clients by sid (the latest socket of a sid is the one that receives, like ComfyUI)."""

    def __init__(self, features: dict[str, Any] | None = None) -> None:
        self.clients: dict[str, Client] = {}
        self.features = features if features is not None else FEATURES  # the feature_flags answer
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._writers: set[asyncio.Task[None]] = set()

    def add(self, client: Client) -> None:
        """Register ``client`` and start its writer (on the running loop)."""
        self.clients[client.sid] = client
        client.writer = asyncio.get_running_loop().create_task(self._write(client), name=f"comfy-cassettes-ws-{client.sid}")
        self._writers.add(client.writer)
        client.writer.add_done_callback(self._writers.discard)

    def remove(self, client: Client) -> None:
        """Forget ``client`` and stop its writer (what it had not sent yet is dropped: it is gone)."""
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]
        if client.writer is not None and client.writer is not _current_task():
            client.writer.cancel()

    def disconnect(self, client: Client) -> None:
        """``client``'s connection has ended: like server.py websocket_handler's ``finally: sockets.pop(sid)``, its
        sid is forgotten even when a newer socket took it over, which then receives nothing more (ws_edge capture)."""
        self.clients.pop(client.sid, None)
        self.remove(client)

    async def stop(self) -> None:
        """Stop every writer (server shutdown), waiting a bounded time for them to end."""
        writers = list(self._writers)
        for writer in writers:
            writer.cancel()
        if writers:
            await asyncio.wait(writers, timeout=1.0)

    async def greet(self, client: Client, queue_remaining: int, running_node: str | None) -> None:
        """What ComfyUI sends a socket as it connects, before anything queued: ``status`` with its sid, and
        ``executing`` for the node running when the same client reconnects (ws_reconnect capture)."""
        self._queue(client, message(Event.STATUS.value, status_data(queue_remaining, client.sid)))
        if running_node is not None:
            self._queue(client, message(Event.EXECUTING.value, {"node": running_node}))

    async def on_message(self, client: Client, text: str) -> None:
        """A ``feature_flags`` message is read and answered only as the socket's first JSON object, like
        server.py websocket_handler: text that is not JSON, or JSON that is not an object, leaves it first (its
        ``data.get`` fails before the flag is cleared); any object clears it."""
        try:
            parsed = json.loads(text)
        except ValueError:
            return
        if not isinstance(parsed, dict):
            return
        first, client.first_message = client.first_message, False
        if first and parsed.get("type") == Event.FEATURE_FLAGS.value:
            data = parsed.get("data") or {}
            client.preview_metadata = isinstance(data, dict) and bool(data.get("supports_preview_metadata"))
            self._queue(client, message(Event.FEATURE_FLAGS.value, self.features))

    # ------------------------------------------------------------ queued messages

    def listening(self, client_id: str | None) -> bool:
        """Whether a job's binary frames would reach anyone: its client is connected (previews go to it alone), or
        for a prompt sent without client_id any socket (the progress hook sends them to every one)."""
        return client_id in self.clients if client_id is not None else bool(self.clients)

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

    def watching(self, client_id: str | None) -> bool:
        """Whether any of a job's messages would reach a socket now: its client's, or for a prompt sent without
        client_id every socket, which gets the progress_state ComfyUI broadcasts."""
        return self.reaches(client_id, Event.PROGRESS_STATE.value)

    def emit_preview(self, client_id: str | None, image: bytes, *, image_format: int | None, metadata: dict[str, Any] | None) -> None:
        """A binary preview, framed for the client when it is sent (type 4 if it announced metadata support; to
        every socket in the legacy framing when the prompt named no client: feature_flags.supports_feature(None))."""
        if self.listening(client_id):
            self._outbox.put_nowait(_Preview(client_id, image, image_format, metadata))

    def cut(self, client_id: str | None, code: int | None) -> None:
        """Close the submitting client's socket (every socket for a prompt sent without client_id), in order."""
        self._outbox.put_nowait(_Cut(client_id, code))

    async def publish(self) -> None:
        """Hand queued messages, in order, to each recipient's writer, forever (the engine runs this as a task).
        It never waits on a socket, so cancelling it always ends it."""
        while True:
            self._deliver(await self._outbox.get())

    def _targets(self, client_id: str | None) -> list[Client]:
        if client_id is None:
            return list(self.clients.values())
        client = self.clients.get(client_id)
        return [client] if client is not None else []

    def _deliver(self, item: _Outgoing) -> None:
        if isinstance(item, _Text):
            for client in self._targets(item.client_id):
                self._queue(client, item.text)
        elif isinstance(item, _Preview):
            for receiver in self._targets(item.client_id):
                with_metadata = receiver.preview_metadata and item.client_id is not None
                self._queue(receiver, encode_preview(item.image, metadata=item.metadata, image_format=item.image_format, with_metadata=with_metadata))
        else:
            for client in self._targets(item.client_id):
                if self.clients.get(client.sid) is client:
                    del self.clients[client.sid]  # no more messages; its writer closes it after what is queued
                self._queue(client, _Closing(item.code))

    def _queue(self, client: Client, payload: str | bytes | _Closing) -> None:
        try:
            client.outbox.put_nowait(payload)
        except asyncio.QueueFull:
            self._cut_stalled(client)

    async def _write(self, client: Client) -> None:
        """Send ``client``'s messages in order. A send that takes over SEND_TIMEOUT cuts the socket (a timer,
        not ``wait_for``: on Python 3.11 that can swallow the cancel that stops the server)."""
        loop = asyncio.get_running_loop()
        while True:
            payload = await client.outbox.get()
            if isinstance(payload, _Closing):
                await self._close(client, payload.code)
                return
            timer = loop.call_later(SEND_TIMEOUT, self._cut_stalled, client)
            try:
                await client.send(payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the socket went away
                self.remove(client)
                return
            finally:
                timer.cancel()

    def _cut_stalled(self, client: Client) -> None:
        """A client that stopped reading: forget it and close its connection, so it knows (and reconnects)."""
        self.remove(client)
        if client.close is not None:
            asyncio.get_running_loop().create_task(self._close(client, None))

    async def _close(self, client: Client, code: int | None) -> None:
        self.remove(client)
        if client.close is not None:
            try:
                await client.close(code)
            except Exception:  # noqa: BLE001 - already gone is as good as cut
                pass


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing is running either
        return None
