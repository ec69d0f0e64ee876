"""The simulated ComfyUI: accepts prompts, runs them one at a time from its queue, keeps history and node cache,
and drives the sockets and output files.

Knows nothing of HTTP frameworks: the ASGI app turns requests into calls here and replies into responses. All
state lives on one asyncio loop, so handlers need no locks.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...cassette.model import Cassette, Job
from ...comfy.events import default_traceback
from ...comfy.folders import FileRoots, OutputNamer, annotated_path
from ...comfy import behaviours, profiles
from ...comfy.behaviours import image_size
from ...comfy.graph import structure
from ...comfy.nodes import OUTPUT_CLASSES
from ...comfy.protocol import CRASH_BODY, CRASH_HEADERS, INVALID_PROMPT_ID, JSON_CONTENT_TYPE, SENSITIVE_EXTRA_DATA_KEYS, is_canonical_uuid
from ...comfy.validation import no_prompt_body, validate_prompt
from ...cassette.templating import JobBinding, bind_job
from ...comfy.shapes import QueueListing
from . import plan as planning
from .asset_store import Assets
from .catalogue import Catalogue
from ..harness.clock import Clock
from ..config import ReplayConfig
from ..harness.faults import Faults
from .interactions import InteractionIndex
from ..harness.journal import Journal
from .outputs import OutputFiles
from .pixels import preview_jpeg
from .run import JobRun, WorkBudget
from .sockets import Client, Close, Send, Sockets
from .state import History, JobState, PromptQueue, QueueItem
from .user_folder import UserFolder


# A prompt of more nodes is planned in a thread: planning is linear in the graph, yet 10,000 nodes take most of a
# second that the handlers must not wait. A smaller one (most prompts: txt2img has 7) is planned inline, where it
# costs less than a thread's round trip.
PLAN_INLINE_NODES = 64


def _recorded_version(cassettes: Sequence[Cassette], chosen: str | None) -> str | None:
    """The ComfyUI version the cassettes were recorded from; cassettes of two profiles need ``chosen``, since
    one server cannot answer as both."""
    versions = {c.comfyui_version: c for c in cassettes if c.comfyui_version}
    if chosen is None and len({profiles.profile(v).version for v in versions}) > 1:
        recorded = ", ".join(f"{v} ({c.path.name if c.path else 'in memory'})" for v, c in versions.items())
        raise ConfigError(f"the cassettes were recorded from different ComfyUI versions: {recorded}; "
                          f"choose the one to be with --comfyui-version")
    return next(iter(versions), None)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body bytes, headers (Content-Type included when the body has one)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        # aiohttp's json_response: json.dumps defaults, utf-8
        return cls.json_text(json.dumps(value).encode(), status)

    @classmethod
    def json_text(cls, body: bytes, status: int = 200) -> Reply:
        """A JSON answer whose text is already made (kept history entries, recorded bodies)."""
        return cls(status, body, {"Content-Type": JSON_CONTENT_TYPE})

    @classmethod
    def crash(cls) -> Reply:
        """aiohttp's answer when a handler raises (malformed JSON, prompts ComfyUI cannot even validate)."""
        return cls(500, CRASH_BODY, dict(CRASH_HEADERS))


class ReplayEngine:
    """ComfyUI's server state, replayed from cassettes."""

    def __init__(self, config: ReplayConfig, cassettes: Sequence[Cassette], *, base: Cassette | None = None) -> None:
        self.config = config
        self.cassettes = list(cassettes)
        self.base = base  # informational answers the cassettes lack come from here (ReplayConfig.base)
        self.recorded_version = _recorded_version(self.cassettes, config.comfyui_version)
        self.profile = profiles.profile(config.comfyui_version or self.recorded_version)  # the ComfyUI version to be
        self.features = self.profile.feature_flags(assets=config.assets)
        self.jobs: list[Job] = [job for c in cassettes for job in c.jobs]
        self.index = planning.JobIndex(self.jobs)
        self._job_cassette = {id(job): c for c in cassettes for job in c.jobs}
        self._owned_dirs: list[Path] = []
        self.roots = FileRoots(
            output=self._dir(config.output_dir, "output"),
            input=self._dir(config.input_dir, "input"),
            temp=self._dir(config.temp_dir, "temp"),
        )
        self.user_folder = UserFolder(self._dir(config.user_dir, "user"))  # settings and files the web page writes
        self.journal = Journal(config.journal_limit)
        self.assets = Assets(config.assets)
        self.interactions = InteractionIndex(self.cassettes, base)
        self.catalogue = Catalogue(self.interactions, self.base, self.jobs, config, self.profile, self.recorded_version,
                                   input_folder=self.roots.input)
        self.sockets = Sockets(self.features)
        self.files = OutputFiles(self.roots, dynamic=config.dynamic, source_image=config.source_image, make_dir=lambda kind: self._dir(None, kind))
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._worker: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the engine runs on, once started
        self.faults = Faults(config.seed)
        self.faults.on_restart = self.restart
        self.faults.on_error = self.journal.error
        self.faults.spawn = self.spawn
        self.clock = Clock()
        self.budget = WorkBudget()
        self._ids = random.Random(config.seed)
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
        """What a fresh ComfyUI holds: an empty queue, history and cache, the counter at 0."""
        self.counter = 0
        self.sequence = 0
        self.queue = PromptQueue(on_change=self.sockets.status)
        self.history = History()
        self.node_cache: dict[str, dict[str, Any] | None] = {}
        self._free_memory = False  # POST /free asked to drop the cache: done by the worker between prompts
        self.interrupt_requested = False
        self.last_node: str | None = None
        self.last_client: str | None = None
        self.namer = OutputNamer(self.roots, rng=random.Random(self.config.seed + 1))
        self.files.reset()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that :meth:`stop` cancels (the engine keeps every task it starts)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        """Start the worker that executes queued prompts and the publisher that sends /ws messages."""
        self.loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="comfy-cassettes-worker")
        if not any(t.get_name() == "comfy-cassettes-publisher" for t in self._tasks):
            self.spawn(self.sockets.publish()).set_name("comfy-cassettes-publisher")

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def stop(self) -> None:
        """Stop the worker and every background task, and remove the folders this engine created."""
        await self._stop_worker()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
        self._ids = random.Random(self.config.seed)
        self._init_state()
        self.assets.reset()
        self.user_folder.reset()
        self.journal.clear()
        await self.start()

    async def restart(self) -> None:
        """What a restarted ComfyUI forgets: queue, history, caches, the counter (a ``down`` fault with
        ``restart``). Faults, holds and the journal are the test's and stay; ids never repeat."""
        await self._stop_worker()
        self._init_state()
        await self.start()

    def new_prompt_id(self) -> str:
        """A UUID4 drawn from the seeded sequence: same seed, same ids, in the same order."""
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def cassette_of(self, job: Job | None) -> Cassette | None:
        """The cassette a recorded job came from (its blobs are beside it)."""
        return self._job_cassette.get(id(job)) if job is not None else None

    # ------------------------------------------------------------ POST /prompt

    def submit(self, raw: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        """Queue a prompt like ComfyUI's POST /prompt handler (server.py post_prompt) of the profile's version."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return Reply.crash()
        if not isinstance(body, dict):
            body = {}
        # The number is taken before "prompt" is even looked at (error_invalid_prompt: first accepted got 14).
        number: int | float
        if "number" in body:
            try:
                number = float(body["number"])
            except (TypeError, ValueError):
                return Reply.crash()  # ComfyUI float()s it unchecked: its 500
        else:
            number = self.counter
            if body.get("front"):
                number = -number
            self.counter += 1
        if "prompt" not in body:
            return Reply.json(no_prompt_body(), 400)
        workflow = body["prompt"]
        profile = self.profile
        if profile.prompt_id_must_be_uuid and body.get("prompt_id") is not None and not is_canonical_uuid(body["prompt_id"]):
            return Reply.json({"error": INVALID_PROMPT_ID, "node_errors": {}}, 400)
        partial = body.get("partial_execution_targets")
        object_info = self.catalogue.object_info()
        node_errors: dict[str, Any] = {}
        if object_info is not None:
            result = validate_prompt(
                workflow, object_info, input_file_exists=self._input_exists, partial_execution_targets=partial, profile=profile,
            )
            if result.status == 500 or result.body is None and result.status != 200:
                return Reply.crash()
            if result.status != 200:
                return Reply.json(result.body, result.status)
            outputs = list(result.outputs_to_execute)
            node_errors = result.node_errors
        else:
            rejection = self.index.rejection(workflow) if isinstance(workflow, dict) else None
            if rejection is not None:
                return Reply.json_text(rejection.response_body.encode(), rejection.response_status)
            if not isinstance(workflow, dict):
                error = {"type": "invalid_prompt", "message": "Cannot execute because the prompt is not a dict", "details": "", "extra_info": {}}
                return Reply.json({"error": error, "node_errors": {}}, 400)
            outputs = [n for n, node in workflow.items() if isinstance(node, dict) and node.get("class_type") in OUTPUT_CLASSES]
            if partial:
                outputs = [n for n in outputs if n in partial]
            accepted = self.index.acceptance(workflow)
            if accepted is not None:
                node_errors, outputs = accepted
        shape = structure(workflow)
        outputs = self.index.output_order(workflow, outputs, shape)
        prompt_id = str(body["prompt_id"]) if body.get("prompt_id") is not None else self.new_prompt_id()
        extra_data = dict(body.get("extra_data") or {})
        client_id = body.get("client_id")
        if client_id is not None:
            extra_data["client_id"] = client_id
        usage_source = (headers or {}).get("comfy-usage-source")
        if profile.usage_source_header and usage_source and "comfy_usage_source" not in extra_data:
            extra_data["comfy_usage_source"] = usage_source
        if profile.hides_secrets:  # held beside the queue item, never shown (server.py post_prompt since 0.3.68)
            for key in SENSITIVE_EXTRA_DATA_KEYS:
                extra_data.pop(key, None)
        if profile.stamps_create_time:
            extra_data["create_time"] = int(time.time() * 1000)
        self.sequence += 1
        item = QueueItem(number, prompt_id, workflow, extra_data, outputs, client_id, self.sequence, shape=shape)
        item.faults = self.faults.for_job(workflow)
        self.queue.put(item)
        self._wake.set()
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
        return self.queue.remaining()

    def queue_view(self) -> QueueListing:
        return self.queue.listing()

    def delete_from_queue(self, body: Any) -> None:
        """POST /queue: ``clear`` empties the queue, ``delete`` removes pending prompts by id."""
        if not isinstance(body, dict):
            return
        removed = self.queue.wipe() if body.get("clear") else []
        if "delete" in body:
            removed += self.queue.delete(body.get("delete") or [])
        for item in removed:
            self.clock.job_finished(item.prompt_id, JobState.DELETED.value)
        self._wake.set()  # a job held at "queued" may no longer be the head

    def delete_history(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        if body.get("clear"):
            self.history.clear()
        self.history.delete(body.get("delete", []) or [])

    def interrupt(self, body: Any) -> None:
        """Global interrupt, or only when the named prompt is the running one (queue_and_history_ops)."""
        target = body.get("prompt_id") if isinstance(body, dict) else None
        running = self.queue.running
        if running is None:
            return
        if target is None or target == running.prompt_id:
            self.interrupt_requested = True

    def free(self, body: Any) -> None:
        """POST /free: ``free_memory`` drops the execution cache; ``unload_models`` alone keeps it. Like main.py's
        worker, the flag is applied between prompts: at once when idle, after the running one otherwise."""
        if isinstance(body, dict) and body.get("free_memory"):
            self._free_memory = True
            self._wake.set()

    # ------------------------------------------------------------ websocket

    async def connect(self, sid: str | None, send: Send, close: Close | None = None) -> Client:
        """Register a socket and greet it like ComfyUI."""
        client = Client(sid or uuid.uuid4().hex, send, close=close)
        self.sockets.add(client)
        reconnect = self.last_client == client.sid and self.last_node is not None and self.queue.running is not None
        await self.sockets.greet(client, self.queue_remaining(), self.last_node if reconnect else None)
        return client

    def disconnect(self, client: Client) -> None:
        self.sockets.remove(client)

    async def on_message(self, client: Client, text: str) -> None:
        await self.sockets.on_message(client, text)

    def emit(self, item: QueueItem, kind: str, data: Any) -> None:
        self.sockets.emit(item.client_id, kind, data)

    # ------------------------------------------------------------ the worker

    async def pause(self, seconds: float) -> None:
        # Instant timing runs a job's events back to back, yielding only when the work budget is spent: yielding
        # per event let a queue of jobs crawl behind the HTTP traffic it causes.
        if self.config.timing == "recorded" and seconds > 0:
            await asyncio.sleep(seconds / self.config.speed)
            self.budget.restart()
        else:
            await self.budget.spend()

    async def _work(self) -> None:
        while True:
            if self._free_memory:
                self._free_memory = False
                self.node_cache.clear()
            head = self.queue.head()
            if head is None:
                self._wake.clear()
                await self._wake.wait()
                self.budget.restart()
                continue
            if self.clock.holds_at(head.prompt_id, "queued"):
                self._wake.clear()
                advanced = await self.clock.checkpoint(head.prompt_id, "queued", abandon=self._wake)
                if not advanced or self.queue.head() is not head:
                    continue  # the queue changed under the held job: look again
            await self.budget.spend()
            if self.queue.head() is not head:
                continue
            try:
                run = await self._prepare(head)
                if run is not None:
                    await run.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken run must not stop the queue
                self._abort(head, exc)

    async def _prepare(self, item: QueueItem) -> JobRun | None:
        """Take ``item``, the head of the queue: choose its plan, name its outputs, and mark it running. A large
        graph is planned in a thread, so handlers keep answering; None when the queue changed meanwhile."""
        if len(item.workflow) <= PLAN_INLINE_NODES:
            plan, binding = self._plan_and_name(item)
        else:
            plan, binding = await asyncio.to_thread(self._plan_and_name, item)
            if self.queue.head() is not item:
                return None  # deleted, or overtaken by a prompt sent to the front: look again
        # Taken by the worker: /queue shows it running through the recorded start-up delay too, and an
        # interrupt from then on counts (ComfyUI clears the flag as it takes the prompt).
        self.queue.take()
        self.interrupt_requested = False
        self.last_client = item.client_id
        return JobRun(self, item, plan, binding)

    def _plan_and_name(self, item: QueueItem) -> tuple[planning.Plan, JobBinding]:
        """The plan of ``item`` and its output names. Reads only what the worker alone changes (the node cache,
        the namer), so it may run in a thread while the worker awaits it."""
        plan = self._plan(item)
        sigs = item.signatures
        known = {}
        for node in plan.cached:
            previous = self.node_cache.get(sigs.get(node, ""))
            if previous:
                known[node] = [(p["filename"], p["subfolder"]) for p in previous.get("images", [])]
        binding = bind_job(
            prompt_id=item.prompt_id, number=item.number, client_id=item.client_id or "", workflow=item.workflow,
            images=plan.outputs, namer=self.namer, known=known,
        )
        return plan, binding

    def _plan(self, item: QueueItem) -> planning.Plan:
        order, sigs = item.order, item.signatures
        # execution_cached lists the prompt's nodes in the prompt's own order (execution.py execute_async).
        runs = set(order)
        cached = [node for node in item.workflow if node in runs and sigs.get(node) in self.node_cache]
        has_client = item.client_id is not None
        job = self.index.choose(item.workflow, has_client=has_client, cached=cached, shape=item.shape)
        if job is not None and job.status != "interrupted":
            return planning.from_job(job, item.workflow, self._input_size, has_client=has_client)
        # Run the graph with its own values: an interrupted recording's rest, or a graph recorded with other values
        # (at the recording's pace when timing is recorded), or one no cassette has.
        timed = self.config.timing == "recorded"
        pace = planning.recorded_pace(job) if job is not None else self.index.pace(item.workflow, has_client=has_client, shape=item.shape) if timed else None
        synthetic = planning.synthesize(item.workflow, order, item.outputs_to_execute, cached=cached, input_size=self._input_size,
                                        previews=self.config.preview_method != "none", pace=pace, prompt_id=item.prompt_id)
        return planning.resume_interrupted(job, synthetic) if job is not None else synthetic

    def _abort(self, item: QueueItem, exc: Exception) -> None:
        """A run the engine itself could not complete still ends like a failed ComfyUI job, so no client waits
        forever: an error entry in history, ``execution_error``, the status, ``executing`` null."""
        self.journal.error(f"job {item.prompt_id} failed in the replay engine: {exc!r}")
        error: dict[str, Any] = {
            "prompt_id": item.prompt_id, "node_id": self.last_node, "node_type": None, "executed": [],
            "exception_message": f"comfy-cassettes could not replay this job: {exc!r}", "exception_type": type(exc).__name__,
            "traceback": default_traceback(None, type(exc).__name__, str(exc)), "current_inputs": {}, "current_outputs": [],
            "timestamp": int(time.time() * 1000),
        }
        if item.state is JobState.QUEUED and self.queue.head() is item:
            self.queue.take()
        self.history.record(item, {}, {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}, {})
        self.emit(item, "execution_error", error)
        if item.state is JobState.RUNNING:
            self.queue.done(item, JobState.ERROR)
        self.emit(item, "executing", {"node": None, "prompt_id": item.prompt_id})
        self.clock.job_finished(item.prompt_id, "error")

    # ------------------------------------------------------------ files

    def materialize(self, run: JobRun, node: str, output: Any) -> None:
        """Make one node's output images answerable by /view (written in dynamic mode). On the loop, not a thread:
        jobs run one at a time, so a thread's round trip held up the queue (measured: half the jobs/s)."""
        self.files.materialize(output, run.recorded_images(node), self.cassette_of(run.plan.job), run.png_metadata,
                              seed=run.plan.seeds.get(node), wrote=self.namer.wrote)

    def enrich_output(self, output: Any, prompt_id: str) -> Any:
        """Output entries as ComfyUI 0.38 sends them: ``metadata`` {"kind": "image", "width", "height"} read from
        their files (comfy_execution/media_enrichment.py), and with assets on, the asset ``id`` and ``preview_id``
        (comfy_execution/asset_enrichment.py). Entries naming no file stay as they are."""
        if not isinstance(output, dict):
            return output
        enriched: dict[str, Any] = {}
        for key, entries in output.items():
            if not isinstance(entries, list):
                enriched[key] = entries
                continue
            listed = []
            for entry in entries:
                if isinstance(entry, dict) and "filename" in entry:
                    entry = dict(entry)
                    size = self.files.dimensions(entry) if "metadata" not in entry else None
                    if size is not None:
                        entry["metadata"] = {"kind": "image", "width": size[0], "height": size[1]}
                    served = self.files.served(entry) if self.assets.enabled else None
                    if served is not None:
                        kind = str(entry.get("type", "output"))
                        asset = self.assets.register(served, name=str(entry["filename"]), kind=kind, subfolder=str(entry.get("subfolder", "")),
                                                     tags=[kind], job_id=prompt_id, metadata=entry.get("metadata"))
                        entry["id"] = asset.id
                        if asset.mime_type.startswith("image/"):
                            entry["preview_id"] = asset.id  # an image is its own preview
                listed.append(entry)
            enriched[key] = listed
        return enriched

    def preview(self, workflow: dict[str, Any], sampler: str, step: int, steps: int) -> bytes:
        """A sampler step's preview JPEG, drawn from its seed at its latent's size."""
        width, height, _ = image_size(workflow, sampler, self._input_size)
        return preview_jpeg(behaviours.seed(workflow, sampler) or 0, width, height, step, steps, self.config.preview_size)

    def view_virtual(self, kind: str, subfolder: str, filename: str) -> Path | None:
        return self.files.lookup(kind, subfolder, filename)
