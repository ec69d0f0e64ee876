"""Plays the client side of a captured session against a server and reports what differs from the capture."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets

from har_util import load_har

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shape(value: Any) -> Any:
    """Keys and value types of a JSON value; ids used as keys are folded so runs can be compared."""
    if isinstance(value, dict):
        return {("<id>" if UUID.fullmatch(str(k)) else k): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return type(value).__name__
    return "str"


def ws_kinds(frames: list[str | bytes]) -> list[str]:
    """The order of message types on one socket (binary frames by their event type)."""
    kinds = []
    for frame in frames:
        if isinstance(frame, bytes):
            kinds.append(f"binary:{int.from_bytes(frame[:4], 'big')}")
        else:
            kinds.append(json.loads(frame).get("type", "?"))
    return kinds


@dataclass
class Step:
    t: float
    kind: str  # "http", "ws_open", "ws_send", "ws_close"
    entry: dict[str, Any]
    socket: int = -1
    received_before: dict[int, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """What the replay saw, next to what the capture saw."""

    http: list[tuple[str, dict[str, Any], httpx.Response | None]] = field(default_factory=list)
    captured_ws: dict[int, list[str | bytes]] = field(default_factory=dict)
    replayed_ws: dict[int, list[str | bytes]] = field(default_factory=dict)


def _steps(har: dict[str, Any]) -> tuple[list[Step], dict[int, list[str | bytes]]]:
    steps: list[Step] = []
    received: list[tuple[float, int]] = []
    captured: dict[int, list[str | bytes]] = {}
    sockets = 0
    for entry in har["log"]["entries"]:
        start = datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()
        if entry.get("_resourceType") == "websocket":
            index = sockets
            sockets += 1
            captured[index] = []
            steps.append(Step(start, "ws_open", entry, index))
            last = start
            for m in entry["_webSocketMessages"]:
                data: str | bytes = base64.b64decode(m["data"]) if m["opcode"] == 2 else m["data"]
                last = m["time"]
                if m["type"] == "send":
                    steps.append(Step(m["time"], "ws_send", {"data": data}, index))
                else:
                    captured[index].append(data)
                    received.append((m["time"], index))
            steps.append(Step(last + entry.get("time", 0) / 1000.0 + 1e-6, "ws_close", entry, index))
        else:
            steps.append(Step(start, "http", entry))
    steps.sort(key=lambda s: s.t)
    for step in steps:
        counts: dict[int, int] = {}
        for t, index in received:
            if t < step.t:
                counts[index] = counts.get(index, 0) + 1
        step.received_before = counts
    # Sockets closed by the client: wait for nothing more than what had arrived when the close was sent.
    return steps, captured


async def replay_session(scenario: str, base_url: str, *, sync_timeout: float = 8.0) -> Outcome:
    """Replay ``scenario``'s client side against ``base_url``; prompt_ids are mapped captured -> replayed."""
    har = load_har(scenario)
    steps, captured = _steps(har)
    outcome = Outcome(captured_ws=captured)
    ids: dict[str, str] = {}
    sockets: dict[int, Any] = {}
    readers: dict[int, asyncio.Task[None]] = {}
    ws_base = base_url.replace("http://", "ws://")

    def remap(text: str) -> str:
        for old, new in ids.items():
            text = text.replace(old, new)
        return text

    async def read(index: int, ws: Any) -> None:
        try:
            async for message in ws:
                outcome.replayed_ws[index].append(message)
        except websockets.ConnectionClosed:
            pass

    async def wait_for(counts: dict[int, int]) -> None:
        deadline = asyncio.get_running_loop().time() + sync_timeout
        while any(len(outcome.replayed_ws.get(i, [])) < n for i, n in counts.items() if i in sockets):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.002)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for step in steps:
            await wait_for(step.received_before)
            if step.kind == "ws_open":
                url = urlsplit(step.entry["request"]["url"])
                outcome.replayed_ws[step.socket] = []
                ws = await websockets.connect(f"{ws_base}{url.path}{'?' + url.query if url.query else ''}", max_size=None)
                sockets[step.socket] = ws
                readers[step.socket] = asyncio.create_task(read(step.socket, ws))
            elif step.kind == "ws_send":
                await sockets[step.socket].send(step.entry["data"])
            elif step.kind == "ws_close":
                await wait_for({step.socket: len(captured[step.socket])})
                await sockets[step.socket].close()
                await readers[step.socket]
            else:
                request = step.entry["request"]
                url = urlsplit(remap(request["url"]))
                post = request.get("postData") or {}
                body: bytes | None = None
                if post:
                    text = post.get("text", "")
                    body = base64.b64decode(text) if post.get("_encoding") == "base64" else remap(text).encode()
                headers = {h["name"]: h["value"] for h in request["headers"] if h["name"].lower() in ("content-type", "origin")}
                if "Origin" in headers:
                    headers["Host"] = next(h["value"] for h in request["headers"] if h["name"] == "Host")
                path = url.path + ("?" + url.query if url.query else "")
                response = await client.request(request["method"], path, content=body, headers=headers)
                captured_json = _json(step.entry["response"]["content"].get("text"))
                if "/history/" in path and captured_json and response.json() == {}:
                    # The captured client polled until the entry appeared (no_client_id): do the same.
                    deadline = asyncio.get_running_loop().time() + sync_timeout
                    while response.json() == {} and asyncio.get_running_loop().time() < deadline:
                        await asyncio.sleep(0.01)
                        response = await client.request(request["method"], path)
                replayed_json = _json(response.text) if response.content[:1] in (b"{", b"[") else None
                learn(captured_json, replayed_json, ids)
                outcome.http.append((f"{request['method']} {path}", step.entry, response))
        for index, ws in sockets.items():
            await ws.close()
            await readers[index]
    return outcome


FILENAME = re.compile(r".+_\d{5}_\.(png|jpg|jpeg|webp)$")


def learn(captured: Any, replayed: Any, ids: dict[str, str]) -> None:
    """Map captured volatile values (prompt_ids, generated file names) to the replayed ones, position by position."""
    if isinstance(captured, dict) and isinstance(replayed, dict):
        for (ck, cv), (rk, rv) in zip(captured.items(), replayed.items()):
            learn(ck, rk, ids)
            learn(cv, rv, ids)
    elif isinstance(captured, list) and isinstance(replayed, list):
        for c, r in zip(captured, replayed):
            learn(c, r, ids)
    elif isinstance(captured, str) and isinstance(replayed, str) and captured != replayed:
        if UUID.fullmatch(captured) or FILENAME.match(captured):
            ids.setdefault(captured, replayed)


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
