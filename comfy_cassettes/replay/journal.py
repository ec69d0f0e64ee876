"""The request journal: every request the replay server received, in order, for tests to inspect."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class JournalEntry:
    """One received request and what the server answered."""

    seq: int
    t: float
    method: str
    path: str
    query: dict[str, str]
    body: str
    status: int
    matched: str = ""  # which route or recorded interaction answered
    client: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Journal:
    """A bounded, thread-safe list of JournalEntry, plus what a test should hear about: errors inside the engine
    and requests nothing recorded could answer (each with its closest recordings)."""

    limit: int = 10_000
    entries: deque[JournalEntry] = field(init=False)
    errors: list[str] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entries = deque(maxlen=self.limit)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, method: str, path: str, query: dict[str, str], body: bytes, status: int, matched: str = "", client: str = "") -> None:
        text = body.decode("utf-8", "replace") if len(body) <= 64 * 1024 else f"<{len(body)} bytes>"
        with self._lock:
            self._seq += 1
            self.entries.append(JournalEntry(self._seq, time.time(), method, path, query, text, status, matched, client))

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def miss(self, report: dict[str, Any]) -> None:
        """A request answered with the unmatched 404: ``report`` names it and its closest recordings."""
        with self._lock:
            if len(self.unmatched) < self.limit:
                self.unmatched.append(report)

    def problems(self) -> dict[str, Any]:
        """Engine errors and unmatched requests since the last clear."""
        with self._lock:
            return {"errors": list(self.errors), "unmatched": list(self.unmatched)}

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self.errors.clear()
            self.unmatched.clear()

    def __iter__(self) -> Iterator[JournalEntry]:
        with self._lock:
            return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)
