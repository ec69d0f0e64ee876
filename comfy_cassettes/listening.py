"""The listening socket both servers start on (``serve`` and ``record --proxy``), bound before their web stack starts
so that a busy port is a one-line error and ``--port 0`` yields the real port."""

from __future__ import annotations

import errno
import socket

from .errors import ConfigError


def bind_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """Bind before starting uvicorn so a busy port is a clear error, and port 0 yields the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use; pick another with --port") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock
