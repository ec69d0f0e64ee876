"""The simulated server's job state: queue items with their lifecycle, the prompt queue, and the history.

Mirrors ComfyUI's PromptQueue (execution.py): a heap ordered by (number, prompt_id), one running item, a
history capped at MAXIMUM_HISTORY_SIZE. Every change reports the queue size *at that moment* to ``on_change``,
as ComfyUI's queue_updated() does under the queue's lock.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ...comfy.graph import execution_order, signatures
from ...comfy.protocol import MAXIMUM_HISTORY_SIZE, SENSITIVE_EXTRA_DATA_KEYS, dumps
from ...comfy.shapes import ExecutionStatus, HistoryEntry, QueueListing

if TYPE_CHECKING:
    from ..harness.faults import JobFault

STOP_TIMEOUT = 2.0  # seconds a cancelled task gets to end (the worker's at a reset, the server's shutdown)


class JobState(str, Enum):
    """Where a prompt is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    DELETED = "deleted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.DELETED}),
    JobState.RUNNING: frozenset({JobState.SUCCESS, JobState.ERROR, JobState.INTERRUPTED}),
}


T = TypeVar("T")
_SENSITIVE = frozenset(SENSITIVE_EXTRA_DATA_KEYS)


class InvalidTransition(RuntimeError):
    """Raised when a job is moved to a state it cannot reach from where it is (an engine bug, never user input)."""


class _kept(Generic[T]):
    """functools.cached_property without its lock (which 3.11's takes on every first read, one per job for each
    property): a queue item is read by the loop's thread, or by the one thread it plans in while the worker
    waits, never by two at once."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _kept[T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> T | _kept[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)  # found in the instance from now on
        return value


# Execution orders by (graph.structure, outputs): a bounded few, of graphs small enough that their key is cheap to keep.
_ORDERS: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
_ORDERS_KEPT = 64
_ORDERS_UP_TO_NODES = 256


@dataclass(eq=False)
class QueueItem:
    """One accepted prompt and its lifecycle."""

    number: int | float
    prompt_id: str
    workflow: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    client_id: str | None
    seq: int
    faults: list[JobFault] = field(default_factory=list)  # forced outcomes taken at submit (faults.py)
    state: JobState = JobState.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    shape: str | None = None  # graph.structure(workflow), worked out once at submit
    answered: float | None = None  # time.monotonic() when its POST /prompt answer went out; None: not yet
    held: float = 0.0  # recorded seconds its POST /prompt was held before it was queued (recorded_posts.py)
    extra_data_sent: Any = None  # an extra_data that is no object, listed as sent (0.3.64 queues a list as it is)
    # ComfyUI's heap holds (number, prompt_id, ...) tuples: ties in number go by prompt_id; then the order they
    # came in (PromptQueue's heap entries start with these).
    sort_key: tuple[int | float, str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.sort_key = (self.number, self.prompt_id, self.seq)

    @_kept
    def signatures(self) -> dict[str, str]:
        """Each node's cache signature (graph.signatures): asked when the job is planned, named and finished."""
        return signatures(self.workflow, self.shape if len(self.workflow) <= _ORDERS_UP_TO_NODES else None)

    @_kept
    def workflow_json(self) -> str:
        """``json.dumps`` of the workflow: the ``prompt`` text of the images the job saves (dynamic mode), which its
        history entry then takes as it is instead of encoding the graph again."""
        return dumps(self.workflow)

    @_kept
    def order(self) -> tuple[str, ...]:
        """The nodes ComfyUI runs for this prompt, in its execution order: a function of its structure and outputs
        alone, so worked out once for the many prompts of one graph (a queue's prompts mostly share a few)."""
        if self.shape is None or len(self.workflow) > _ORDERS_UP_TO_NODES:
            return tuple(execution_order(self.workflow, self.outputs_to_execute))
        key = (self.shape, tuple(self.outputs_to_execute))
        known = _ORDERS.get(key)
        if known is None:
            if len(_ORDERS) >= _ORDERS_KEPT:
                _ORDERS.pop(next(iter(_ORDERS)))  # the oldest: a few graphs are the common case
            known = _ORDERS[key] = tuple(execution_order(self.workflow, self.outputs_to_execute))
        return known

    def move(self, to: JobState) -> None:
        """Change state; refuses a transition ComfyUI cannot make (a finished job never runs again)."""
        if to not in _ALLOWED.get(self.state, frozenset()):
            raise InvalidTransition(f"job {self.prompt_id}: cannot go from {self.state.value} to {to.value}")
        self.state = to
        if to is JobState.RUNNING:
            self.started = time.time()
        else:  # (every state it can reach but RUNNING is a finished one)
            self.finished = time.time()

    def as_list(self) -> list[Any]:
        """The 5-element item ComfyUI shows in /queue and history ``prompt``."""
        extra_data = self.extra_data if self.extra_data_sent is None else self.extra_data_sent
        return [self.number, self.prompt_id, self.workflow, extra_data, self.outputs_to_execute]


class PromptQueue:
    """Pending items in a heap and the one running item; ``on_change(remaining)`` hears every change."""

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        # The heap holds each item behind its sort key's parts, so that the heap compares tuples in C, not items
        # through a Python __lt__ (the sequence number is unique: no two entries ever get as far as their items).
        self._heap: list[tuple[int | float, str, int, QueueItem]] = []
        self.running: QueueItem | None = None
        self.on_change = on_change
        self.counter = 0  # server.number: the next prompt's number when the client gives none
        self.sequence = 0  # the order items were accepted in, whatever their numbers
        self._unreported: int | None = None  # the count a take(report=False) still has to report

    def reset(self) -> None:
        """Empty, with the counter at 0: a fresh ComfyUI's queue (not reported: nobody is told of a restart)."""
        self._heap, self.running = [], None
        self.counter = self.sequence = 0
        self._unreported = None

    def _changed(self) -> None:
        if self._unreported is not None:  # (the call spared when there is nothing to report: most changes)
            self.report_taken()  # ComfyUI reported the take as it happened: before any later change (two_clients)
        if self.on_change is not None:
            self.on_change(self.remaining())

    @property
    def pending(self) -> list[QueueItem]:
        """The pending items, in heap order (as ComfyUI's queue lists them)."""
        return [entry[3] for entry in self._heap]

    def remaining(self) -> int:
        """Pending plus running, what ``status`` frames and GET /prompt report."""
        return len(self._heap) + (1 if self.running is not None else 0)

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (*item.sort_key, item))
        self._changed()

    def head(self) -> QueueItem | None:
        return self._heap[0][3] if self._heap else None

    def take(self, *, report: bool = True) -> QueueItem:
        """The next item, now running (reported with it counted as running, like ComfyUI's get()). With ``report``
        false the report waits for :meth:`report_taken`, which the run calls as it starts the prompt."""
        item = heapq.heappop(self._heap)[3]
        item.move(JobState.RUNNING)
        self.running = item
        if report:
            self._changed()
        else:
            self._unreported = self.remaining()  # counted now, as ComfyUI's get() counts it
        return item

    def report_taken(self) -> None:
        """The report of a :meth:`take` made without one, once (ComfyUI's get() reports the queue right before its
        worker sends ``execution_start``, in every capture: a recorded start-up delay must not come between), with
        the count at the take; sooner when the queue changes first (a prompt queued during the delay)."""
        count, self._unreported = self._unreported, None
        if count is not None and self.on_change is not None:
            self.on_change(count)

    def done(self, item: QueueItem, state: JobState) -> None:
        """The running item ended in ``state``; call after its history entry is written (task_done)."""
        self.report_taken()  # a run that ended before it started still reported its take first
        item.move(state)
        if self.running is item:
            self.running = None
        self._changed()

    def delete(self, prompt_ids: Iterable[str]) -> list[QueueItem]:
        """Remove pending items by prompt_id, one report per item removed (POST /queue ``delete``)."""
        removed = []
        for prompt_id in prompt_ids:
            place = next((i for i, entry in enumerate(self._heap) if entry[3].prompt_id == prompt_id), None)
            if place is None:
                continue
            found = self._heap.pop(place)[3]
            heapq.heapify(self._heap)
            found.move(JobState.DELETED)
            removed.append(found)
            self._changed()
        return removed

    def wipe(self) -> list[QueueItem]:
        """Remove every pending item, one report even when there was none (POST /queue ``clear``)."""
        removed, self._heap = self.pending, []
        for item in removed:
            item.move(JobState.DELETED)
        self._changed()
        return removed

    def listing(self) -> QueueListing:
        """GET /queue: the running item and the pending ones in heap order, as ComfyUI lists them."""
        running = [self.running.as_list()] if self.running is not None else []
        return {"queue_running": running, "queue_pending": [item.as_list() for item in self.pending]}


class History:
    """Finished prompts by prompt_id, oldest first; a re-used prompt_id keeps its place (prompt_options capture)."""

    def __init__(self, limit: int | None = None, *, cached_needs_client: bool = False) -> None:
        self.entries: OrderedDict[str, HistoryEntry] = OrderedDict()
        self.limit = MAXIMUM_HISTORY_SIZE if limit is None else limit
        # From 0.3.68 a prompt sent without client_id leaves its cached nodes out of its outputs and meta:
        # execution.py execute() adds a cached node's ui to ui_outputs only for a client (seen on a live 0.8.0),
        # until emit_cached_output adds it for everyone.
        self.cached_needs_client = cached_needs_client
        # Each entry's item_json, made on its first request: clients poll /history, an entry never changes once written.
        self._texts: dict[str, bytes] = {}
        self._workflows: dict[str, str] = {}  # an entry's workflow as JSON, when its job encoded it (workflow_json)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.entries

    def record(self, item: QueueItem, outputs: dict[str, Any], status: ExecutionStatus, meta: dict[str, Any],
               cached: Iterable[str] = ()) -> HistoryEntry:
        """Write ``item``'s entry (``cached``: the nodes its run took from the cache); like task_done, the oldest
        goes first once the history is over its limit."""
        if self.cached_needs_client and item.client_id is None and cached:
            skipped = set(cached)
            outputs = {node: part for node, part in outputs.items() if node not in skipped}
            meta = {node: part for node, part in meta.items() if node not in skipped}
        while len(self.entries) > self.limit:
            oldest = self.entries.popitem(last=False)[0]
            self._texts.pop(oldest, None)
            self._workflows.pop(oldest, None)
        self._texts.pop(item.prompt_id, None)
        encoded = item.__dict__.get("workflow_json")  # (made only by a job that saved an image with it)
        if encoded is not None:
            self._workflows[item.prompt_id] = encoded
        elif self._workflows:
            self._workflows.pop(item.prompt_id, None)
        prompt = item.as_list()
        extra = item.extra_data  # (no prompt's extra_data changes once queued: shared unless a secret is left out)
        if item.extra_data_sent is None and not _SENSITIVE.isdisjoint(extra):
            prompt[3] = {k: v for k, v in extra.items() if k not in _SENSITIVE}
        entry: HistoryEntry = {"prompt": prompt, "outputs": outputs, "status": status, "meta": meta}
        self.entries[item.prompt_id] = entry
        return entry

    def view(self, max_items: int | None = None, offset: int = -1) -> dict[str, HistoryEntry]:
        """ComfyUI's get_history: ``max_items`` from the end, or from ``offset`` when given."""
        keys = list(self.entries)
        if offset < 0 and max_items is not None:
            offset = len(keys) - max_items
        start = max(offset, 0)
        chosen = keys[start:] if max_items is None else keys[start : start + max_items]
        return {k: self.entries[k] for k in chosen}

    def item(self, prompt_id: str) -> dict[str, HistoryEntry]:
        return {prompt_id: self.entries[prompt_id]} if prompt_id in self.entries else {}

    def view_json(self, max_items: int | None = None, offset: int = -1) -> bytes:
        """:meth:`view` as ComfyUI's json.dumps writes it, from each entry's kept JSON."""
        return b"{" + b", ".join([self.item_json(prompt_id)[1:-1] for prompt_id in self.view(max_items, offset)]) + b"}"

    def item_json(self, prompt_id: str) -> bytes:
        """:meth:`item` as ComfyUI's json.dumps writes it (kept: clients poll for it)."""
        text = self._texts.get(prompt_id)
        if text is None:
            entry = self.entries.get(prompt_id)
            if entry is None:
                return b"{}"
            workflow = self._workflows.pop(prompt_id, None) if self._workflows else None
            body = dumps(entry) if workflow is None else _with_workflow(entry, workflow)
            text = self._texts[prompt_id] = f"{{{dumps(prompt_id)}: {body}}}".encode()
        return text

    def delete(self, prompt_ids: Iterable[str]) -> None:
        for prompt_id in prompt_ids:
            self.entries.pop(prompt_id, None)
            self._texts.pop(prompt_id, None)
            self._workflows.pop(prompt_id, None)

    def clear(self) -> None:
        self.entries.clear()
        self._texts.clear()
        self._workflows.clear()

    reset = clear


def _with_workflow(entry: HistoryEntry, workflow: str) -> str:
    """``dumps(entry)`` with its prompt's ``workflow`` already encoded put in place instead of encoded again: the entry
    is encoded with a 0 there, which starts right after the prompt's number and id (record() writes "prompt" first)."""
    prompt = entry["prompt"]
    text = dumps({**entry, "prompt": [prompt[0], prompt[1], 0, *prompt[3:]]})
    start = len('{"prompt": ') + len(dumps(prompt[:2])) + 1  # '[<number>, <id>' and ', '
    return text[:start] + workflow + text[start + 1 :]


class NodeCache:
    """ComfyUI's execution cache: a node's signature to the outputs it made. 0.3.64's classic cache holds the
    last prompt's results only; the RAM-pressure cache (0.23.0+) keeps earlier prompts' too."""

    def __init__(self, *, keeps_earlier: bool) -> None:
        self.keeps_earlier = keeps_earlier
        self.results: dict[str, dict[str, Any] | None] = {}

    def __contains__(self, signature: object) -> bool:
        return signature in self.results

    def get(self, signature: str) -> dict[str, Any] | None:
        return self.results.get(signature)

    def holding(self, signatures: Mapping[str, str], nodes: Iterable[str]) -> list[str]:
        """The ``nodes`` whose signature the cache holds, in their order (one lookup each, not a call of
        ``__contains__`` each)."""
        results = self.results
        return [node for node in nodes if signatures.get(node) in results]

    def store(self, results: dict[str, dict[str, Any] | None]) -> None:
        """What one prompt's run leaves cached."""
        if self.keeps_earlier:
            self.results.update(results)
        else:
            self.results = results

    def reset(self) -> None:
        self.results = {}


@dataclass
class Running:
    """What the worker, the running job and the sockets share about the job in progress."""

    interrupt_requested: bool = False  # POST /interrupt: the run checks it at its step points
    last_node: str | None = None  # the node last announced: a reconnecting client is told it
    last_client: str | None = None  # the client of the job last taken
    free_memory: bool = False  # POST /free asked to drop the cache: done by the worker between prompts

    def reset(self) -> None:
        self.interrupt_requested = self.free_memory = False
        self.last_node = self.last_client = None
