"""An httpx transport that HTTP mocks cannot see, for the admin client: a test that mocks HTTP (pytest-httpx,
respx, a vcrpy cassette) must still reach its replay server's admin API, and must not find our calls in its mock's
account or its cassette. Those libraries patch httpx's own transports and httpcore's pools; this one speaks
HTTP/1.1 with h11 (httpcore's parser, so always installed with httpx) over a socket of its own. That socket is the C
type's, so a network guard (pytest-recording's --block-network, pytest-socket), which patches the Python ``socket.socket``,
keeps guarding the code under test and never the handle's calls to its own server."""

from __future__ import annotations

import _socket
import contextlib
import socket

import h11
import httpx


class DirectTransport(httpx.BaseTransport):
    """One plain-HTTP request per connection (``Connection: close``); no proxy, no pool. Errors are httpx's own."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        try:
            sock = _connect(request.url.host, request.url.port or 80, timeouts.get("connect"))
        except OSError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        with contextlib.closing(sock):
            sock.settimeout(timeouts.get("read"))
            try:
                return _exchange(sock, request)
            except TimeoutError as error:
                raise httpx.ReadTimeout(str(error), request=request) from error
            except h11.RemoteProtocolError as error:
                raise httpx.RemoteProtocolError(str(error), request=request) from error
            except OSError as error:
                raise httpx.ReadError(str(error), request=request) from error


def _connect(host: str, port: int, timeout: float | None) -> _socket.socket:
    """``socket.create_connection`` on ``_socket.socket``, whose ``connect`` no test patches."""
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as failure:
            sock.close()
            error = failure
    raise error


def _exchange(sock: _socket.socket, request: httpx.Request) -> httpx.Response:
    connection = h11.Connection(h11.CLIENT)
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"] + [(b"Connection", b"close")]
    body = request.read()
    sock.sendall(connection.send(h11.Request(method=request.method, target=request.url.raw_path, headers=headers))
                 + (connection.send(h11.Data(data=body)) if body else b"") + connection.send(h11.EndOfMessage()))
    answer: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            answer = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) and answer is not None:
            return httpx.Response(answer.status_code, headers=answer.headers, content=b"".join(chunks), request=request,
                                  extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason})
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("Server disconnected without sending a response.")
