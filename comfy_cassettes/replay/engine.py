"""The simulated ComfyUI: prompt queue, one worker, history and node cache, driving sockets and output files.

Knows nothing of HTTP frameworks: the ASGI app turns requests into calls here and replies into responses.
All state lives on one asyncio loop, so handlers need no locks.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cassette import Cassette, Job, OutputImage, WsEvent
from ..templating import render_value
from . import plan as planning
from .clock import Clock
from .config import ReplayConfig
from .faults import FaultRule, Faults, JobFault, default_traceback
from .files import FileRoots, OutputNamer, annotated_path
from .journal import Journal
from .outputs import OutputFiles
from .protocol import CRASH_BODY, CRASH_HEADERS, TERMINAL
from .sockets import Client, Close, Send, Sockets
from .validation import execution_order, no_prompt_body, validate_prompt



MAXIMUM_HISTORY_SIZE = 10000  # ComfyUI's execution.MAXIMUM_HISTORY_SIZE: the oldest entries go first


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body bytes, headers (Content-Type included when the body has one)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        # aiohttp's json_response: json.dumps defaults, utf-8
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json; charset=utf-8"})


@dataclass
class QueueItem:
    """One accepted prompt."""

    number: int | float
    prompt_id: str
    workflow: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    client_id: str | None
    seq: int
    faults: list[JobFault] = field(default_factory=list)  # forced outcomes taken at submit (faults.py)

    def as_list(self) -> list[Any]:
        """The 5-element item ComfyUI shows in /queue and history ``prompt``."""
        return [self.number, self.prompt_id, self.workflow, self.extra_data, self.outputs_to_execute]


class ReplayEngine:
    """ComfyUI's server state, replayed from cassettes."""

    def __init__(self, config: ReplayConfig, cassettes: Sequence[Cassette]) -> None:
        self.config = config
        self.cassettes = list(cassettes)
        self.jobs: list[Job] = [job for c in cassettes for job in c.jobs]
        self.index = planning.JobIndex(self.jobs)
        self._job_cassette = {id(job): c for c in cassettes for job in c.jobs}
        self._owned_dirs: list[Path] = []
        self.roots = FileRoots(
            output=self._dir(config.output_dir, "output"),
            input=self._dir(config.input_dir, "input"),
            temp=self._dir(config.temp_dir, "temp"),
        )
        self.journal = Journal(config.journal_limit)
        self._object_info: dict[str, Any] | None = None
        self._object_info_loaded = False
        self.sockets = Sockets()
        self.files = OutputFiles(self.roots, dynamic=config.dynamic, source_image=config.source_image, make_dir=lambda kind: self._dir(None, kind))
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.faults = Faults(config.seed)
        self.faults.on_restart = self.restart
        self.faults.on_error = self.journal.error
        self.clock = Clock()
        self._init_state()

    # ------------------------------------------------------------ lifecycle

    def _dir(self, given: Path | None, kind: str) -> Path:
        if given is not None:
            given.mkdir(parents=True, exist_ok=True)
            return given
        path = Path(tempfile.mkdtemp(prefix=f"comfy-cassettes-{kind}-"))
        self._owned_dirs.append(path)
        return path

    def _init_state(self) -> None:
        self.counter = 0
        self.sequence = 0
        self.queue: list[tuple[float, str, int, QueueItem]] = []
        self.running: QueueItem | None = None
        self.history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.node_cache: dict[str, dict[str, Any] | None] = {}
        self.interrupt_requested = False
        self.last_node: str | None = None
        self.last_client: str | None = None
        self._ids = random.Random(self.config.seed)
        self.namer = OutputNamer(self.roots, rng=random.Random(self.config.seed + 1))
        self.files.reset()

    async def start(self) -> None:
        """Start the worker that executes queued prompts."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="comfy-cassettes-worker")

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def stop(self) -> None:
        """Stop the worker and remove the folders this engine created."""
        await self._stop_worker()
        self.remove_owned_dirs()

    def remove_owned_dirs(self) -> None:
        """Remove the temporary folders this engine created (safe to call again)."""
        for path in self._owned_dirs:
            shutil.rmtree(path, ignore_errors=True)

    async def reset(self) -> None:
        """Forget queue, history, caches, journal and handed-out names; keep sockets and cassettes."""
        await self._stop_worker()
        self.faults.clear()
        self.clock.clear()
        self._init_state()
        self.journal.clear()
        await self.start()

    async def restart(self) -> None:
        """What a restarted ComfyUI forgets: queue, history, caches, the counter (a ``down`` fault with
        ``restart``). Faults, holds and the journal are the test's and stay; ids never repeat."""
        await self._stop_worker()
        ids = self._ids
        self._init_state()
        self._ids = ids
        await self.start()

    def new_prompt_id(self) -> str:
        """A UUID4 drawn from the seeded sequence: same seed, same ids, in the same order."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # ------------------------------------------------------------ object_info

    def object_info(self) -> dict[str, Any] | None:
        """The recorded /object_info catalogue (parsed on first use, kept)."""
        if not self._object_info_loaded:
            self._object_info_loaded = True
            from ..cassette import interaction_body

            for cassette in self.cassettes:
                for item in cassette.interactions:
                    request, response = item["request"], item["response"]
                    path = request["uri"].split("?")[0].rstrip("/")
                    if request["method"] == "GET" and path.endswith("/object_info") and response["status"]["code"] == 200:
                        self._object_info = json.loads(interaction_body(cassette, response.get("body")))
                        return self._object_info
        return self._object_info

    def live_object_info(self, catalogue: dict[str, Any]) -> dict[str, Any]:
        """The catalogue with upload widgets listing the input folder's images, as ComfyUI lists them live."""
        patched: dict[str, Any] | None = None
        for name, info in catalogue.items():
            required = ((info or {}).get("input") or {}).get("required") or {}
            for key, spec in required.items():
                if (
                    isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], list)
                    and isinstance(spec[1], dict) and spec[1].get("image_upload") and "image_folder" not in spec[1]
                ):
                    if patched is None:
                        patched = dict(catalogue)
                    node = json.loads(json.dumps(info))
                    node["input"]["required"][key] = [self.input_images(), spec[1]]
                    patched[name] = node
        return patched if patched is not None else catalogue

    def input_images(self) -> list[str]:
        """Top-level image files of the input folder, sorted (ComfyUI's LoadImage.INPUT_TYPES)."""
        suffixes = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
        return sorted(p.name for p in self.roots.input.iterdir() if p.is_file() and p.suffix.lower() in suffixes)

    # ------------------------------------------------------------ POST /prompt

    def submit(self, raw: bytes) -> Reply:
        """Queue a prompt like ComfyUI's POST /prompt handler (server.py post_prompt)."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _crash()
        if not isinstance(body, dict):
            body = {}
        # The number is taken before "prompt" is even looked at (error_invalid_prompt: first accepted got 14).
        number: int | float
        if "number" in body:
            number = float(body["number"])
        else:
            number = self.counter
            if body.get("front"):
                number = -number
            self.counter += 1
        if "prompt" not in body:
            return Reply.json(no_prompt_body(), 400)
        workflow = body["prompt"]
        partial = body.get("partial_execution_targets")
        object_info = self.object_info()
        node_errors: dict[str, Any] = {}
        if object_info is not None:
            result = validate_prompt(
                workflow, object_info, input_file_exists=self._input_exists, partial_execution_targets=partial
            )
            if result.status == 500 or result.body is None and result.status != 200:
                return _crash()
            if result.status != 200:
                return Reply.json(result.body, result.status)
            outputs = list(result.outputs_to_execute)
            node_errors = result.node_errors
        else:
            rejection = self.index.rejection(workflow) if isinstance(workflow, dict) else None
            if rejection is not None:
                return Reply(rejection.response_status, rejection.response_body.encode(), {"Content-Type": "application/json; charset=utf-8"})
            if not isinstance(workflow, dict):
                error = {"type": "invalid_prompt", "message": "Cannot execute because the prompt is not a dict", "details": "", "extra_info": {}}
                return Reply.json({"error": error, "node_errors": {}}, 400)
            outputs = [n for n, node in workflow.items() if isinstance(node, dict) and node.get("class_type") in planning.OUTPUT_CLASSES]
            if partial:
                outputs = [n for n in outputs if n in partial]
        prompt_id = str(body["prompt_id"]) if body.get("prompt_id") is not None else self.new_prompt_id()
        extra_data = dict(body.get("extra_data") or {})
        client_id = body.get("client_id")
        if client_id is not None:
            extra_data["client_id"] = client_id
        self.sequence += 1
        item = QueueItem(number, prompt_id, workflow, extra_data, outputs, client_id, self.sequence)
        item.faults = self.faults.for_job(workflow)
        heapq.heappush(self.queue, (number, prompt_id, self.sequence, item))
        self._wake.set()
        self._broadcast_status()
        return Reply.json({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    def _input_exists(self, name: str) -> bool:
        return annotated_path(self.roots, name) is not None

    def _input_size(self, name: str) -> tuple[int, int] | None:
        from PIL import Image

        path = annotated_path(self.roots, name)
        if path is None:
            return None
        try:
            with Image.open(path) as img:
                return int(img.width), int(img.height)
        except Exception:  # noqa: BLE001 - unreadable input: let the graph's defaults decide
            return None

    # ------------------------------------------------------------ queue / history

    def queue_remaining(self) -> int:
        return len(self.queue) + (1 if self.running is not None else 0)

    def queue_view(self) -> dict[str, Any]:
        running = [self.running.as_list()] if self.running is not None else []
        return {"queue_running": running, "queue_pending": [entry[3].as_list() for entry in self.queue]}

    def history_view(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        """ComfyUI's get_history: ``max_items`` from the end, or from ``offset`` when given."""
        keys = list(self.history)
        if offset < 0 and max_items is not None:
            offset = len(keys) - max_items
        start = max(offset, 0)
        chosen = keys[start:] if max_items is None else keys[start : start + max_items]
        return {k: self.history[k] for k in chosen}

    def history_item(self, prompt_id: str) -> dict[str, Any]:
        return {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}

    def delete_from_queue(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        doomed = {e[1] for e in self.queue} if body.get("clear") else set(body.get("delete", []) or [])
        for prompt_id in doomed & {e[1] for e in self.queue}:
            self.clock.job_finished(prompt_id, "deleted")
        self.queue = [e for e in self.queue if e[1] not in doomed]
        heapq.heapify(self.queue)
        self._wake.set()  # a job held at "queued" may no longer be the head
        self._broadcast_status()

    def delete_history(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        if body.get("clear"):
            self.history.clear()
        for prompt_id in body.get("delete", []) or []:
            self.history.pop(prompt_id, None)

    def interrupt(self, body: Any) -> None:
        """Global interrupt, or only when the named prompt is the running one (queue_and_history_ops)."""
        target = body.get("prompt_id") if isinstance(body, dict) else None
        if self.running is None:
            return
        if target is None or target == self.running.prompt_id:
            self.interrupt_requested = True

    def free(self, body: Any) -> None:
        """POST /free: ``free_memory`` drops the execution cache; ``unload_models`` alone keeps it (main.py)."""
        if isinstance(body, dict) and body.get("free_memory"):
            self.node_cache.clear()

    # ------------------------------------------------------------ websocket

    async def connect(self, sid: str | None, send: Send, close: Close | None = None) -> Client:
        """Register a socket; sends the greeting ``status`` and the reconnect ``executing`` like ComfyUI."""
        client = Client(sid or uuid.uuid4().hex, send, close=close)
        self.sockets.add(client)
        status = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}, "sid": client.sid}
        await send(json.dumps({"type": "status", "data": status}))
        if self.last_client == client.sid and self.last_node is not None and self.running is not None:
            await send(json.dumps({"type": "executing", "data": {"node": self.last_node}}))
        return client

    def disconnect(self, client: Client) -> None:
        self.sockets.remove(client)

    async def on_message(self, client: Client, text: str) -> None:
        await self.sockets.on_message(client, text)

    def _broadcast_status(self) -> None:
        """From synchronous handlers: the status may reach sockets before or after the HTTP reply, as in ComfyUI."""
        asyncio.ensure_future(self._send_status())

    async def _send_status(self) -> None:
        await self.sockets.status(self.queue_remaining())

    async def _emit(self, item: QueueItem, kind: str, data: Any) -> None:
        await self.sockets.emit(item.client_id, kind, data)

    async def _emit_binary(self, item: QueueItem, frame: WsEvent, job: Job | None, bindings: dict[str, Any]) -> None:
        binary = frame.binary
        if binary is None:
            return
        cassette = self._job_cassette.get(id(job)) if job is not None else None
        image = cassette.read_blob(binary.file) if cassette is not None else b""
        metadata = render_value(binary.metadata, bindings) if binary.metadata else None
        if metadata is None:
            # A legacy recording, replayed to a client that wants metadata: build it as ComfyUI would.
            metadata = {"node_id": self.last_node, "prompt_id": item.prompt_id, "display_node_id": self.last_node,
                        "parent_node_id": None, "real_node_id": self.last_node,
                        "image_type": "image/jpeg" if binary.image_format == 1 else "image/png"}
        await self.sockets.emit_preview(item.client_id, image, image_format=binary.image_format, metadata=metadata)

    # ------------------------------------------------------------ the worker

    async def _work(self) -> None:
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            head = self.queue[0][3]
            if self.clock.holds_at(head.prompt_id, "queued"):
                self._wake.clear()
                advanced = await self.clock.checkpoint(head.prompt_id, "queued", abandon=self._wake)
                if not advanced or not self.queue or self.queue[0][3] is not head:
                    continue  # the queue changed under the held job: look again
            _, _, _, item = heapq.heappop(self.queue)
            try:
                await self._run(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the queue
                await self._abort(item, exc)

    def _cached_nodes(self, item: QueueItem, order: Sequence[str]) -> list[str]:
        sigs = planning.signatures(item.workflow)
        return [node for node in order if sigs.get(node) in self.node_cache]

    def _plan(self, item: QueueItem) -> planning.Plan:
        order = execution_order(item.workflow, item.outputs_to_execute)
        cached = self._cached_nodes(item, order)
        job = self.index.choose(item.workflow, has_client=item.client_id is not None, cached=cached)
        synthetic = None
        if job is None or job.status == "interrupted":
            synthetic = planning.synthesize(item.workflow, order, item.outputs_to_execute, cached=cached, input_size=self._input_size)
        if job is None:
            assert synthetic is not None
            return synthetic
        if job.status == "interrupted" and synthetic is not None:
            return planning.resume_interrupted(job, synthetic)
        return planning.from_job(job, item.workflow, self._input_size)

    def _bind(self, item: QueueItem, plan: planning.Plan) -> tuple[dict[str, Any], list[JobFault]]:
        """Values for the job's placeholders (ids, number, output names by ComfyUI's rule), and the save
        nodes that will fail because their prefix leads outside the output folder."""
        failures: list[JobFault] = []
        bindings: dict[str, Any] = {"prompt_id": item.prompt_id, "number": item.number, "client_id": item.client_id or ""}
        sigs = planning.signatures(item.workflow)
        by_node: dict[str, list[OutputImage]] = {}
        for image in plan.outputs:
            by_node.setdefault(image.node, []).append(image)
        for node, images in by_node.items():
            images.sort(key=lambda i: i.index)
            previous = self.node_cache.get(sigs.get(node, ""))
            if node in plan.cached and previous:
                names = [(p["filename"], p["subfolder"]) for p in previous.get("images", [])]
            else:
                try:
                    names = self._allocate(item, node, images)
                except ValueError as refused:
                    # SaveImage raises when it runs (error_execution capture: "Saving image outside ...").
                    rule = FaultRule(id="save", kind="execution_error", exception_type="Exception", exception_message=str(refused) + "\n")
                    failures.append(JobFault("execution_error", node, rule))
                    continue
            for image, (filename, subfolder) in zip(images, names):
                bindings[f"out.{node}.{image.index}.filename"] = filename
                bindings[f"out.{node}.{image.index}.subfolder"] = subfolder
        return bindings, failures

    def _allocate(self, item: QueueItem, node: str, images: list[OutputImage]) -> list[tuple[str, str]]:
        first = images[0]
        width, height = first.width or 512, first.height or 512
        if first.kind == "temp":
            names = self.namer.temp_names(width=width, height=height, count=len(images))
        else:
            prefix = item.workflow.get(node, {}).get("inputs", {}).get("filename_prefix", "ComfyUI")
            names = self.namer.save_names(prefix if isinstance(prefix, str) else "ComfyUI", width=width, height=height, count=len(images))
        return [(n.filename, n.subfolder) for n in names]

    async def _pause(self, seconds: float) -> None:
        # Instant timing runs a job's events back to back (the worker yields once per job): yielding per
        # event let a queue of jobs crawl behind the HTTP traffic it causes.
        if self.config.timing == "recorded" and seconds > 0:
            await asyncio.sleep(seconds / self.config.speed)

    async def _run(self, item: QueueItem) -> None:
        await asyncio.sleep(0)  # let handlers in between jobs
        plan = self._plan(item)
        bindings, failures = self._bind(item, plan)
        # Taken by the worker: /queue shows it running through the recorded start-up delay too, and an
        # interrupt from then on counts (ComfyUI clears the flag as it takes the prompt).
        self.running = item
        self.interrupt_requested = False
        await self._pause(plan.queued_for)
        self.last_client = item.client_id
        await self._send_status()  # awaited: ordered before the job's events, as in every capture
        messages: list[list[Any]] = []
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        status = "success"
        previous_t = 0.0
        current: str | None = None
        pending = self._fault_targets(item, plan, failures)
        for event in plan.events:
            await self._pause(event.t - previous_t)
            previous_t = event.t
            if event.binary is not None:
                await self._emit_binary(item, event, plan.job, bindings)
                continue
            kind = str(event.type)
            data = render_value(event.data, {**bindings, "now_ms": int(time.time() * 1000)})
            if kind in TERMINAL and pending:
                # A forced fault whose node never ran (cached, or absent from the recording) fires at the end.
                fired = await self._fire_faults(item, plan, current, executed, pending, messages, at_end=True)
                if fired is not None:
                    status = fired
                    break
            if kind == "executing" and isinstance(data, dict) and data.get("node") is not None:
                if current is not None and current not in executed:
                    executed.append(current)
                current = self.last_node = str(data["node"])
            if kind == "progress_state" and isinstance(data, dict):
                # A recording made without a client_id has no `executing`: finished nodes say what ran.
                for node_id, state in (data.get("nodes") or {}).items():
                    if isinstance(state, dict) and state.get("state") == "finished" and node_id not in executed:
                        executed.append(str(node_id))
            if kind == "executed" and isinstance(data, dict):
                node = str(data.get("node"))
                outputs[node] = data.get("output")
                self._materialize(item, plan, node, data.get("output"))
            if kind in ("execution_start", "execution_cached") or kind in TERMINAL:
                messages.append([kind, data])
            if kind in TERMINAL:
                status = kind.removeprefix("execution_")
            await self._emit(item, kind, data)
            if kind != "executing" or not isinstance(data, dict) or data.get("node") is None:
                continue
            if self.interrupt_requested:
                await self._interrupted(item, plan, current, executed, messages)
                status = "interrupted"
                break
            # Held while node K "runs"; a forced fault then ends it there, as a node that raised.
            await self.clock.checkpoint(item.prompt_id, f"node:{current}")
            if pending:
                fired = await self._fire_faults(item, plan, current, executed, pending, messages)
                if fired is not None:
                    status = fired
                    break
        await self.clock.checkpoint(item.prompt_id, "finished")
        if plan.job is not None and not plan.job.has_client and plan.job.history and status == plan.job.status:
            # Sent to nobody, yet ComfyUI keeps these in history (no_client_id capture): take them from the recording.
            now = int(time.time() * 1000)
            recorded = render_value((plan.job.history.get("status") or {}).get("messages") or [], {**bindings, "now_ms": now})
            messages = recorded or messages
        self._finish(item, plan, bindings, status, messages, outputs, executed)
        await self._send_status()  # awaited: the final status precedes `executing null` (basic_save capture)
        await self._emit(item, "executing", {"node": None, "prompt_id": item.prompt_id})
        self.clock.job_finished(item.prompt_id, status)

    async def _interrupted(
        self, item: QueueItem, plan: planning.Plan, current: str | None, executed: list[str], messages: list[list[Any]]
    ) -> None:
        """ComfyUI checks the interrupt flag before a node runs: the node just announced is the one named."""
        node_type = item.workflow.get(current or "", {}).get("class_type")
        interrupted = {"prompt_id": item.prompt_id, "node_id": current, "node_type": node_type,
                       "executed": executed + [n for n in plan.cached if n not in executed],
                       "timestamp": int(time.time() * 1000)}
        messages.append(["execution_interrupted", interrupted])
        await self._emit(item, "execution_interrupted", interrupted)

    # ------------------------------------------------------------ forced faults (faults.py)

    def _fault_targets(
        self, item: QueueItem, plan: planning.Plan, failures: Sequence[JobFault] = ()
    ) -> dict[str, tuple[JobFault, str | None]]:
        """Each job fault with the node it fires at: its own, else the last node run (the first for a disconnect)."""
        ran = [str(e.data["node"]) for e in plan.events
               if e.type == "executing" and isinstance(e.data, dict) and e.data.get("node") is not None]
        targets: dict[str, tuple[JobFault, str | None]] = {}
        for fault in [*item.faults, *failures]:
            default = (ran[0] if fault.kind == "ws_disconnect" else ran[-1]) if ran else None
            targets[fault.kind] = (fault, fault.node or default)
        return targets

    async def _fire_faults(
        self, item: QueueItem, plan: planning.Plan, current: str | None, executed: list[str],
        pending: dict[str, tuple[JobFault, str | None]], messages: list[list[Any]], *, at_end: bool = False,
    ) -> str | None:
        """Fire the faults due at ``current``; returns the job's new final status when one ends it."""
        due = [kind for kind, (_, node) in pending.items() if at_end or node == current]
        if at_end and current is None:
            # Nothing ran (all cached): name the rule's node, else the last output, as the failing one.
            named = [node for kind, (_, node) in pending.items() if kind in due and node is not None]
            current = named[0] if named else (item.outputs_to_execute[-1] if item.outputs_to_execute else None)
        if "ws_disconnect" in due:
            fault, _ = pending.pop("ws_disconnect")
            await self.sockets.cut(item.client_id, fault.rule.code)
        if "execution_interrupted" in due:
            pending.pop("execution_interrupted")
            await self._interrupted(item, plan, current, executed, messages)
            return "interrupted"
        if "execution_error" in due:
            fault, _ = pending.pop("execution_error")
            order = execution_order(item.workflow, item.outputs_to_execute)
            done = executed + [n for n in plan.cached if n not in executed]
            payload = fault.error_payload(item.prompt_id, current, item.workflow, done, list(reversed(order)))
            messages.append(["execution_error", payload])
            await self._emit(item, "execution_error", payload)
            return "error"
        return None

    async def _abort(self, item: QueueItem, exc: Exception) -> None:
        """A run the engine itself could not complete still ends like a failed ComfyUI job, so no client waits
        forever: an error entry in history, ``execution_error``, the status, ``executing`` null."""
        self.journal.error(f"job {item.prompt_id} failed in the replay engine: {exc!r}")
        error: dict[str, Any] = {
            "prompt_id": item.prompt_id, "node_id": self.last_node, "node_type": None, "executed": [],
            "exception_message": f"comfy-cassettes could not replay this job: {exc!r}", "exception_type": type(exc).__name__,
            "traceback": default_traceback(None, type(exc).__name__, str(exc)), "current_inputs": {}, "current_outputs": [],
            "timestamp": int(time.time() * 1000),
        }
        self.history[item.prompt_id] = {
            "prompt": item.as_list(), "outputs": {}, "meta": {},
            "status": {"status_str": "error", "completed": False, "messages": [["execution_error", error]]},
        }
        self.running = None
        await self._emit(item, "execution_error", error)
        await self._send_status()
        await self._emit(item, "executing", {"node": None, "prompt_id": item.prompt_id})
        self.clock.job_finished(item.prompt_id, "error")

    def _finish(
        self, item: QueueItem, plan: planning.Plan, bindings: dict[str, Any], status: str,
        messages: list[list[Any]], outputs: dict[str, Any], executed: list[str],
    ) -> None:
        success = status == "success"
        meta = {}
        if success:
            recorded = render_value(plan.job.history, bindings) if plan.job is not None and plan.job.history else None
            if recorded and isinstance(recorded.get("outputs"), dict) and not outputs:
                outputs = recorded["outputs"]
            if recorded and isinstance(recorded.get("meta"), dict):
                meta = recorded["meta"]
            else:
                meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs}
        entry = {
            "prompt": item.as_list(),
            "outputs": outputs if success else {},
            "status": {"status_str": "success" if success else "error", "completed": success, "messages": messages},
            "meta": meta,
        }
        self.history[item.prompt_id] = entry
        while len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.popitem(last=False)
        self.running = None
        sigs = planning.signatures(item.workflow)
        done = set(executed) | set(plan.cached) | (set(outputs) if success else set())
        if success:
            done |= {n for n in item.workflow if n in sigs}
        self.node_cache = {sigs[n]: outputs.get(n) for n in done if n in sigs}

    # ------------------------------------------------------------ files

    def _materialize(self, item: QueueItem, plan: planning.Plan, node: str, output: Any) -> None:
        recorded = {o.index: o for o in plan.outputs if o.node == node}
        # SaveImage/PreviewImage metadata: the prompt, then one chunk per extra_pnginfo key, each JSON.
        metadata = {"prompt": json.dumps(item.workflow)}
        extra = item.extra_data.get("extra_pnginfo")
        if isinstance(extra, dict):
            metadata.update({str(k): json.dumps(v) for k, v in extra.items()})
        cassette = self._job_cassette.get(id(plan.job)) if plan.job is not None else None
        self.files.materialize(output, recorded, cassette, metadata)

    def view_virtual(self, kind: str, subfolder: str, filename: str) -> Path | None:
        return self.files.lookup(kind, subfolder, filename)


def _crash() -> Reply:
    """aiohttp's answer when a handler raises (malformed JSON, prompts ComfyUI cannot even validate)."""
    return Reply(500, CRASH_BODY, dict(CRASH_HEADERS))
