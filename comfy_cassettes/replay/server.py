"""Runs the replay app on uvicorn: in the foreground for the CLI, or in a thread for tests and the pytest plugin."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
import uvicorn.config
import uvicorn.logging

from ..console import drain as drain_console, unblock as unblock_console
from ..cassette import load as cassette_io
from ..errors import ConfigError
from ..listening import bind_socket
from .http.app import create_app
from .http.limits import BoundedHeadersProtocol
from .config import ReplayConfig, served_base
from .sim.engine import ReplayEngine

T = TypeVar("T")
SHUTDOWN_LIMIT = 8.0  # seconds `serve` may take to stop once signalled before it exits regardless
# `serve` runs the cyclic GC's full collections after this many middle ones (CPython's default: 10); see run().
FULL_COLLECTION_THRESHOLD = 100


def log_to_console(level: str | int | None) -> None:
    """The replay's own log lines (a refused prompt's ``invalid prompt: ...``, as ComfyUI logs it) on the console
    beside uvicorn's, in its format and at the same level (``serve --log-level``). Only ``serve`` does this: under
    pytest they go to the root logger, which the test's report shows. Every console line, uvicorn's too, is
    written by a thread of its own (console.py): a pipe nobody reads must never stop the event loop."""
    logger = logging.getLogger("comfy_cassettes")
    if not logger.handlers:  # (a second run() in one process has it already)
        handler = logging.StreamHandler()
        handler.setFormatter(uvicorn.logging.DefaultFormatter("%(levelprefix)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(uvicorn.config.LOG_LEVELS.get(level, logging.WARNING) if isinstance(level, str) else level or logging.WARNING)
        logger.propagate = False
    for name in ("comfy_cassettes", "uvicorn", "uvicorn.error", "uvicorn.access"):
        unblock_console(logging.getLogger(name))


def build_engine(config: ReplayConfig) -> ReplayEngine:
    """Validate the config and load its cassettes and base (errors name the file and key)."""
    config = config.validated()
    cassettes = [cassette_io.load(path) for path in config.cassettes]
    base_path = served_base(cassettes, config)
    base = cassette_io.load(base_path) if base_path is not None and base_path not in config.cassettes else None
    return ReplayEngine(config, cassettes, base=base)


class ReplayServer:
    """A replay server on a real socket.

    Usage::

        with ReplayServer(ReplayConfig(port=0)) as server:
            httpx.get(server.url + "/system_stats")
    """

    def __init__(self, config: ReplayConfig, *, log_level: str = "warning") -> None:
        config = config.validated()
        # The port first: a busy port must not leave the engine's temporary folders behind.
        self.socket = bind_socket(config.host, config.port)
        try:
            self.engine = build_engine(config)
        except BaseException:
            self.socket.close()
            raise
        self.config = self.engine.config
        self.port: int = self.socket.getsockname()[1]
        # No access log unless it would be shown, and no X-Forwarded-For rewriting (aiohttp does neither for
        # ComfyUI): both cost time on every request.
        uv_config = uvicorn.Config(
            create_app(self.engine), log_level=log_level, lifespan="on", server_header=False,
            ws="websockets-sansio", ws_max_size=16 * 1024 * 1024, timeout_graceful_shutdown=2,
            # Like aiohttp under ComfyUI: no server pings (uvicorn's cut clients that answer them late) and
            # idle keep-alive connections kept 75 s.
            ws_ping_interval=None, ws_ping_timeout=None, timeout_keep_alive=75, http=BoundedHeadersProtocol,
            access_log=log_level in ("info", "debug", "trace"), proxy_headers=False,
        )
        self._server = _Server(uv_config)
        self.engine.faults.listener = UvicornListener(self._server, self.config.host, self.port)
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()  # run() returned
        self._ready_error: ConfigError | None = None  # what on_ready raised: run() raises it once the server stopped

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in the foreground until Ctrl-C; ``on_ready`` is called (from another thread) once it serves."""
        collect_as_a_server()
        log_to_console(self._server.config.log_level)
        if on_ready is not None:
            threading.Thread(target=self._when_started, args=(on_ready,), daemon=True, name="comfy-cassettes-ready").start()
        threading.Thread(target=self._exit_when_stuck, daemon=True, name="comfy-cassettes-shutdown").start()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._finished.set()
            self._server.exiting.set()  # (a server that failed to start was never asked to stop: the thread ends)
            self.socket.close()
            self.engine.remove_owned_dirs()
            drain_console()
        if self._ready_error is not None:
            raise self._ready_error

    def _exit_when_stuck(self) -> None:
        """Bound the shutdown a signal asks for: past SHUTDOWN_LIMIT seconds (a client that never lets go, a
        loop kept busy), remove the folders and end the process anyway. Asleep until then: a thread that woke to
        look would take the interpreter from the event loop each time."""
        self._server.exiting.wait()
        if self._finished.wait(SHUTDOWN_LIMIT):
            return
        self.engine.remove_owned_dirs()
        sys.stderr.write(f"comfy-cassettes: the server did not stop within {SHUTDOWN_LIMIT:g} s; exiting anyway\n")
        sys.stderr.flush()
        os._exit(1)

    def _when_started(self, on_ready: Callable[[], None]) -> None:
        while not self._server.started:
            if self._server.should_exit:
                return
            time.sleep(0.002)
        try:
            on_ready()
        except ConfigError as exc:  # e.g. the ready file cannot be written: stop, and run() raises it
            self._ready_error = exc
            self._server.should_exit = True

    def start(self) -> ReplayServer:
        """Serve in a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True, name="comfy-cassettes-server")
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise ConfigError("the replay server stopped while starting; see the log above")
            self._thread.join(0.002)
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coroutine`` on the server's event loop (where the engine lives) and return its result."""
        loop = self.engine.loop
        if loop is None or not loop.is_running():
            coroutine.close()
            raise ConfigError("the replay server is not running")
        # A task and a lock rather than run_coroutine_threadsafe's concurrent Future: the fixtures call this before
        # every test, and the Future's condition and callbacks cost a fifth of an idle call's round trip.
        done = threading.Lock()
        done.acquire()
        task: list[asyncio.Task[T]] = []

        def start() -> None:
            task.append(loop.create_task(coroutine))
            task[0].add_done_callback(lambda _: done.release())

        loop.call_soon_threadsafe(start)
        if not done.acquire(timeout=timeout):
            raise TimeoutError(f"the replay server did not answer within {timeout:g} s")
        return task[0].result()

    def end_down(self) -> bool:
        """End a down period early (connections are accepted again at once); False when the server was not down."""
        return self.call(self.engine.faults.end_down())

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.socket.close()
        self.engine.remove_owned_dirs()  # also when the server never started

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class _Server(uvicorn.Server):
    """uvicorn's Server, whose ``should_exit`` (set by its signal handlers, and by this module) is also an Event a
    thread can wait on."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.exiting = threading.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self.exiting.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self.exiting.set()
        else:
            self.exiting.clear()


class UvicornListener:
    """Listener for a uvicorn.Server serving on one socket: closes and reopens the listening socket on the
    same address, and aborts connections through uvicorn's ``server_state``."""

    def __init__(self, server: Any, host: str, port: int, *, backlog: int = 2048) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.backlog = backlog
        self._factory: Any = None

    def _connections(self) -> list[Any]:
        state = getattr(self.server, "server_state", None)
        return list(getattr(state, "connections", ()))

    def _find(self, client: tuple[str, int] | None) -> Any:
        if client is None:
            return None
        return next((c for c in self._connections() if tuple(getattr(c, "client", None) or ()) == tuple(client)), None)

    def drop(self, client: tuple[str, int] | None) -> bool:
        connection = self._find(client)
        if connection is None:
            return False
        connection.transport.abort()
        return True

    def connected(self, client: tuple[str, int] | None) -> bool:
        return self._find(client) is not None

    def drop_all(self, keep: tuple[str, int] | None = None) -> None:
        for connection in self._connections():
            transport = getattr(connection, "transport", None)
            if transport is not None and (keep is None or tuple(getattr(connection, "client", None) or ()) != tuple(keep)):
                transport.abort()

    def stop_listening(self) -> None:
        for listening in getattr(self.server, "servers", []):
            # uvicorn builds its protocol factory inside startup(); keep it to listen again.
            self._factory = self._factory or getattr(listening, "_protocol_factory", None)
            listening.close()

    async def listen_again(self) -> None:
        factory = self._factory or self._rebuilt_factory()
        sock = bind_socket(self.host, self.port, backlog=self.backlog)
        listening = await asyncio.get_running_loop().create_server(factory, sock=sock, backlog=self.backlog)
        self.server.servers = [listening]

    def _rebuilt_factory(self) -> Any:
        """What uvicorn's startup() passes to create_server, when the closed server did not keep it."""
        config = self.server.config
        return functools.partial(
            config.http_protocol_class, config=config, server_state=self.server.server_state, app_state=self.server.lifespan.state
        )


def collect_as_a_server() -> None:
    """The process is the server's (``serve``), so what it holds by now (the modules, the engine, its cassettes)
    lives as long as it does: frozen out of the cyclic garbage collector, which otherwise walked all of it again
    in every full collection. Those come ten times less often too: the history grows by design, and each one
    walked all of it (68 ms, a third of the collector's time, three times in 10,000 jobs) to find nothing; the
    cycles a request leaves are collected young. (bench/bench_inprocess.py measures with the same settings.) The
    collector is on from here: `serve` started without it (cli.main)."""
    gc.freeze()
    gc.enable()
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_COLLECTION_THRESHOLD))
