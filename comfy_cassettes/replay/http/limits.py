"""How much one request may send: ComfyUI's body limit (aiohttp's ``client_max_size``, 413 past it) and a cap on
the request line and headers, which aiohttp bounds per line and uvicorn's httptools parser does not at all; and the
answer's head written with its body, one socket write where uvicorn makes two (a tenth of the server's CPU)."""

from __future__ import annotations

from typing import Any

from starlette.responses import PlainTextResponse, Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ...comfy.protocol import FEATURES

MAX_BODY: int = FEATURES["max_upload_size"]  # ComfyUI's default --max-upload-size, 100 MiB
MAX_HEADER_BYTES = 1 << 20  # the request line and headers together; a browser sends a few kB

class BodyTooLarge(Exception):
    """Raised by a request's ``receive`` once its body passes MAX_BODY (a body sent without Content-Length)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"request body over {MAX_BODY} bytes")
        self.size = size

def too_large(size: int) -> Response:
    """aiohttp's HTTPRequestEntityTooLarge, as ComfyUI answers it."""
    return PlainTextResponse(f"Maximum request body size {MAX_BODY} exceeded, actual body size {size}", 413)

class BoundedHeadersProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 400 and closing once a request's line and headers pass
    MAX_HEADER_BYTES (the parser would otherwise buffer a 64 MB header whole), and writing each answer's head with
    its body (HeadWithBody)."""

    _header_bytes = 0
    _in_headers = True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes, self._in_headers = 0, True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle is not None and self.scope["method"] != "HEAD":
            cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            end = data.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else end
            if self._header_bytes > MAX_HEADER_BYTES:
                self.send_400_response(f"Request line and headers over {MAX_HEADER_BYTES} bytes")
                return
        super().data_received(data)


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # what uvicorn writes before a body it was asked to wait for


class HeadWithBody:
    """A connection's transport as one response's uvicorn cycle sees it: the status line and headers it writes are
    held and go out with the body's first bytes, one write (one send, one segment) instead of two. A HEAD answer,
    which has no body write, is not given one; ``close`` sends what is held first."""

    __slots__ = ("_transport", "_head", "_done")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._done = False

    def write(self, data: bytes) -> None:
        if self._done or data == _CONTINUE:
            self._transport.write(data)
        elif self._head is None:
            self._head = data
        else:
            self._done = True
            self._transport.write(self._head + data)
            self._head = None

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._done = True
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
