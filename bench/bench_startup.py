"""Start-up time of `comfy-cassettes serve`: process start to the first 200 from GET /system_stats, run by hand.

The baseline, measured the same way in the same run, is the bare uvicorn+Starlette app of bench_throughput.py
started as a subprocess (`bench_throughput.py serve-bare`): the cost of Python plus the server stack alone.

    /work/main/.venv/bin/python bench/bench_startup.py [--runs 10] [--cassette PATH ...]

Not a test: prints the median (and min/max) of each and the ratio. Every server started is stopped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Sequence

from bench_throughput import Server, bare_command, free_port, serve_command

TARGET_SECONDS = 0.5


def time_startup(name: str, argv_for_port: Callable[[int], list[str]]) -> tuple[float, float]:
    """(wall seconds from Popen to the first 200 from /system_stats, CPU seconds the server used by then)."""
    port = free_port()
    server = Server(name, argv_for_port(port), port).start()
    try:
        wall = server.wait_ready(interval=0.001)
        return wall, server.cpu_seconds()
    finally:
        server.stop()


def summary(timings: Sequence[float]) -> str:
    return (f"{statistics.median(timings) * 1000:6.0f} ms  (min {min(timings) * 1000:4.0f}, "
            f"max {max(timings) * 1000:4.0f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cassette", action="append", default=[], help="serve these instead of the bundled default")
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]
    print(f"start-up: process start -> first 200 from GET /system_stats (polled every 1 ms), median of {args.runs} runs")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load:.2f}"
          + ("  (other work is running: figures are noisy)" if load > 0.5 else ""))
    setups: list[tuple[str, Callable[[int], list[str]]]] = [
        ("bare uvicorn+Starlette", bare_command),
        ("comfy-cassettes serve", lambda port: serve_command(port, *args.cassette)),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in setups}
    cpus: dict[str, list[float]] = {name: [] for name, _ in setups}
    # Interleaved, so a burst of other load on the machine hits both alike.
    for _ in range(args.runs):
        for name, argv_for_port in setups:
            wall, cpu = time_startup(name, argv_for_port)
            walls[name].append(wall)
            cpus[name].append(cpu)
    print(f"{'server':<24} {'wall, median':>29} {'server CPU until ready, median':>34}")
    for name, _ in setups:
        print(f"{name:<24} {summary(walls[name]):>29} {summary(cpus[name]):>34}")
    bare, serve = (statistics.median(walls[name]) for name, _ in setups)
    bare_cpu, serve_cpu = (statistics.median(cpus[name]) for name, _ in setups)
    verdict = "meets" if serve < TARGET_SECONDS else "MISSES"
    print(f"serve / bare: {serve / bare:.2f} wall, {serve_cpu / bare_cpu:.2f} CPU; serve {verdict} the "
          f"{TARGET_SECONDS * 1000:.0f} ms target ({(serve - bare) * 1000:.0f} ms above the bare stack)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
