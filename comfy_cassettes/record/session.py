"""The raw session every recording source yields: HTTP exchanges and WebSocket frames on one clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Headers describing one transfer of a body, not the body: wrong once the body is stored decoded and re-sent.
TRANSFER_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


@dataclass
class HttpExchange:
    """One HTTP request and its response; ``t`` is seconds since the epoch when the request started."""

    t: float
    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    response_body: bytes
    duration: float = 0.0

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)

    def header(self, name: str, *, response: bool = True) -> str | None:
        """The first header called ``name`` (case-insensitive)."""
        for key, value in self.response_headers if response else self.request_headers:
            if key.lower() == name.lower():
                return value
        return None

    def request_json(self) -> Any:
        """The request body parsed as JSON, or None when it is not JSON."""
        return json_or_none(self.request_body)

    def response_json(self) -> Any:
        """The response body parsed as JSON, or None when it is not JSON."""
        return json_or_none(self.response_body)


@dataclass
class WsFrame:
    """One WebSocket frame; ``sent`` is True for client-to-server frames."""

    t: float
    sent: bool
    data: str | bytes

    def json(self) -> Any:
        return json_or_none(self.data) if isinstance(self.data, str) else None


@dataclass
class WsConnection:
    """One ``/ws`` connection and its frames in order."""

    t: float
    url: str
    frames: list[WsFrame] = field(default_factory=list)

    @property
    def client_id(self) -> str | None:
        return dict(parse_qsl(urlsplit(self.url).query)).get("clientId")

    @property
    def sid(self) -> str | None:
        """The sid the server announced in its first ``status`` message."""
        for frame in self.frames:
            message = frame.json()
            if not frame.sent and isinstance(message, dict) and message.get("type") == "status":
                sid = (message.get("data") or {}).get("sid")
                if isinstance(sid, str):
                    return sid
        return self.client_id


@dataclass
class RawSession:
    """Everything one recording saw, before templating."""

    exchanges: list[HttpExchange] = field(default_factory=list)
    sockets: list[WsConnection] = field(default_factory=list)
    source: str = ""
    comment: str = ""


def json_or_none(data: str | bytes) -> Any:
    """``data`` parsed as JSON, or None when it is empty or not JSON."""
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
