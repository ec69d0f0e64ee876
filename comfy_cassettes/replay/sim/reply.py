"""The simulated server's answer to a request, before any HTTP framework sees it: what the engine's calls return
and the handlers turn into responses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ...comfy.protocol import CRASH_BODY, CRASH_HEADERS, JSON_CONTENT_TYPE, dumps

# A Reply without headers (no body, or a body of no declared type): one shared, read-only.
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# A JSON answer's headers: one shared, read-only (the handlers know its header lines by it).
JSON_HEADERS: Mapping[str, str] = MappingProxyType({"Content-Type": JSON_CONTENT_TYPE})


class Reply(NamedTuple):
    """An HTTP answer: status, body bytes, headers (Content-Type included when the body has one). A named tuple:
    every answer makes one, and a tuple is the cheapest read-only record to make (a frozen dataclass costs thrice)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = _NO_HEADERS
    sent: Callable[[], None] | None = None  # to call once the answer has gone out (or failed to): POST /prompt's

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        # aiohttp's json_response: json.dumps defaults, utf-8
        return cls.json_text(dumps(value).encode(), status)

    @classmethod
    def json_text(cls, body: bytes, status: int = 200) -> Reply:
        """A JSON answer whose text is already made (kept history entries, recorded bodies)."""
        return _new_tuple(cls, (status, body, JSON_HEADERS, None))  # (the named tuple's __new__ without its frame)

    @classmethod
    def crash(cls) -> Reply:
        """aiohttp's answer when a handler raises (malformed JSON, prompts ComfyUI cannot even validate)."""
        return cls(500, CRASH_BODY, dict(CRASH_HEADERS))


_new_tuple = tuple.__new__
