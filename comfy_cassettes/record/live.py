"""Records a workflow run against a live ComfyUI: submit, follow /ws, fetch history and outputs, snapshot state.

The client half (:class:`RecordingClient`) is shared with ``verify``, which drives a server the same way and
compares what it gets with a cassette. Every request and every WebSocket frame lands in one RawSession with
real timestamps; scrubbing, templating and the atomic save happen after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
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
from ..errors import ImportFormatError, RecordError
from .modes import RecordMode, missing_workflows, read_document, should_record
from .scrub import Scrubber
from .session import TRANSFER_HEADERS, HttpExchange, RawSession, WsConnection, WsFrame
from .writer import write_session


# ---------------------------------------------------------------- workflow files


def load_workflow(path: str | Path) -> dict[str, Any]:
    """The API-format graph in ``path``: an API export, a POST /prompt body, or a ComfyUI PNG with a ``prompt`` chunk."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read workflow: {exc.strerror or exc}") from None
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return _workflow_from_png(path, raw)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: not a JSON workflow ({exc})") from None
    return api_workflow(document, str(path))


def api_workflow(document: Any, where: str) -> dict[str, Any]:
    """Find the API form in a loaded workflow document, or explain that "Export (API)" is needed."""
    if isinstance(document, dict):
        if _is_api(document):
            return document
        for key in ("prompt", "output"):  # a POST /prompt body; the frontend's graphToPrompt() result
            if isinstance(document.get(key), dict) and _is_api(document[key]):
                return dict(document[key])
        extra = document.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get("prompt"), dict) and _is_api(extra["prompt"]):
            return dict(extra["prompt"])
        if isinstance(document.get("nodes"), list) and "links" in document:
            raise ImportFormatError(
                f"{where}: this is the editor's UI format (nodes and links), which ComfyUI cannot run as is. "
                "Save the API form instead: in ComfyUI, Workflow menu → Export (API) (older versions: enable dev "
                "mode options, then Save (API Format))."
            )
    raise ImportFormatError(f"{where}: not an API-format workflow (expected {{node_id: {{class_type, inputs}}}})")


def _is_api(graph: Mapping[str, Any]) -> bool:
    return bool(graph) and all(isinstance(n, dict) and isinstance(n.get("class_type"), str) for n in graph.values())


def _workflow_from_png(path: Path, raw: bytes) -> dict[str, Any]:
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        text = dict(getattr(image, "text", {}) or {})
    if "prompt" in text:
        return api_workflow(json.loads(text["prompt"]), f"{path} (PNG 'prompt' chunk)")
    if "workflow" in text:
        return api_workflow(json.loads(text["workflow"]), f"{path} (PNG 'workflow' chunk)")
    raise ImportFormatError(f"{path}: PNG without a ComfyUI 'prompt' chunk; save the workflow with Export (API)")


# ---------------------------------------------------------------- progress


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


class RichProgress:
    """A rich progress bar per job: the node being executed, its step progress, elapsed time."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.workflow: Mapping[str, Any] = {}
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.task: Any = None
        self.label = ""

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def job_started(self, index: int, total: int, prompt_id: str, workflow: Mapping[str, Any]) -> None:
        self.workflow = workflow
        self.label = f"job {index + 1}/{total}"
        self.task = self.bar.add_task(f"{self.label} queued ({prompt_id[:8]})", total=None)

    def message(self, message: dict[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        if self.task is None or not isinstance(data, dict):
            return
        if kind == "executing" and data.get("node") is not None:
            node = str(data["node"])
            cls = (self.workflow.get(node) or {}).get("class_type", "?")
            self.bar.update(self.task, description=f"{self.label} node {node} {cls}", completed=0, total=None)
        elif kind == "progress":
            self.bar.update(self.task, completed=data.get("value", 0), total=data.get("max") or None)
        elif kind == "execution_cached" and data.get("nodes"):
            self.bar.update(self.task, description=f"{self.label} {len(data['nodes'])} node(s) cached")

    def job_finished(self, status: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"{self.label} {status}", completed=1, total=1)


# ---------------------------------------------------------------- the recording client


@dataclass
class JobRun:
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
    ) -> JobRun:
        """POST /prompt, follow the job to its end (over ``socket`` when it has our client_id), fetch its history.

        ``on_message`` sees each of the job's WebSocket messages as it arrives (verify uses it to interrupt).
        """
        run = await self.submit_job(body, headers=headers)
        if run.prompt_id is None:
            return run
        self.progress.job_started(index, total, run.prompt_id, body["prompt"])
        return await self.finish_job(run, body, socket, on_message=on_message)

    async def submit_job(self, body: dict[str, Any], *, headers: Mapping[str, str] | None = None) -> JobRun:
        """POST /prompt only; ``prompt_id`` is None when ComfyUI refused it."""
        x = await self.request("POST", "/prompt", json_body=body, headers=headers)
        answer = x.response_json()
        if x.status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("prompt_id"), str):
            return JobRun(x, None)
        return JobRun(x, answer["prompt_id"], status="unfinished")

    async def finish_job(
        self, run: JobRun, body: dict[str, Any], socket: LiveSocket | None, *, on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> JobRun:
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


# ---------------------------------------------------------------- workflow recording


@dataclass
class RecordResult:
    """What ``record_workflow`` did."""

    path: Path
    recorded: bool
    jobs: int = 0
    interactions: int = 0
    comfyui_version: str | None = None
    statuses: list[str] = field(default_factory=list)
    message: str = ""


async def record_session(
    server: str, workflows: Sequence[dict[str, Any]], *, repeat: int = 1, uploads: Sequence[Path] = (),
    with_object_info: bool = False, timeout: float = 600.0, progress: Progress | None = None,
) -> tuple[RawSession, list[JobRun]]:
    """Run each workflow ``repeat`` times in a row on ``server`` and return everything that was exchanged.

    Re-runs follow their first run at once because ComfyUI's cache only keeps the previous prompt's results: that
    is what makes them cached re-runs; different workflows with the same prefix show the counter progressing.
    """
    async with RecordingClient(server, timeout=timeout, progress=progress) as client:
        await client.snapshot("/system_stats")
        if with_object_info:
            await client.snapshot("/object_info")
        socket = await client.open_socket()
        for path in uploads:
            await client.upload(path)
        runs = []
        total = len(workflows) * repeat
        for n in range(total):
            workflow = workflows[n // repeat]
            run = await client.run_job({"prompt": workflow, "client_id": socket.record.client_id}, socket, index=n, total=total)
            if run.prompt_id is None:
                raise RecordError(f"ComfyUI rejected the workflow (HTTP {run.response.status}): {_rejection(run.response)}")
            for image in run.images:
                await client.download(image)
            runs.append(run)
        await client.snapshot("/queue")
        return client.session, runs


def _raw(headers: httpx.Headers) -> list[tuple[str, str]]:
    """Headers with their names as sent on the wire (httpx's items() lower-cases them)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw]


def _rejection(x: HttpExchange) -> str:
    body = x.response_json()
    if not isinstance(body, dict):
        return x.response_body[:300].decode("utf-8", "replace")
    error = body.get("error") or {}
    parts = [f"{error.get('type', '?')}: {error.get('message', '')} {error.get('details', '')}".strip()] if isinstance(error, dict) else [str(error)]
    for node, info in (body.get("node_errors") or {}).items():
        for item in (info or {}).get("errors", []):
            parts.append(f"node {node} ({info.get('class_type')}): {item.get('message')} — {item.get('details')}")
    return "; ".join(parts)


def record_workflow(
    workflows: dict[str, Any] | Sequence[dict[str, Any]], server: str, output: str | Path, *, repeat: int = 1,
    uploads: Sequence[Path] = (), with_object_info: bool = False, mode: RecordMode | str = RecordMode.ONCE,
    scrubber: Scrubber | None = None, timeout: float = 600.0, progress: Progress | None = None,
) -> RecordResult:
    """Record workflows on ``server`` into the cassette ``output`` (templated, scrubbed, written atomically).

    Usage::

        record_workflow(load_workflow("flow.json"), "http://127.0.0.1:8188", "cassettes/flow.yaml", repeat=2)
    """
    if repeat < 1:
        raise RecordError(f"--repeat must be at least 1, got {repeat}")
    graphs = [workflows] if isinstance(workflows, dict) else list(workflows)
    if not graphs:
        raise RecordError("no workflow to record")
    mode = RecordMode.parse(mode)
    output = Path(output)
    existing = read_document(output)
    if not should_record(mode, output, existing, graphs):
        return RecordResult(output, False, message=f"{output} already holds this workflow; nothing recorded (--record-mode {mode.value})")
    if existing is not None and mode is RecordMode.NEW_EPISODES:
        graphs = [dict(g) for g in missing_workflows(existing, graphs)]
    with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
        session, runs = asyncio.run(record_session(
            server, graphs, repeat=repeat, uploads=uploads, with_object_info=with_object_info, timeout=timeout, progress=progress,
        ))
    path, document = write_session(session, output, mode=mode, existing=existing, scrubber=scrubber, via="workflow")
    comfy = document["comfy"]
    return RecordResult(
        path, True, jobs=len(comfy["jobs"]), interactions=len(document["interactions"]),
        comfyui_version=comfy["recorded"].get("comfyui_version"), statuses=[r.status for r in runs],
    )
