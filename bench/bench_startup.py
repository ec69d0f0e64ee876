"""Start-up time of `comfy-cassettes serve`: process start to the first 200 from GET /system_stats, run by hand.

The baseline, measured the same way in the same run, is the bare uvicorn+Starlette app of bench_throughput.py
started as a subprocess (`bench_throughput.py serve-bare`): the cost of Python plus the server stack alone.
Other servers (the seeds' FastAPI mock, another checkout) join the same interleaved rounds with ``--also``.

    /work/main/.venv/bin/python bench/bench_startup.py [--runs 10] [--cassette PATH ...]
        [--also 'seed mock=/work/ext/perfpy/bin/python ../shared/tools/perf/seedmock.py --port {port}']

The package's bytecode is compiled first, as pip does when it installs the wheel: an editable checkout run with
PYTHONDONTWRITEBYTECODE set (as on the shared machines) otherwise compiles its ~80 modules at every start
(``--no-compile`` measures that). After the first 200 it times the first POST /prompt (the bundled cassette's
EmptyImage -> SaveImage graph) and the first GET /object_info, which a test pays once.

Not a test: prints the median (and min/max) of each and the ratios. Every server started is stopped.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_throughput import HOST, WORKFLOW, Server, bare_command, free_port, serve_command

TARGET_RATIO = 1.5  # issue 20: start-up at most 1.5 times the bare stack's, and below the seeds' mock
PACKAGE = Path(__file__).resolve().parent.parent / "comfy_cassettes"


@dataclass
class Figures:
    """One server's figures over the runs."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    first_prompt: list[float] = field(default_factory=list)
    first_object_info: list[float] = field(default_factory=list)


def exchange(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection; the whole answer is read."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(1 << 20):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), time.perf_counter() - started


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS"))


def time_startup(name: str, argv_for_port: Callable[[int], list[str]], figures: Figures) -> None:
    """One start: wall and CPU to the first 200, RSS then, and the first POST /prompt and GET /object_info."""
    port = free_port()
    server = Server(name, argv_for_port(port), port).start()
    try:
        figures.wall.append(server.wait_ready(interval=0.001))
        figures.cpu.append(server.cpu_seconds())
        assert server.process is not None
        figures.rss.append(rss_mib(server.process.pid))
        prompt = json.dumps({"prompt": WORKFLOW, "client_id": "bench-startup"}).encode()
        status, seconds = exchange(port, "POST", "/prompt", prompt)
        if status == 200:
            figures.first_prompt.append(seconds)
        status, seconds = exchange(port, "GET", "/object_info")
        if status == 200:
            figures.first_object_info.append(seconds)
    finally:
        server.stop()


def summary(timings: Sequence[float], scale: float = 1000) -> str:
    if not timings:
        return "-"
    return f"{statistics.median(timings) * scale:.0f} ({min(timings) * scale:.0f}-{max(timings) * scale:.0f})"


def also(spec: str) -> tuple[str, Callable[[int], list[str]]]:
    """'NAME=COMMAND with {port}' as a server to start."""
    name, _, command = spec.partition("=")
    if not command or "{port}" not in command:
        raise SystemExit(f"--also {spec!r}: expected NAME=COMMAND, the command with {{port}} in it")
    return name, lambda port: shlex.split(command.replace("{port}", str(port)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cassette", action="append", default=[], help="serve these instead of the bundled default")
    parser.add_argument("--also", action="append", default=[], help="NAME=COMMAND (with {port}): another server to time")
    parser.add_argument("--no-compile", action="store_true", help="leave the package's bytecode as it is")
    args = parser.parse_args(argv)

    if not args.no_compile:
        compileall.compile_dir(PACKAGE, quiet=1)
    load = os.getloadavg()[0]
    print(f"start-up: process start -> first 200 from GET /system_stats (polled every 1 ms), median (min-max) of {args.runs} runs")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load:.2f}"
          + ("  (other work is running: figures are noisy)" if load > 0.5 else "")
          + ("; bytecode as found" if args.no_compile else "; package bytecode compiled first"))
    setups: list[tuple[str, Callable[[int], list[str]]]] = [
        ("bare uvicorn+Starlette", bare_command),
        *(also(spec) for spec in args.also),
        ("comfy-cassettes serve", lambda port: serve_command(port, *args.cassette)),
    ]
    figures = {name: Figures() for name, _ in setups}
    # Interleaved, so a burst of other load on the machine hits every server alike.
    for _ in range(args.runs):
        for name, argv_for_port in setups:
            time_startup(name, argv_for_port, figures[name])
    print(f"{'server':<24} {'wall ms':>16} {'CPU ms':>16} {'RSS MiB':>10} {'1st POST /prompt ms':>20} {'1st /object_info ms':>20}")
    for name, _ in setups:
        f = figures[name]
        print(f"{name:<24} {summary(f.wall):>16} {summary(f.cpu):>16} {statistics.median(f.rss):>10.1f} "
              f"{summary(f.first_prompt):>20} {summary(f.first_object_info):>20}")
    bare, serve = figures[setups[0][0]], figures[setups[-1][0]]
    for name, _ in setups[:-1]:
        other = figures[name]
        wall, cpu = (statistics.median(getattr(serve, k)) / statistics.median(getattr(other, k)) for k in ("wall", "cpu"))
        print(f"serve / {name}: {wall:.2f} wall, {cpu:.2f} CPU")
    ratio = statistics.median(serve.cpu) / statistics.median(bare.cpu)
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"serve {verdict} the target of {TARGET_RATIO}x the bare stack's start-up (CPU, the figure load moves least)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
