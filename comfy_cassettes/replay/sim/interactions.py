"""Answers the informational routes from recorded interactions, and explains a miss by the closest recordings."""

from __future__ import annotations

import difflib
import time
from collections.abc import Sequence
from email.utils import formatdate
from typing import Any, NamedTuple

from ...cassette.model import Cassette, Interaction
from ...comfy.routes import is_base_route, normalize
from ...cassette.templating import render_text

_SKIP_HEADERS = {"content-length", "date", "server", "transfer-encoding", "connection"}


class Recorded(NamedTuple):
    """One recorded request, indexed for matching."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    cassette: Cassette
    interaction: Interaction

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}{'?' + query if query else ''}"


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]
    matched: str


_Key = tuple[str, str, tuple[tuple[str, str], ...]]


class InteractionIndex:
    """Recorded requests by (method, normalised path, query); the last recording of a request wins.

    A ``base`` cassette (a whole ComfyUI's informational answers) answers the :data:`BASE_ROUTES` the cassettes
    never recorded, so a cassette of one session still serves clients that ask for ``/object_info`` first.
    """

    def __init__(self, cassettes: Sequence[Cassette], base: Cassette | None = None) -> None:
        self.recorded: list[Recorded] = []
        self._exact: dict[_Key, Recorded] = {}
        self._base: dict[_Key, Recorded] = {}
        for cassette in cassettes:
            for item in cassette.interactions:
                rec = self._indexed(cassette, item)
                self.recorded.append(rec)
                self._exact[(rec.method, rec.path, rec.query)] = rec
        for item in base.interactions if base is not None else ():
            if base is not None and item.method == "GET" and is_base_route(item.path):
                rec = self._indexed(base, item)
                self._base[(rec.method, rec.path, rec.query)] = rec

    @staticmethod
    def _indexed(cassette: Cassette, item: Interaction) -> Recorded:
        return Recorded(item.method, route_key(item.path), tuple(sorted(item.query)), cassette, item)

    def find(self, method: str, path: str, query: Sequence[tuple[str, str]]) -> Recorded | None:
        key = (method.upper(), route_key(path), tuple(sorted(query)))
        for table in (self._exact, self._base):
            found = table.get(key)
            if found is None and query:
                # Informational routes ignore unknown query parameters (cache busters from browsers).
                found = table.get((key[0], key[1], ()))
            if found is not None:
                return found
        return None

    def from_base(self) -> list[str]:
        """The requests the base answers because the cassettes did not record them (for ``inspect``)."""
        return sorted(rec.describe() for key, rec in self._base.items() if key not in self._exact)

    def answer(self, rec: Recorded) -> Answer:
        interaction = rec.interaction
        body = rec.cassette.body(interaction)
        if b"{{" in body:
            body = _rendered(body)
        headers = {k: v[0] for k, v in interaction.response_headers.items() if v and k.lower() not in _SKIP_HEADERS}
        return Answer(interaction.status, body, headers, f"cassette {rec.cassette.path.name if rec.cassette.path else ''}: {rec.describe()}")

    def closest(self, method: str, path: str, query: Sequence[tuple[str, str]], limit: int = 3) -> list[dict[str, Any]]:
        """The recorded requests most like this one, each with how it differs."""
        want_path, want_query = normalize(path), dict(query)
        scored = []
        seen = set()
        for rec in self.recorded:
            key = (rec.method, rec.path, rec.query)
            if key in seen:
                continue
            seen.add(key)
            score = difflib.SequenceMatcher(None, want_path, rec.path).ratio() + (0.5 if rec.method == method.upper() else 0.0)
            have_query = dict(rec.query)
            score += 0.1 * len(set(want_query) & set(have_query))
            differences = []
            if rec.method != method.upper():
                differences.append(f"method {rec.method} != {method.upper()}")
            if rec.path != want_path:
                differences.append(f"path {rec.path} != {want_path}")
            for k in sorted(set(want_query) | set(have_query)):
                if want_query.get(k) != have_query.get(k):
                    differences.append(f"query {k}: recorded {have_query.get(k)!r}, got {want_query.get(k)!r}")
            scored.append((score, {"request": rec.describe(), "differences": differences}))
        scored.sort(key=lambda s: -s[0])
        return [item for _, item in scored[:limit]]


def route_key(path: str) -> str:
    """A recorded or requested path as the interactions are keyed: the route (``/api/x`` is ``/x``), with a trailing
    slash kept, for aiohttp routes ``/x`` and ``/x/`` apart (``GET /system_stats/`` is its 404)."""
    route = normalize(path)
    return route + "/" if path.endswith("/") and route != "/" else route


def _rendered(body: bytes) -> bytes:
    """A recorded text body with its time placeholders filled; a binary body (a font, an image of a recorded page)
    that happens to hold ``{{`` is no template and passes unchanged."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    now: dict[str, str | int | float] = {"now_ms": int(time.time() * 1000), "http_date": formatdate(usegmt=True)}
    return render_text(text, now).encode("utf-8")
