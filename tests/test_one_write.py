"""Each answer's status line and headers go out with its body in one socket write (limits.HeadWithBody): what a
client reads on the wire is unchanged for every shape of answer (a body, none, HEAD, chunked, 100-continue,
pipelined requests, a closing connection)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.server import ReplayServer


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with ReplayServer(ReplayConfig(port=0)) as server:
        yield server.port


def exchange(port: int, request: bytes, expect: int) -> bytes:
    """Send ``request`` raw and read until ``expect`` bytes or the server closes; the Date value blanked."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        received = b""
        while len(received) < expect:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return re.sub(rb"date: [^\r]*", b"date: -", received)


def test_an_answer_with_a_body_arrives_whole(port: int) -> None:
    answer = b"HTTP/1.1 200 OK\r\ndate: -\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}"
    assert exchange(port, b"GET /history/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", len(answer)) == answer


def test_head_chunked_and_empty_answers_keep_their_heads(port: int) -> None:
    head = exchange(port, b"HEAD /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 100)
    assert head == (b"HTTP/1.1 404 Not Found\r\ndate: -\r\nx-comfy-cassettes: unmatched\r\n"
                    b"content-type: application/octet-stream\r\n\r\n")
    chunked = exchange(port, b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 137)
    assert chunked == head.replace(b"\r\n\r\n", b"\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
    empty = b"HTTP/1.1 200 OK\r\ndate: -\r\ncontent-length: 0\r\n\r\n"
    continued = exchange(port, b"POST /history HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
                         len(b"HTTP/1.1 100 Continue\r\n\r\n" + empty))
    assert continued == b"HTTP/1.1 100 Continue\r\n\r\n" + empty


def test_pipelined_and_closing_answers(port: int) -> None:
    one = b"HTTP/1.1 200 OK\r\ndate: -\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}"
    request = b"GET /history/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert exchange(port, request * 2, 2 * len(one)) == one * 2
    crash = exchange(port, b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\n{x}", 1 << 16)
    assert crash.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"connection: close\r\n" in crash
    assert crash.endswith(b"\r\n\r\n500 Internal Server Error\n\nServer got itself in trouble")
