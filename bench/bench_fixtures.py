"""Overhead of the pytest plugin's fixtures: session start-up of a replay server and the per-test reset, run by hand.

Baselines, measured the same way in the same run:

- start-up: a bare Starlette app with one no-op route on uvicorn in a thread (same socket binding, same
  readiness wait), i.e. the server stack alone, against ``ComfyServers.get()`` (what ``comfy_server`` does:
  folders, cassette load, engine, uvicorn thread);
- reset: an httpx round-trip to the bare app's no-op route, against ``ComfyHandle.reset()`` (admin POST
  /__cassettes__/reset plus emptying the three folders), what the ``comfy`` fixture does before each test;
- per test, end to end: pytest runs of N and 2N tests that take ``comfy`` against the same with tests that
  take nothing (subprocesses; the marginal difference is what a user pays per test).

    /work/main/.venv/bin/python bench/bench_fixtures.py [--runs 15] [--resets 2000] [--tests 500]

Not a test: prints medians, ratios and the targets (start-up under 0.5 s, reset about 1 ms).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from comfy_cassettes.cassette import load as cassette_io
from comfy_cassettes.pytest_servers import ComfyServers, Settings
from comfy_cassettes.replay.config import DEFAULT_CASSETTE
from comfy_cassettes.replay.server import bind_socket

START_TARGET = 0.5
RESET_TARGET = 0.001


class BareServer:
    """The baseline: uvicorn + Starlette with one no-op route, started and stopped like ReplayServer."""

    def __init__(self) -> None:
        async def noop(request: Request) -> Response:
            return Response(b"{}", media_type="application/json")

        app = Starlette(routes=[Route("/noop", noop, methods=["GET", "POST"])])
        self.socket = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def start(self) -> BareServer:
        self._thread.start()
        while not self._server.started:
            self._thread.join(0.002)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self.socket.close()


class Folders:
    """Stands in for pytest's tmp_path_factory: numbered folders under one temporary root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


def settings() -> Settings:
    return Settings(cassettes=(DEFAULT_CASSETTE,), env_var="COMFYUI_URL")


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def startup(runs: int, root: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    """Start and stop seconds of the fixture's server and of the bare baseline, alternating."""
    ours_start, ours_stop, bare_start, bare_stop = [], [], [], []
    for _ in range(runs):
        servers = ComfyServers(settings(), Folders(root))  # type: ignore[arg-type]
        ours_start.append(timed(servers.get))
        ours_stop.append(timed(servers.close))
        bare = BareServer()
        bare_start.append(timed(bare.start))
        bare_stop.append(timed(bare.stop))
    return ours_start, ours_stop, bare_start, bare_stop


def resets(count: int, root: Path) -> tuple[list[float], list[float]]:
    """Seconds per ComfyHandle.reset() and per no-op round-trip to the bare app."""
    servers = ComfyServers(settings(), Folders(root))  # type: ignore[arg-type]
    handle = servers.get()
    bare = BareServer().start()
    try:
        with httpx.Client(base_url=bare.url) as client:
            for _ in range(50):  # warm both connections
                handle.reset()
                client.post("/noop")
            ours = [timed(handle.reset) for _ in range(count)]
            baseline = [timed(lambda: client.post("/noop")) for _ in range(count)]
    finally:
        servers.close()
        bare.stop()
    return ours, baseline


def per_test(count: int, root: Path) -> tuple[float, float]:
    """Seconds per test of ``comfy`` and of a bare test, one-off start-up and teardown cancelled out.

    Each kind runs with ``count`` and ``2 * count`` tests; the difference over ``count`` is the marginal cost
    (median of three pairs: a pytest subprocess start varies by tens of milliseconds).
    """
    suite = root / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider -q\n")

    def run(fixture: str, n: int) -> float:
        name = f"test_{fixture or 'bare'}_{n}.py"
        (suite / name).write_text("".join(f"\ndef test_{i}({fixture}):\n    pass\n" for i in range(n)))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", name], cwd=suite, check=True, capture_output=True)
        return time.perf_counter() - start

    run("", count)  # warm the file system caches
    comfy = statistics.median((run("comfy", 2 * count) - run("comfy", count)) / count for _ in range(3))
    bare = statistics.median((run("", 2 * count) - run("", count)) / count for _ in range(3))
    return comfy, bare


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="server start-ups to time (each kind)")
    parser.add_argument("--resets", type=int, default=2000, help="resets and baseline round-trips to time")
    parser.add_argument("--tests", type=int, default=500, help="tests in the smaller pytest run of the end-to-end figure")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fixtures-"))
    try:
        ours_start, ours_stop, bare_start, bare_stop = startup(args.runs, root)
        ours_reset, bare_reset = resets(args.resets, root)
        load = [timed(lambda: cassette_io.load(DEFAULT_CASSETTE)) for _ in range(args.runs)]
        with_comfy, without = per_test(args.tests, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    median = statistics.median
    print(f"session start-up, median of {args.runs} (cassette {DEFAULT_CASSETTE.name}):")
    print(f"  comfy_server (ComfyServers.get)   {ms(median(ours_start))}   min {ms(min(ours_start))}  max {ms(max(ours_start))}")
    print(f"  bare uvicorn+Starlette baseline   {ms(median(bare_start))}   min {ms(min(bare_start))}  max {ms(max(bare_start))}")
    print(f"  ratio {median(ours_start) / median(bare_start):.2f}x   target < {START_TARGET * 1000:.0f} ms: "
          f"{'met' if median(ours_start) < START_TARGET else 'MISSED'}")
    print(f"  of which loading {DEFAULT_CASSETTE.name}: {ms(median(load))}")
    print(f"session teardown (stop + folders removed): {ms(median(ours_stop))}   baseline stop {ms(median(bare_stop))}")
    print(f"per-test reset, median of {args.resets}:")
    print(f"  ComfyHandle.reset()               {ms(median(ours_reset))}   p95 {ms(sorted(ours_reset)[int(0.95 * len(ours_reset))])}")
    print(f"  httpx round-trip to a no-op route {ms(median(bare_reset))}   p95 {ms(sorted(bare_reset)[int(0.95 * len(bare_reset))])}")
    print(f"  ratio {median(ours_reset) / median(bare_reset):.2f}x   target ~{RESET_TARGET * 1000:.0f} ms: "
          f"{'met' if median(ours_reset) < 2 * RESET_TARGET else 'MISSED'}")
    print(f"end to end, marginal cost per test in a pytest run ({args.tests} vs {2 * args.tests} tests):")
    print(f"  test using comfy {ms(with_comfy)}   bare test {ms(without)}   => the fixture adds {ms(with_comfy - without)}")
    print(textwrap.dedent(f"""\
        python {sys.version.split()[0]}, {sys.platform}; the bare baseline shares the machine and the run."""))


if __name__ == "__main__":
    main()
