"""Hostile and heavy use of a real server (issue 21): shutdown under load, clients that stop reading, alias
bombs, odd names, full disks, size limits, the admin API's Host/Origin rule. Every test bounds its time and the
server's memory."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from comfy_cassettes.cassette import load as cassette_io
from helpers import bundled

CLI = [sys.executable, "-m", "comfy_cassettes"]
MEMORY_CAP = 2 << 30  # bytes of address space a served subprocess may take


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def serve(tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`serve` in a subprocess with its own TMPDIR (its temporary folders are created there) and capped memory."""
    tmp.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([*CLI, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TMPDIR": str(tmp), **(env or {})}, preexec_fn=_cap_memory)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return process, match.group(1)
    process.wait(10)
    raise AssertionError(f"serve did not start (exit {process.returncode})")


@functools.lru_cache(maxsize=1)
def workflow() -> dict[str, Any]:
    """The bundled txt2img prompt: 120 kB of /ws frames (previews) each time it runs uncached."""
    return dict(cassette_io.load(bundled("txt2img")).jobs[0].workflow)


def flood(http: httpx.Client, client_id: str, jobs: int) -> None:
    """Queue ``jobs`` uncached runs of txt2img for ``client_id`` (POST /free drops the cache between them)."""
    for _ in range(jobs):
        assert http.post("/free", json={"free_memory": True}).status_code == 200
        assert http.post("/prompt", json={"prompt": workflow(), "client_id": client_id}).status_code == 200


def connection_ends(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (what it sent meanwhile is read and dropped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(1 << 20) == b"":
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    return False


def stalled_socket(url: str, client_id: str) -> socket.socket:
    """A /ws client that completes the handshake and then never reads again, with a tiny receive buffer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in sock.recv(4096)
    return sock


# ---------------------------------------------------------------- 3: SIGTERM under load


def test_sigterm_under_load_stops_quickly_and_removes_the_folders(tmp_path: Path) -> None:
    process, url = serve(tmp_path / "tmp", "--timing", "recorded")
    sockets = []
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            for i in range(32):
                sockets.append(stalled_socket(url, f"stalled-{i}"))
                flood(http, f"stalled-{i}", 2)
        assert any((tmp_path / "tmp").iterdir())  # the server's output/input/temp/user folders
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
        took = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert took < 6, f"SIGTERM took {took:.1f} s"
    assert not list((tmp_path / "tmp").iterdir()), "the server's folders were left behind"


# ---------------------------------------------------------------- 4: a client that stops reading


def test_a_client_that_stops_reading_delays_nobody_and_is_cut(tmp_path: Path) -> None:
    process, url = serve(tmp_path / "tmp", env={"COMFY_CASSETTES_WS_SEND_TIMEOUT": "0.5"})
    stalled = None
    try:
        stalled = stalled_socket(url, "stuck")
        with httpx.Client(base_url=url, timeout=5) as http, connect(url.replace("http", "ws") + "/ws?clientId=reader") as reader:
            flood(http, "stuck", 60)  # 7 MB of frames: more than the stuck socket's buffers hold
            started = time.monotonic()
            prompt_id = http.post("/prompt", json={"prompt": workflow(), "client_id": "reader"}).json()["prompt_id"]
            while True:
                message = reader.recv(timeout=3)
                if isinstance(message, str):
                    event = json.loads(message)
                    if event["type"] == "executing" and event["data"].get("node") is None and event["data"].get("prompt_id") == prompt_id:
                        break
            took = time.monotonic() - started
        ended = connection_ends(stalled, 3)  # cut, not kept open silently
    finally:
        if stalled is not None:
            stalled.close()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert took < 1.0, f"the reading client's job took {took:.2f} s"
    assert ended, "the stalled client's socket was left open"
