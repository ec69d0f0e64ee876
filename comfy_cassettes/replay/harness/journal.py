"""The request journal: every request the replay server received, in the order received, for tests to inspect.

A request is numbered when it arrives and listed once answered, in its place: a request held by a delay fault
comes before the retry sent after it. A reset starts a new generation: a request received before it never lands
in the journal after it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


_KEPT_BODY = 64 * 1024  # bytes of a request body the journal keeps
ANSWER_KEPT = 64 * 1024  # bytes of an error answer's body the journal keeps
# Error answers (status 400 and up) whose bodies the journal keeps, the latest: each says why a request was refused
# (POST /prompt's node_errors), which a client that raises a bare "400 Bad Request" never shows.
ANSWERS_KEPT = 1_000
SETTLE_TIMEOUT = 1.0  # seconds a reset waits for the requests in flight to be answered
# Engine errors, and unmatched requests, kept for a test (the first ones: they name the cause); 20,000 failing
# requests once made a 47 MB answer.
PROBLEMS_KEPT = 100


class JournalEntry:
    """One received request and what the server answered. The query and the body are decoded when a test
    asks for them: every request is journaled, few are ever looked at."""

    __slots__ = ("seq", "t", "method", "path", "raw_query", "raw_body", "status", "matched", "client", "_query", "_body",
                 "raw_answer")

    def __init__(self, seq: int, t: float, method: str, path: str, raw_query: str, raw_body: bytes, status: int,
                 matched: str = "", client: str = "") -> None:
        self.seq, self.t, self.method, self.path = seq, t, method, path
        self.raw_query, self.raw_body, self.status, self.matched, self.client = raw_query, raw_body, status, matched, client
        self._query: dict[str, str] | None = None
        self._body: str | None = None
        self.raw_answer: Answered | None = None  # an error answer's body, as :meth:`Journal.answer` kept it
        if len(raw_body) > _KEPT_BODY:  # an upload: the journal says how big, and does not hold on to it
            self.raw_body, self._body = b"", f"<{len(raw_body)} bytes>"

    @classmethod
    def of(cls, kept: _Kept) -> JournalEntry:
        """The entry a journal keeps as a tuple (``_Kept``)."""
        seq, t, method, path, raw_query, body, status, matched, client = kept
        if not isinstance(client, str):
            client = f"{client[0]}:{client[1]}"
        if isinstance(body, int):
            entry = cls(seq, t, method, path, raw_query, b"", status, matched, client)
            entry._body = f"<{body} bytes>"
            return entry
        return cls(seq, t, method, path, raw_query, body, status, matched, client)

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(parse_qsl(self.raw_query, keep_blank_values=True))
        return self._query

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = self.raw_body.decode("utf-8", "replace")
        return self._body

    @property
    def answer(self) -> Any:
        """The body of an error answer (status 400 and up) as JSON when it is JSON, else as text; over ANSWER_KEPT
        its first ANSWER_KEPT bytes as text and its size. None for any other answer, or one no longer kept."""
        if self.raw_answer is None:
            return None
        head, size = self.raw_answer
        if size > len(head):
            return f"{head.decode('utf-8', 'replace')}... <{size} bytes in all>"
        try:
            return json.loads(head)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return head.decode("utf-8", "replace")

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": self.t, "method": self.method, "path": self.path, "query": self.query,
                "body": self.body, "status": self.status, "matched": self.matched, "client": self.client,
                "answer": self.answer}


# An entry as the journal keeps it: JournalEntry's arguments in a plain tuple of strings and numbers, which the
# cyclic garbage collector stops tracking (an object per request, kept by the ten thousand, made every full
# collection longer). A body over _KEPT_BODY is kept as its size, the client's address as the server gave it.
_Kept = tuple[int, float, str, str, str, "bytes | int", int, str, "str | tuple[str, int]"]


# An error answer's body as the journal keeps it: its first ANSWER_KEPT bytes and its whole size.
Answered = tuple[bytes, int]


class _Generation:
    """The journal between two clears: its entries, its error answers' bodies by seq (oldest first: beside the
    entries, so an answer that is no error costs nothing), and how many of its requests were received and answered.
    A clear starts another, so a request received before it is answered into one nobody lists any more: no check
    and no lock needed, whichever thread cleared."""

    __slots__ = ("entries", "answers", "received", "answered")

    def __init__(self, limit: int) -> None:
        self.entries: deque[_Kept] = deque(maxlen=limit)
        self.answers: dict[int, Answered] = {}
        self.received = 0
        self.answered = 0


# When a request arrived: its place in the journal (seq), the time, and the journal's generation then. A plain
# tuple: one is made per request, and a NamedTuple's constructor cost eight times as much.
Receipt = tuple[int, float, _Generation]


@dataclass
class Journal:
    """A bounded list of JournalEntry, plus what a test should hear about: errors inside the engine and requests
    nothing recorded could answer (each with its closest recordings). Requests are received and added by one
    thread, the server's event loop, without a lock (two lock round trips were a tenth of the middleware's own
    cost per request); any thread may read, clear and report problems."""

    limit: int = 10_000
    errors: list[str] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # problems past the first PROBLEMS_KEPT of their kind, counted and not kept

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # clear, the reads, the problems, an entry answered out of order
        self._seqs = itertools.count(1)  # (next() is atomic: receive needs no lock)
        self._current = _Generation(self.limit)

    @property
    def entries(self) -> deque[_Kept]:
        """The entries kept since the last clear, as tuples (``_Kept``), in the order received."""
        return self._current.entries

    def receive(self) -> Receipt:
        """A request has arrived: its number and time. Every receipt is closed by :meth:`add` (answered or not)."""
        generation = self._current
        generation.received += 1
        return (next(self._seqs), time.time(), generation)

    def add(self, method: str, path: str, query: str, body: bytes, status: int, matched: str = "",
            client: str | tuple[str, int] = "", *, receipt: Receipt | None = None) -> None:
        """One answered request (``receipt``: from :meth:`receive` when it arrived; None: arrived just now), listed
        in the order received; not listed when the journal was cleared since it arrived. ``query`` is its raw query
        string, decoded when asked for; ``client``: its address, or its (host, port), joined when asked for."""
        seq, received, generation = receipt if receipt is not None else self.receive()
        generation.answered += 1
        entry = (seq, received, method, path, query, body if len(body) <= _KEPT_BODY else len(body), status, matched, client)
        entries = generation.entries
        if not entries or entries[-1][0] < seq:
            entries.append(entry)
            return
        with self._lock:  # answered after requests that arrived later (a delay fault held it): back to where it arrived
            place = len(entries)
            while place > 0 and entries[place - 1][0] > seq:
                place -= 1
            if len(entries) == entries.maxlen:
                if place == 0:
                    return  # older than everything a full journal keeps
                entries.popleft()
                place -= 1
            entries.insert(place, entry)

    def answer(self, receipt: Receipt, chunks: list[bytes]) -> None:
        """The body of the error answer (status 400 and up) to the request of ``receipt``, in the ``chunks`` it
        was sent in: its first ANSWER_KEPT bytes and its size are kept, for the latest ANSWERS_KEPT answers."""
        body = b"".join(chunks)
        head, size = body[:ANSWER_KEPT], len(body)
        with self._lock:
            answers = receipt[2].answers
            answers[receipt[0]] = (head, size)
            if len(answers) > ANSWERS_KEPT:
                del answers[next(iter(answers))]

    @property
    def in_flight(self) -> int:
        """Requests received since the last clear and not answered yet."""
        generation = self._current
        return generation.received - generation.answered

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait up to ``timeout`` seconds for every request received to be answered; True when none is left (a
        reset waits so; one still going then is left out of every journal)."""
        deadline = time.monotonic() + timeout
        while self.in_flight > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.001)
        return True

    def error(self, message: str) -> None:
        with self._lock:
            if len(self.errors) < PROBLEMS_KEPT:
                self.errors.append(message)
            else:
                self.dropped += 1

    def miss(self, report: dict[str, Any]) -> None:
        """A request answered with the unmatched 404: ``report`` names it and its closest recordings."""
        with self._lock:
            if len(self.unmatched) < PROBLEMS_KEPT:
                self.unmatched.append(report)
            else:
                self.dropped += 1

    @property
    def has_problems(self) -> bool:
        """Whether :meth:`problems` has anything to say; read without the lock (a teardown's look, every test)."""
        return bool(self.errors or self.unmatched or self.dropped)

    def problems(self) -> dict[str, Any]:
        """Engine errors and unmatched requests since the last clear (the first PROBLEMS_KEPT of each), and, when
        there were more, how many (``dropped``)."""
        with self._lock:
            found: dict[str, Any] = {"errors": list(self.errors), "unmatched": list(self.unmatched)}
            if self.dropped:
                found["dropped"] = self.dropped
            return found

    def clear(self) -> None:
        """Forget every entry and problem; requests still in flight will not be listed (a new generation)."""
        with self._lock:
            self._current = _Generation(self.limit)
            self.errors.clear()
            self.unmatched.clear()
            self.dropped = 0

    reset = clear

    def __iter__(self) -> Iterator[JournalEntry]:
        with self._lock:
            generation = self._current
            kept = list(generation.entries)
            answers = dict(generation.answers) if generation.answers else None
        if answers is None:
            return map(JournalEntry.of, kept)
        return (_with_answer(JournalEntry.of(k), answers) for k in kept)

    def __len__(self) -> int:
        return len(self._current.entries)


def _with_answer(entry: JournalEntry, answers: dict[int, Answered]) -> JournalEntry:
    entry.raw_answer = answers.get(entry.seq)
    return entry
