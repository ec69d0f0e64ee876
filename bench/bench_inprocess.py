"""CPU per job of the replay app called in-process, against the bench's bare Starlette app, run by hand.

No sockets and no uvicorn: each job is bench_throughput.py's lifecycle (POST /prompt of EmptyImage -> SaveImage
with a new ``color``, GET /history/{id} until present, GET /view) sent as ASGI messages straight into the app.
What remains is the CPU the replay itself spends per job, the part issue 20's throughput and per-request goals
are short by. Process CPU time (not wall time), rounds interleaved with the bare app, medians: the ratio holds
on a busy machine where the socket benchmarks' do not.

    .venv/bin/python bench/bench_inprocess.py [--jobs 3000] [--rounds 5] [--dynamic] [--profile FILE]

``--profile FILE``: also write a cProfile of the replay's rounds (``python -m pstats FILE``) and print its top.
``--dynamic`` writes each job's output: on ext4 creating a file costs from 20 us to over 1 ms depending on how many
files other processes deleted lately (the kernel's recently-deleted inode scan), so the system-time part is printed
apart and ``TMPDIR=/dev/shm`` gives a steady figure.
Not a test: prints figures and the ratio, exits 0 unless a lifecycle fails.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_throughput as throughput

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
HEADERS = [(b"host", b"127.0.0.1:8188"), (b"user-agent", b"bench"), (b"accept", b"*/*")]


async def call(app: App, method: str, path: str, query: str = "", body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP exchange through ``app``: its status and body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [*HEADERS, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8188), "state": {},
    }
    delivered = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away mid-answer
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


async def lifecycles(app: App, jobs: int, first_color: int) -> int:
    """``jobs`` lifecycles; returns how many /history polls found the job unfinished."""
    misses = 0
    for color in range(first_color, first_color + jobs):
        workflow = {**throughput.WORKFLOW, "1": {**throughput.WORKFLOW["1"], "inputs": {**throughput.WORKFLOW["1"]["inputs"], "color": color}}}
        status, body = await call(app, "POST", "/prompt", body=json.dumps({"prompt": workflow, "client_id": "bench"}).encode())
        if status != 200:
            raise RuntimeError(f"POST /prompt -> {status}: {body[:200]!r}")
        prompt_id = json.loads(body)["prompt_id"]
        await asyncio.sleep(0)  # the client's round trip: one loop pass
        while True:
            status, body = await call(app, "GET", f"/history/{prompt_id}")
            entry = json.loads(body).get(prompt_id)
            if entry:
                break
            misses += 1
            await asyncio.sleep(0)
        image = entry["outputs"]["2"]["images"][0]
        status, body = await call(app, "GET", "/view", urlencode({k: image[k] for k in ("filename", "subfolder", "type")}))
        if status != 200 or not body.startswith(throughput.PNG_SIGNATURE):
            raise RuntimeError(f"GET /view {image} -> {status}")
    return misses


async def started(app: App) -> Callable[[], Awaitable[None]]:
    """Run ``app``'s lifespan startup; returns the coroutine function that shuts it down."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    ready, done = asyncio.Event(), asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        (ready if message["type"].startswith("lifespan.startup") else done).set()

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    await ready.wait()

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 5)

    return stop


async def measure(args: argparse.Namespace, output_dir: Path) -> int:
    from comfy_cassettes.replay.config import ReplayConfig
    from comfy_cassettes.replay.http.app import create_app
    from comfy_cassettes.replay.server import build_engine, collect_as_a_server

    config = ReplayConfig(timing="instant", port=0, dynamic=args.dynamic, output_dir=output_dir if args.dynamic else None)
    engine = build_engine(config)
    replay, bare = create_app(engine), throughput.bare_app()
    stops = [await started(replay), await started(bare)]
    try:
        await lifecycles(replay, 200, 1)  # warm: caches, first-use imports
        await lifecycles(bare, 200, 1)
        collect_as_a_server()  # the garbage collector as `serve` sets it (full collections walk the growing history)
        profile = cProfile.Profile() if args.profile else None
        ours: list[float] = []
        theirs: list[float] = []
        system = 0.0
        misses = 0
        per_round = args.jobs // args.rounds
        for index in range(args.rounds):
            began, began_system = time.process_time(), os.times().system
            if profile is not None:
                profile.enable()
            misses += await lifecycles(replay, per_round, 1000 + index * per_round)
            if profile is not None:
                profile.disable()
            ours.append((time.process_time() - began) / per_round)
            system += os.times().system - began_system
            began = time.process_time()
            await lifecycles(bare, per_round, 1)
            theirs.append((time.process_time() - began) / per_round)
    finally:
        for stop in stops:
            await stop()
    mode = "dynamic" if args.dynamic else "static"
    replay_us, bare_us = statistics.median(ours) * 1e6, statistics.median(theirs) * 1e6
    print(f"in-process CPU per job ({mode}, {args.rounds} x {per_round} jobs, median): replay {replay_us:.1f} us, "
          f"bare {bare_us:.1f} us, ratio {replay_us / bare_us:.2f}; unfinished polls/job {misses / (per_round * args.rounds):.2f}; "
          f"replay system time {system / (per_round * args.rounds) * 1e6:.1f} us/job")
    if profile is not None:
        profile.dump_stats(args.profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dynamic", action="store_true", help="dynamic mode: outputs written to a temporary folder")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the replay's rounds into FILE")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner: Any = asyncio.run
    else:
        runner = uvloop.run
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as folder:
        return int(runner(measure(args, Path(folder))))


if __name__ == "__main__":
    raise SystemExit(main())
