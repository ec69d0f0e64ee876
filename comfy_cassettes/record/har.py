"""Reads an HTTP Archive (what browsers' developer tools export) into a RawSession, WebSocket frames included."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ImportFormatError
from .session import HttpExchange, RawSession, WsConnection, WsFrame


def read_har(path: str | Path) -> RawSession:
    """Parse ``path`` (HAR 1.2; WebSocket frames in Chromium's ``_webSocketMessages``)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportFormatError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: not a JSON file ({exc})") from None
    log = document.get("log") if isinstance(document, dict) else None
    if not isinstance(log, dict) or not isinstance(log.get("entries"), list):
        raise ImportFormatError(f"{path}: not a HAR file (no log.entries)")
    session = RawSession(source=str(path), comment=str(log.get("comment", "")))
    for i, entry in enumerate(log["entries"]):
        try:
            if entry.get("_resourceType") == "websocket" or "_webSocketMessages" in entry:
                session.sockets.append(_socket(entry))
            else:
                session.exchanges.append(_exchange(entry))
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportFormatError(f"{path}: log.entries[{i}] is malformed: {exc!r}") from None
    session.exchanges.sort(key=lambda e: e.t)
    return session


def _time(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["startedDateTime"]).replace("Z", "+00:00")).timestamp()


def _headers(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(h["name"], h["value"]) for h in items]


def _exchange(entry: dict[str, Any]) -> HttpExchange:
    request, response = entry["request"], entry["response"]
    post = request.get("postData") or {}
    body = post.get("text", "") or ""
    request_body = base64.b64decode(body) if post.get("_encoding") == "base64" else body.encode("utf-8")
    content = response.get("content") or {}
    text = content.get("text", "") or ""
    response_body = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode("utf-8")
    return HttpExchange(
        t=_time(entry),
        method=request["method"].upper(),
        url=request["url"],
        request_headers=_headers(request.get("headers", [])),
        request_body=request_body,
        status=int(response["status"]),
        reason=str(response.get("statusText", "")),
        response_headers=_headers(response.get("headers", [])),
        response_body=response_body,
        duration=float(entry.get("time", 0.0)) / 1000.0,
    )


def _socket(entry: dict[str, Any]) -> WsConnection:
    connection = WsConnection(t=_time(entry), url=entry["request"]["url"])
    for message in entry.get("_webSocketMessages", []):
        data = message.get("data", "")
        payload: str | bytes = base64.b64decode(data) if message.get("opcode") == 2 else data
        connection.frames.append(WsFrame(t=float(message["time"]), sent=message.get("type") == "send", data=payload))
    return connection
