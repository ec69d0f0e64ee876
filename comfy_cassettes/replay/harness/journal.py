"""The request journal: every request the replay server received, in order, for tests to inspect."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


_KEPT_BODY = 64 * 1024  # bytes of a request body the journal keeps
# Engine errors, and unmatched requests, kept for a test (the first ones: they name the cause); 20,000 failing
# requests once made a 47 MB answer.
PROBLEMS_KEPT = 100


class JournalEntry:
    """One received request and what the server answered. The query and the body are decoded when a test
    asks for them: every request is journaled, few are ever looked at."""

    __slots__ = ("seq", "t", "method", "path", "raw_query", "raw_body", "status", "matched", "client", "_query", "_body")

    def __init__(self, seq: int, t: float, method: str, path: str, raw_query: str, raw_body: bytes, status: int,
                 matched: str = "", client: str = "") -> None:
        self.seq, self.t, self.method, self.path = seq, t, method, path
        self.raw_query, self.raw_body, self.status, self.matched, self.client = raw_query, raw_body, status, matched, client
        self._query: dict[str, str] | None = None
        self._body: str | None = None
        if len(raw_body) > _KEPT_BODY:  # an upload: the journal says how big, and does not hold on to it
            self.raw_body, self._body = b"", f"<{len(raw_body)} bytes>"

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

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "t": self.t, "method": self.method, "path": self.path, "query": self.query,
                "body": self.body, "status": self.status, "matched": self.matched, "client": self.client}


@dataclass
class Journal:
    """A bounded, thread-safe list of JournalEntry, plus what a test should hear about: errors inside the engine
    and requests nothing recorded could answer (each with its closest recordings)."""

    limit: int = 10_000
    entries: deque[JournalEntry] = field(init=False)
    errors: list[str] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # problems past the first PROBLEMS_KEPT of their kind, counted and not kept

    def __post_init__(self) -> None:
        self.entries = deque(maxlen=self.limit)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, method: str, path: str, query: str, body: bytes, status: int, matched: str = "", client: str = "") -> None:
        """One request: ``query`` is its raw query string, decoded when asked for."""
        with self._lock:
            self._seq += 1
            self.entries.append(JournalEntry(self._seq, time.time(), method, path, query, body, status, matched, client))

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

    def problems(self) -> dict[str, Any]:
        """Engine errors and unmatched requests since the last clear (the first PROBLEMS_KEPT of each), and, when
        there were more, how many (``dropped``)."""
        with self._lock:
            found: dict[str, Any] = {"errors": list(self.errors), "unmatched": list(self.unmatched)}
            if self.dropped:
                found["dropped"] = self.dropped
            return found

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self.errors.clear()
            self.unmatched.clear()
            self.dropped = 0

    reset = clear

    def __iter__(self) -> Iterator[JournalEntry]:
        with self._lock:
            return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)
