"""The simulated ComfyUI: accepts prompts, runs them one at a time from its queue, keeps history and node cache,
and drives the sockets and output files.

Knows nothing of HTTP frameworks: the ASGI app turns requests into calls here and replies into responses. All
state lives on one asyncio loop, so handlers need no locks.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ...cassette.model import Cassette, Job
from ...comfy import profiles
from ...comfy.extra_data import raises_on
from ...comfy.folders import FileRoots, OutputNamer
from ...comfy.protocol import INVALID_PROMPT_ID, accepted_json, is_canonical_uuid, request_json, uuid4_text
from ...comfy.shapes import QueueListing
from ...comfy.validation import no_prompt_body
from ...errors import ConfigError
from ..config import ReplayConfig, recorded_version
from ..harness.clock import Clock
from ..harness.faults import Faults
from ..harness.journal import Journal
from .recorded_posts import RecordedPosts
from .asset_store import Assets
from .catalogue import Catalogue
from .inputs import InputFiles
from .interactions import InteractionIndex
from .outputs import OutputFiles
from .recorded_inputs import RecordedInputs
from .reply import Reply as Reply  # the handlers take it from here
from .pacing import Pacing
from .queued_extra import QueuedExtra
from .sockets import Client, Close, Send, Sockets
from .state import STOP_TIMEOUT, History, JobState, NodeCache, PromptQueue, QueueItem, Running
from .user_folder import UserFolder, recorded_user_ids

if TYPE_CHECKING:
    from .admission import Admission
    from .plan import JobIndex
    from .worker import Worker


class Resettable(Protocol):
    """A part of the simulated server that knows how to start over."""

    def reset(self) -> None: ...


class ReplayEngine:
    """ComfyUI's server state, replayed from cassettes: the parts of a simulated ComfyUI, and what its routes ask."""

    def __init__(self, config: ReplayConfig, cassettes: Sequence[Cassette], *, base: Cassette | None = None) -> None:
        self.config = config
        self.cassettes = list(cassettes)
        self.base = base  # informational answers the cassettes lack come from here (ReplayConfig.base)
        self.recorded_version = recorded_version(self.cassettes, config.comfyui_version)
        self.profile = profiles.profile(config.comfyui_version or self.recorded_version)  # the ComfyUI version to be
        self.features = self.profile.feature_flags(assets=config.assets)
        self.jobs: list[Job] = [job for c in cassettes for job in c.jobs]
        self._owned_dirs: list[Path] = []
        self.roots = FileRoots(
            output=self._dir(config.output_dir, "output"),
            input=self._dir(config.input_dir, "input"),
            temp=self._dir(config.temp_dir, "temp"),
        )
        self.inputs = InputFiles(self.roots)
        # The recording server had these in its input folder (its uploads, the images its jobs loaded): so does this.
        recorded = config.recorded_inputs
        self.recorded_inputs = RecordedInputs(self.cassettes if recorded else (), self.jobs if recorded else (), self.roots.input)
        self.recorded_inputs.reset()
        recorded_users = recorded_user_ids(i for c in self.cassettes for i in c.interactions)
        self.user_folder = UserFolder(self._dir(config.user_dir, "user"), recorded_users)  # settings and files the page writes
        self.journal = Journal(config.journal_limit)
        self.assets = Assets(config.assets)
        self.interactions = InteractionIndex(self.cassettes, base)
        self.catalogue = Catalogue(self.interactions, self.base, self.jobs, config, self.profile, self.recorded_version,
                                   input_folder=self.roots.input)
        self.sockets = Sockets(self.features)
        self.files = OutputFiles(self.roots, dynamic=config.dynamic, source_image=config.source_image, make_dir=lambda kind: self._dir(None, kind))
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the engine runs on, once started
        self._serving = False  # between start() and stop(): a worker built now starts at once
        self.faults = Faults(config.seed, on_restart=self.restart, on_error=self.journal.error, spawn=self.spawn)
        self.clock = Clock()
        self._ids = random.Random(config.seed)
        self.extra_data = QueuedExtra(self.profile)
        self._resets = 0  # how many times reset() ran: each reset draws ids from a sequence of its own
        # What a fresh ComfyUI holds, and forgets when it restarts: queue, history, cache, handed-out names.
        self.queue = PromptQueue(on_change=self.sockets.status)
        self.history = History(cached_needs_client=self.profile.cached_history_needs_client)
        self.running = Running()
        self.node_cache = NodeCache(keeps_earlier=self.profile.keeps_earlier_results)
        self.namer = OutputNamer(self.roots, rng=self._namer_rng())
        self.pacing = Pacing(config.timing, config.speed, backlog=self.queue.remaining)
        self.recorded_posts = RecordedPosts(self.jobs, self.pacing, lambda: self.index)
        self._server_parts: list[Resettable] = [self.queue, self.history, self.running, self.node_cache, self.files, self.recorded_posts]
        # The test's instruments and what the test wrote: reset between tests, kept across a `down` restart.
        self._test_parts: list[Resettable] = [self.faults, self.clock, self.assets, self.user_folder, self.journal]

    # ------------------------------------------------------------ the job side, built on first use
    # Matching, validation and the run are only needed once a prompt comes: `serve` answers its first request
    # without importing or building them (they were a sixth of its start-up). The first prompt pays once.

    @cached_property
    def index(self) -> JobIndex:
        """The recorded jobs grouped for matching a submission."""
        from .plan import JobIndex

        return JobIndex(self.jobs)

    @cached_property
    def admission(self) -> Admission:
        """What judges a submitted graph."""
        from .admission import Admission

        return Admission(self.catalogue, self.index, self.inputs, self.profile)

    @cached_property
    def worker(self) -> Worker:
        """The prompt worker, working from the moment it is built if the engine serves."""
        from .enrichment import OutputEnricher
        from .job_files import JobFiles
        from .run import RunContext
        from .worker import Worker

        config, profile = self.config, self.profile
        enricher = OutputEnricher(self.files, self.assets) if profile.output_metadata else None
        files = JobFiles(self.files, self.namer, self.inputs, self.cassettes, enricher=enricher, preview_size=config.preview_size)
        context = RunContext(queue=self.queue, history=self.history, cache=self.node_cache, sockets=self.sockets, clock=self.clock,
                             files=files, pacing=self.pacing, running=self.running, recorded_history=self.index.rendered_history)
        worker = Worker(context, self.index, self.namer, self.inputs, self.journal, previews=config.preview_method != "none",
                        per_prompt_previews=profile.preview_method_per_prompt)
        if self._serving and self.loop is not None:
            if asyncio._get_running_loop() is self.loop:
                worker.start()
            else:  # a test reaching in from its own thread
                self.loop.call_soon_threadsafe(worker.start)
        return worker

    @property
    def _built_worker(self) -> Worker | None:
        """The worker if a prompt needed one (else nothing to start, stop or wait for)."""
        return cast("Worker | None", self.__dict__.get("worker"))

    # ------------------------------------------------------------ lifecycle

    def _dir(self, given: Path | None, kind: str) -> Path:
        if given is not None:
            try:
                given.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # ReplayConfig.validated checked what it could; the file system has the last word
                self.remove_owned_dirs()
                raise ConfigError(f"--{kind}-dir {given}: cannot create it ({exc.strerror})") from None
            return given
        path = Path(tempfile.mkdtemp(prefix=f"comfy-cassettes-{kind}-"))
        self._owned_dirs.append(path)
        return path

    def _namer_rng(self) -> random.Random:
        return random.Random(self.config.seed + 1)  # temp names: same seed, same names

    def _forget(self) -> None:
        """What a restarted ComfyUI forgets: queue, history, caches, the counter, handed-out names."""
        for part in self._server_parts:
            part.reset()
        self.namer.reset(self._namer_rng())

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that :meth:`stop` cancels (the engine keeps every task it starts)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        """Start the worker that executes queued prompts and the publisher that sends /ws messages."""
        self.loop = asyncio.get_running_loop()
        self._serving = True
        if (worker := self._built_worker) is not None:
            worker.start()
        if not any(t.get_name() == "comfy-cassettes-publisher" for t in self._tasks):
            self.spawn(self.sockets.publish()).set_name("comfy-cassettes-publisher")

    async def stop(self) -> None:
        """Stop the worker, the sockets' writers and every background task, and remove the folders this engine
        created. Bounded: a task that does not end within STOP_TIMEOUT of its cancel is left behind."""
        self._serving = False
        if (worker := self._built_worker) is not None:
            await worker.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        try:
            await self.sockets.stop()
            if tasks:
                await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        finally:
            self.remove_owned_dirs()

    def remove_owned_dirs(self) -> None:
        """Remove the temporary folders this engine created (safe to call again)."""
        for path in self._owned_dirs:
            shutil.rmtree(path, ignore_errors=True)

    async def reset(self, *, folders: bool = False) -> None:
        """Forget queue, history, caches, journal and handed-out names; keep sockets and cassettes. ``folders`` (the
        fixtures' reset, not the admin route's): also empty output and temp, and input but for the recorded inputs.

        A request still held by a delay fault is let go first and answered from the state its test left (the file
        it asks for still there), then forgotten with that test's journal: it never lands in the next test's."""
        worker = self._built_worker
        if worker is not None and not worker.idle and (cut := await worker.stop()) is not None:  # an idle worker is kept
            cut.end_by_reset()
        self.faults.reset()
        await self.journal.settle()
        pending = self.queue.remaining() > 0
        for part in self._test_parts:
            part.reset()
        if folders:
            self.files.empty_folders()
        self.recorded_inputs.reset(only=folders)
        # A new id sequence per reset from the seed: reproducible, and never repeated (an old id must stay unknown).
        self._resets += 1
        self._ids = random.Random(f"{self.config.seed}/{self._resets}")
        self._forget()
        if pending:
            self.sockets.status(0)  # the queue emptied, as ComfyUI announces a cleared queue
        await self.start()

    async def restart(self) -> None:
        """What a restarted ComfyUI forgets: queue, history, caches, the counter (a ``down`` fault with
        ``restart``). Faults, holds and the journal are the test's and stay; ids never repeat."""
        if (worker := self._built_worker) is not None:
            await worker.stop()
        self._forget()
        await self.start()

    def new_prompt_id(self) -> str:
        """A UUID4 drawn from the seeded sequence: same seed, same ids, in the same order."""
        return uuid4_text(self._ids.getrandbits(128))

    # ------------------------------------------------------------ POST /prompt

    def submit(self, raw: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        """Queue a prompt like ComfyUI's POST /prompt handler (server.py post_prompt) of the profile's version."""
        accepted = self._accept(raw, headers)
        return accepted if isinstance(accepted, Reply) else self._queue(*accepted)

    async def submit_held(self, raw: bytes, headers: Mapping[str, str] | None = None) -> Reply:
        """:meth:`submit`, the prompt queued as long after it came as its recording's took (recorded_posts.py)."""
        accepted = self._accept(raw, headers)
        return accepted if isinstance(accepted, Reply) else await self.recorded_posts.after(accepted[0], lambda: self._queue(*accepted))

    def _accept(self, raw: bytes, headers: Mapping[str, str] | None) -> Reply | tuple[QueueItem, dict[str, Any]]:
        """The prompt's queue item and node errors, or the refusal to answer with."""
        try:
            body = request_json(raw, (headers or {}).get("content-type"))
        except (ValueError, LookupError, RecursionError):  # UnicodeDecodeError is a ValueError
            return Reply.crash()
        if not isinstance(body, dict):
            body = {}
        # The number is taken before "prompt" is even looked at (error_invalid_prompt: first accepted got 14).
        number = self._number(body)
        if number is None:
            return Reply.crash()  # ComfyUI float()s a given number unchecked: its 500
        if "prompt" not in body:
            return Reply.json(no_prompt_body(), 400)
        workflow = body["prompt"]
        foreign = "extra_data" in body and not isinstance(body["extra_data"], dict)
        if foreign and "client_id" in body:
            return Reply.crash()  # extra_data["client_id"] = ... on a list: before the verdict is even looked at
        if self.profile.prompt_id_must_be_uuid and body.get("prompt_id") is not None and not is_canonical_uuid(body["prompt_id"]):
            return Reply.json({"error": INVALID_PROMPT_ID, "node_errors": {}}, 400)
        checked = self.admission.judge(workflow, body.get("partial_execution_targets"))
        if isinstance(checked, Reply):
            return checked
        outputs, node_errors, shape = checked
        if foreign and raises_on(body, self.profile):
            return Reply.crash()
        # str() of what was given, as ComfyUI does (a null one is "None": more_sessions_0.3/extra_edge); else drawn.
        given = "prompt_id" in body and (body["prompt_id"] is not None or not self.profile.prompt_id_must_be_uuid)
        prompt_id, held = str(body["prompt_id"]) if given else self.new_prompt_id(), 0.0
        if self.recorded_posts.active:  # the recording's time and, for a drawn id that was tied, its order
            prompt_id, held = self.recorded_posts.stand_in(workflow, shape, prompt_id, drawn=not given)
        extra_data = self.extra_data.of(body, headers or {})
        self.queue.sequence += 1
        # The job's messages go to extra_data's client_id (execution.py), the body's or one sent inside extra_data.
        item = QueueItem(number, prompt_id, workflow, extra_data, outputs, extra_data.get("client_id"), self.queue.sequence, shape=shape,
                         held=held)
        if self.faults.rules:  # most prompts meet no rule: spared the call and its pruning
            item.faults = self.faults.for_job(workflow)
        if foreign and body["extra_data"] is not None:
            from .foreign_extra import queue_as_sent  # (rare: only an extra_data that is no object)

            queue_as_sent(item, body["extra_data"], self.catalogue.object_info())
        return item, node_errors

    def _queue(self, item: QueueItem, node_errors: dict[str, Any]) -> Reply:
        """Put an accepted prompt in the queue (ComfyUI's ``status`` goes out) and make its answer."""
        self.queue.put(item)
        self.worker.wake()
        answer = Reply.json_text(accepted_json(item.prompt_id, item.number, node_errors))
        if not self.pacing.faithful:
            item.answered = time.monotonic()  # zero latency: the job may run while its answer is on the way
            return answer
        return answer._replace(sent=lambda: self.answered(item))

    def answered(self, item: QueueItem) -> None:
        """The POST /prompt answer that queued ``item`` has gone out: from now on the worker may run it."""
        if item.answered is None:
            item.answered = time.monotonic()
            self.worker.wake()

    def _number(self, body: dict[str, Any]) -> int | float | None:
        """The prompt's queue number: the client's, as a float; else the server's counter (negated with
        ``front``). None when the client's is no number."""
        if "number" in body:
            try:
                return float(body["number"])
            except (TypeError, ValueError):
                return None
        number = self.queue.counter
        self.queue.counter += 1
        return -number if body.get("front") else number

    # ------------------------------------------------------------ queue / history

    def queue_remaining(self) -> int:
        return self.queue.remaining()

    def queue_view(self) -> QueueListing:
        return self.queue.listing()

    # POST /queue, /history, /interrupt and /free bodies are read with server.py's own operations: what its
    # handlers cannot read raises as there (the caller's 500).
    def delete_from_queue(self, body: Any) -> None:
        """POST /queue: ``clear`` empties the queue, ``delete`` removes pending prompts by id."""
        removed = self.queue.wipe() if "clear" in body and body["clear"] else []
        try:
            if "delete" in body:
                removed += self.queue.delete(iter(body["delete"]))
        finally:
            for item in removed:
                self.clock.job_finished(item.prompt_id, JobState.DELETED.value)
            self.worker.wake()  # a job held at "queued" may no longer be the head

    def delete_history(self, body: Any) -> None:
        if "clear" in body and body["clear"]:
            self.history.clear()
        if "delete" in body:
            self.history.delete(iter(body["delete"]))

    def interrupt(self, body: Any) -> None:
        """Global interrupt (a falsy prompt_id too), or only when the named prompt runs (queue_and_history_ops)."""
        target = body.get("prompt_id")
        running = self.queue.running
        if running is None:
            return
        if not target or target == running.prompt_id:
            self.running.interrupt_requested = True

    def free(self, body: Any) -> None:
        """POST /free: ``free_memory`` drops the execution cache; ``unload_models`` alone keeps it. Like main.py's
        worker, the flag is applied between prompts: at once when idle, after the running one otherwise."""
        body.get("unload_models", False)
        if body.get("free_memory", False):
            self.running.free_memory = True
            self.worker.wake()

    # ------------------------------------------------------------ websocket

    async def connect(self, sid: str | None, send: Send, close: Close | None = None) -> Client:
        """Register a socket and greet it like ComfyUI."""
        client = Client(sid or uuid.uuid4().hex, send, close=close)
        self.sockets.add(client)
        running = self.running
        reconnect = running.last_client == client.sid and running.last_node is not None and self.queue.running is not None
        await self.sockets.greet(client, self.queue_remaining(), running.last_node if reconnect else None)
        return client

    def disconnect(self, client: Client) -> None:
        self.sockets.disconnect(client)

    async def on_message(self, client: Client, text: str) -> None:
        await self.sockets.on_message(client, text)

    # ------------------------------------------------------------ files

    def view_virtual(self, kind: str, subfolder: str, filename: str) -> Path | None:
        return self.files.lookup(kind, subfolder, filename)
