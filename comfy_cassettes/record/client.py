"""The client half of recording: talks to a ComfyUI (HTTP and /ws) and keeps every exchange and frame in a RawSession.

Shared by ``record`` (live.py), which runs workflows with it, and ``verify``, which drives a server the same way
and compares what it gets with a cassette.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..comfy.events import STATUS_OF_TERMINAL
from ..errors import RecordError
from .session import TRANSFER_HEADERS, HttpExchange, RawSession, WsConnection, WsFrame


class Progress(Protocol):
    """What the recorder reports while a job runs (the CLI draws it with rich)."""

    def job_started(self, index: int, total: int, prompt_id: str, workflow: Mapping[str, Any]) -> None: ...
    def message(self, message: dict[str, Any]) -> None: ...
    def job_finished(self, status: str) -> None: ...


class QuietProgress:
    """Reports nothing."""

    def job_started(self, index: int, total: int, prompt_id: str, workflow: Mapping[str, Any]) -> None:
        pass

    def message(self, message: dict[str, Any]) -> None:
        pass

    def job_finished(self, status: str) -> None:
        pass


@dataclass
class LiveJob:
    """What the server did with one submitted prompt."""

    response: HttpExchange
    prompt_id: str | None
    status: str = "rejected"
    history: dict[str, Any] | None = None
    images: list[dict[str, Any]] = field(default_factory=list)


class LiveSocket:
    """A ``/ws`` connection whose frames are recorded as they arrive; JSON messages are sorted by prompt for followers.

    Several jobs can be in flight (verify submits while one runs), so each prompt gets its own queue, created by
    whichever comes first: its first message or its follower.
    """

    def __init__(self, connection: ClientConnection, record: WsConnection) -> None:
        self.connection = connection
        self.record = record
        self._queues: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._closed = False
        self._reader = asyncio.create_task(self._read())

    def messages(self, prompt_id: str) -> asyncio.Queue[dict[str, Any] | None]:
        """The queue of ``prompt_id``'s messages; it yields None once the socket has closed."""
        queue = self._queues.get(prompt_id)
        if queue is None:
            queue = self._queues[prompt_id] = asyncio.Queue()
            if self._closed:
                queue.put_nowait(None)
        return queue

    async def _read(self) -> None:
        try:
            async for data in self.connection:
                self.record.frames.append(WsFrame(time.time(), False, data))
                if isinstance(data, str):
                    try:
                        message = json.loads(data)
                    except ValueError:
                        continue
                    data_ = message.get("data") if isinstance(message, dict) else None
                    if isinstance(data_, dict) and isinstance(data_.get("prompt_id"), str):
                        self.messages(data_["prompt_id"]).put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            for queue in self._queues.values():
                queue.put_nowait(None)

    async def send(self, data: str | bytes) -> None:
        self.record.frames.append(WsFrame(time.time(), True, data))
        await self.connection.send(data)

    async def close(self) -> None:
        await self.connection.close()
        await self._reader


class RecordingClient:
    """Talks to a ComfyUI server and keeps every exchange in ``session``.

    Usage::

        async with RecordingClient("http://127.0.0.1:8188") as client:
            socket = await client.open_socket()
            run = await client.run_job({"prompt": workflow, "client_id": socket.record.client_id}, socket)
    """

    def __init__(self, server: str, *, timeout: float = 600.0, progress: Progress | None = None) -> None:
        parts = urlsplit(server if "://" in server else f"http://{server}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RecordError(f"--server must be an http(s) URL such as http://127.0.0.1:8188, got {server!r}")
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.timeout = timeout
        self.progress = progress or QuietProgress()
        self.session = RawSession(source=self.base)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), trust_env=False)
        self.sockets: list[LiveSocket] = []
        self.abandoned: set[str] = set()  # prompt_ids our own POST /queue delete removed: nothing will come for them

    async def __aenter__(self) -> RecordingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for socket in self.sockets:
            await socket.close()
        await self.http.aclose()

    async def request(
        self, method: str, path: str, *, params: Sequence[tuple[str, str]] | None = None, content: bytes | None = None,
        json_body: Any = None, files: Any = None, data: Any = None, headers: Mapping[str, str] | None = None,
    ) -> HttpExchange:
        """Send one request and record it (the bytes really sent, the answer as received)."""
        url = self.base + path + ("?" + urlencode(list(params)) if params else "")
        if json_body is not None:
            content, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json", **(headers or {})}
        request = self.http.build_request(method, url, content=content, files=files, data=data, headers=headers)
        body = request.read()
        started = time.time()
        try:
            response = await self.http.send(request)
        except httpx.HTTPError as exc:
            raise RecordError(f"{method} {url} failed: {exc!r} — is ComfyUI running there?") from None
        exchange = HttpExchange(
            t=started, method=method, url=url, request_headers=_raw(request.headers), request_body=body,
            status=response.status_code, reason=response.reason_phrase,
            # httpx hands us decoded bodies, so the transfer headers no longer describe them.
            response_headers=[(k, v) for k, v in _raw(response.headers) if k.lower() not in TRANSFER_HEADERS],
            response_body=response.content, duration=time.time() - started,
        )
        self.session.exchanges.append(exchange)
        return exchange

    async def open_socket(self, client_id: str | None = None) -> LiveSocket:
        """Connect ``/ws?clientId=...`` and start recording its frames."""
        client_id = client_id or uuid.uuid4().hex
        ws_base = "ws" + self.base[4:]
        url = f"{ws_base}/ws?clientId={client_id}"
        try:
            # No compression offer, like the client of the reference captures (real-sessions README, WebSocket).
            connection = await connect(url, max_size=None, compression=None, proxy=None, open_timeout=10)
        except Exception as exc:  # noqa: BLE001 - refused, timed out or bad handshake: the user needs the same hint
            raise RecordError(f"cannot open the WebSocket {url}: {exc!r}") from None
        record = WsConnection(t=time.time(), url=url.replace(ws_base, self.base, 1))
        self.session.sockets.append(record)
        socket = LiveSocket(connection, record)
        self.sockets.append(socket)
        return socket

    async def upload(self, image: Path, *, overwrite: bool = True) -> str:
        """POST /upload/image like the ComfyUI page; returns the name LoadImage must use."""
        try:
            data = image.read_bytes()
        except OSError as exc:
            raise RecordError(f"--upload {image}: {exc.strerror or exc}") from None
        mime = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        fields = {"overwrite": "true"} if overwrite else {}
        x = await self.request("POST", "/upload/image", files={"image": (image.name, data, mime)}, data=fields)
        answer = x.response_json()
        if x.status != 200 or not isinstance(answer, dict):
            raise RecordError(f"uploading {image} failed: HTTP {x.status} {x.response_body[:200]!r}")
        name = str(answer.get("name", image.name))
        return f"{answer['subfolder']}/{name}" if answer.get("subfolder") else name

    async def run_job(
        self, body: dict[str, Any], socket: LiveSocket | None, *, index: int = 0, total: int = 1, headers: Mapping[str, str] | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> LiveJob:
        """POST /prompt, follow the job to its end (over ``socket`` when it has our client_id), fetch its history.

        ``on_message`` sees each of the job's WebSocket messages as it arrives (verify uses it to interrupt).
        """
        run = await self.submit_job(body, headers=headers)
        if run.prompt_id is None:
            return run
        self.progress.job_started(index, total, run.prompt_id, body["prompt"])
        return await self.finish_job(run, body, socket, on_message=on_message)

    async def submit_job(self, body: dict[str, Any], *, headers: Mapping[str, str] | None = None) -> LiveJob:
        """POST /prompt only; ``prompt_id`` is None when ComfyUI refused it."""
        x = await self.request("POST", "/prompt", json_body=body, headers=headers)
        answer = x.response_json()
        if x.status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("prompt_id"), str):
            return LiveJob(x, None)
        return LiveJob(x, answer["prompt_id"], status="unfinished")

    async def finish_job(
        self, run: LiveJob, body: dict[str, Any], socket: LiveSocket | None, *, on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> LiveJob:
        """Wait for a submitted job to end, then read its history entry and output list."""
        prompt_id = run.prompt_id or ""
        followed = socket is not None and bool(body.get("client_id"))
        wait = self.timeout
        if followed:
            ended = await self._follow(socket, prompt_id, on_message)  # type: ignore[arg-type]
            wait = 10.0 if ended else 0.0
        # Without our client_id the socket hears nothing of the job: polling history is how we learn it ended.
        run.history = await self.history(prompt_id, wait=wait)
        messages = ((run.history or {}).get("status") or {}).get("messages") or []
        kinds = [str(m[0]) for m in messages if isinstance(m, list) and m]
        if kinds and kinds[-1] in STATUS_OF_TERMINAL:
            run.status = STATUS_OF_TERMINAL[kinds[-1]]
        for node, output in ((run.history or {}).get("outputs") or {}).items():
            for image in (output or {}).get("images", []) if isinstance(output, dict) else []:
                if isinstance(image, dict) and "filename" in image:
                    run.images.append({"node": str(node), **image})
        self.progress.job_finished(run.status)
        return run

    async def _follow(self, socket: LiveSocket, prompt_id: str, on_message: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Read the socket until ``executing`` with ``node: null`` for ``prompt_id`` (ComfyUI's end-of-prompt).

        Returns False when the prompt was deleted from the queue (listed in ``abandoned``) before it started.
        """
        deadline = time.monotonic() + self.timeout
        last = "nothing"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecordError(f"prompt {prompt_id} did not finish within {self.timeout:g}s (last message: {last})")
            try:
                message = await asyncio.wait_for(socket.messages(prompt_id).get(), min(remaining, 2.0))
            except asyncio.TimeoutError:
                if last == "nothing" and prompt_id in self.abandoned:
                    return False
                continue
            if message is None:
                raise RecordError(f"the server closed the WebSocket while prompt {prompt_id} ran (last message: {last})")
            data: dict[str, Any] = message["data"] if isinstance(message.get("data"), dict) else {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            last = str(message.get("type"))
            self.progress.message(message)
            if on_message is not None:
                on_message(message)
            if message.get("type") == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return True

    async def history(self, prompt_id: str, *, wait: float = 10.0) -> dict[str, Any] | None:
        """GET /history/{prompt_id} until the entry is there; only the answer that has it is recorded."""
        deadline = time.monotonic() + wait
        while True:
            x = await self.request("GET", f"/history/{prompt_id}")
            body = x.response_json()
            if isinstance(body, dict) and isinstance(body.get(prompt_id), dict):
                entry: dict[str, Any] = body[prompt_id]
                return entry
            self.session.exchanges.remove(x)
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)

    async def download(self, image: Mapping[str, Any]) -> HttpExchange:
        """GET /view for one output image, as the ComfyUI page asks for it."""
        params = [("filename", str(image["filename"])), ("subfolder", str(image.get("subfolder", ""))), ("type", str(image.get("type", "output")))]
        return await self.request("GET", "/view", params=params)

    async def snapshot(self, path: str) -> HttpExchange | None:
        """GET an informational route; kept only when it answered 200 (a 404 says nothing worth replaying)."""
        x = await self.request("GET", path)
        if x.status != 200:
            self.session.exchanges.remove(x)
            return None
        return x


def _raw(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Headers with their names as sent on the wire (httpx's items() lower-cases them)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw]
