"""Read the real-session HAR captures under tests/data/real_sessions as test fixtures."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REAL_SESSIONS = Path(__file__).parent / "data" / "real_sessions"

HarEntry = dict[str, Any]


@lru_cache(maxsize=None)
def _load(scenario: str) -> str:
    return (REAL_SESSIONS / scenario / "session.har").read_text(encoding="utf-8")


def load_har(scenario: str) -> dict[str, Any]:
    """A fresh parse of a scenario's session.har (callers may mutate it)."""
    har: dict[str, Any] = json.loads(_load(scenario))
    return har


def http_entries(scenario: str) -> list[HarEntry]:
    """The HTTP (non-WebSocket) entries of a scenario, in capture order."""
    return [e for e in load_har(scenario)["log"]["entries"] if e.get("_resourceType") != "websocket"]


def ws_entries(scenario: str) -> list[HarEntry]:
    """The WebSocket entries of a scenario, one per connection."""
    return [e for e in load_har(scenario)["log"]["entries"] if e.get("_resourceType") == "websocket"]


def ws_received(scenario: str) -> Iterator[dict[str, Any]]:
    """Every text frame the server sent, parsed, socket by socket in capture order."""
    for entry in ws_entries(scenario):
        for message in entry.get("_webSocketMessages", []):
            if message["type"] == "receive" and message["opcode"] == 1:
                yield json.loads(message["data"])


def request_path(entry: HarEntry) -> str:
    """The URL path of the request, e.g. ``/view`` or ``/api/prompt``."""
    return str(urlsplit(entry["request"]["url"]).path)


def query_params(entry: HarEntry) -> dict[str, str]:
    """The decoded query parameters of the request (last value wins)."""
    return {p["name"]: p["value"] for p in entry["request"].get("queryString", [])}


def response_headers(entry: HarEntry) -> dict[str, str]:
    """A new dict of the response headers, in captured order."""
    return {h["name"]: h["value"] for h in entry["response"].get("headers", [])}


def response_bytes(entry: HarEntry) -> bytes:
    """The response body as bytes (HAR stores binary bodies as base64)."""
    content = entry["response"].get("content", {})
    text = content.get("text", "")
    if content.get("encoding") == "base64":
        return base64.b64decode(text)
    return str(text).encode("utf-8")


def request_bytes(entry: HarEntry) -> bytes:
    """The request body as bytes (binary bodies are marked with ``postData._encoding``)."""
    post = entry["request"].get("postData", {})
    text = post.get("text", "")
    if post.get("_encoding") == "base64":
        return base64.b64decode(text)
    return str(text).encode("utf-8")


def request_json(entry: HarEntry) -> Any:
    """The request body parsed as JSON; raises ValueError when it is not JSON."""
    return json.loads(request_bytes(entry))


def response_json(entry: HarEntry) -> Any:
    """The response body parsed as JSON; raises ValueError when it is not JSON."""
    return json.loads(response_bytes(entry))


@dataclass(frozen=True)
class MultipartField:
    """One part of a multipart/form-data request body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def multipart_fields(entry: HarEntry) -> dict[str, MultipartField]:
    """The parts of a multipart/form-data request, by field name."""
    mime = entry["request"]["postData"]["mimeType"]
    boundary = mime.split("boundary=", 1)[1].split(";", 1)[0].strip('"').encode()
    fields: dict[str, MultipartField] = {}
    for part in request_bytes(entry).split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        params = {}
        for item in headers.get("content-disposition", "").split(";")[1:]:
            key, _, value = item.strip().partition("=")
            params[key] = value.strip('"')
        name = params["name"]
        data = body.removesuffix(b"\r\n")
        fields[name] = MultipartField(name, params.get("filename"), headers.get("content-type"), data)
    return fields
