"""Full-lifecycle throughput of `comfy-cassettes serve` against a bare uvicorn+Starlette ceiling, run by hand.

Each of 16 concurrent clients loops POST /prompt -> poll GET /history/{id} until present -> GET /view of the
output. The same loop runs in the same invocation against (1) a bare Starlette app on uvicorn that answers
those three requests from memory, the ceiling of this server stack, and (2) `comfy-cassettes serve` in static
and dynamic mode. Every server is a subprocess on 127.0.0.1 with a free port, stopped before the script ends.

    /work/main/.venv/bin/python bench/bench_throughput.py [--seconds 5] [--warmup 1] [--clients 16] [--rounds 1]

Not a test: prints figures and ratios, exits 0 unless a server fails to start or a lifecycle fails.
This module's top level imports only the standard library, so `serve-bare` (also used by bench_startup.py)
starts the bare server without paying for the client side's imports.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket

import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HOST = "127.0.0.1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TARGET_RATIO = 0.7
# The EmptyImage -> SaveImage graph of the bundled cassette's jobs; only `color` changes per job, so every job
# misses the node cache and gets new output names, yet still replays a recorded job (same graph shape).
WORKFLOW: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
}


# ---------------------------------------------------------------- the bare ceiling (runs in the subprocess)


def tiny_png(width: int = 64, height: int = 64) -> bytes:
    """A solid grey RGB PNG built with zlib only, so the bare server imports nothing beyond its stack."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bare_app() -> Any:
    """POST /prompt, GET /history/{id}, GET /view and GET /system_stats answered from memory, nothing more."""
    import uuid

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    png = tiny_png()
    history: dict[str, bytes] = {}
    numbers = itertools.count()
    json_type = "application/json; charset=utf-8"

    async def post_prompt(request: Request) -> Response:
        body = json.loads(await request.body())
        prompt_id, number = str(uuid.uuid4()), next(numbers)
        image = {"filename": f"ComfyUI_{number + 1:05}_.png", "subfolder": "", "type": "output"}
        entry = {
            "prompt": [number, prompt_id, body.get("prompt"), {"client_id": body.get("client_id")}, ["2"]],
            "outputs": {"2": {"images": [image]}},
            "status": {"status_str": "success", "completed": True, "messages": []},
            "meta": {},
        }
        history[prompt_id] = json.dumps({prompt_id: entry}).encode()
        answer = {"prompt_id": prompt_id, "number": number, "node_errors": {}}
        return Response(json.dumps(answer), media_type=json_type)

    async def get_history(request: Request) -> Response:
        return Response(history.get(request.path_params["prompt_id"], b"{}"), media_type=json_type)

    async def get_view(request: Request) -> Response:
        disposition = f'filename="{request.query_params.get("filename", "")}"'
        return Response(png, media_type="image/png", headers={"Content-Disposition": disposition})

    async def system_stats(request: Request) -> Response:
        return Response(b'{"system": {"os": "posix"}, "devices": []}', media_type=json_type)

    return Starlette(routes=[
        Route("/prompt", post_prompt, methods=["POST"]),
        Route("/history/{prompt_id}", get_history, methods=["GET"]),
        Route("/view", get_view, methods=["GET"]),
        Route("/system_stats", system_stats, methods=["GET"]),
    ])


def serve_bare(port: int) -> None:
    """Run the bare app with the uvicorn settings ReplayServer uses (auto loop/http: uvloop + httptools)."""
    import uvicorn

    uvicorn.run(bare_app(), host=HOST, port=port, log_level="warning", lifespan="on", server_header=False,
                ws="websockets-sansio", timeout_graceful_shutdown=2, access_log=False, proxy_headers=False)


# ---------------------------------------------------------------- starting and stopping servers


def free_port() -> int:
    """A port the kernel says is free right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def probe_status(port: int, timeout: float, path: str = "/system_stats") -> int | None:
    """The status code of one GET on a fresh connection, or None if nothing answers yet."""
    try:
        with socket.create_connection((HOST, port), timeout=max(timeout, 0.001)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None


def bare_command(port: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "serve-bare", "--port", str(port)]


def timing_options(args: argparse.Namespace) -> list[str]:
    return ["--timing", args.timing] if args.timing else []


def serve_command(port: int, *options: str) -> list[str]:
    """`comfy-cassettes serve` through the console script installed next to this interpreter."""
    script = Path(sys.executable).with_name("comfy-cassettes")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "comfy_cassettes"]
    return [*launcher, "serve", "--host", HOST, "--port", str(port), *options]


@dataclass
class Server:
    """A server subprocess; `stop()` sends Ctrl-C (SIGINT), then kills after a grace period."""

    name: str
    argv: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Any = None
    started_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Server:
        self.log = tempfile.TemporaryFile()
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.log)
        return self

    def wait_ready(self, timeout: float = 20.0, interval: float = 0.002) -> float:
        """Seconds from process start to the first 200 from GET /system_stats.

        Probes with a raw socket rather than an HTTP library, so the probe itself takes next to no CPU
        from the starting server (which shares the machine's cores).
        """
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.stderr()}")
            if probe_status(self.port, deadline - time.perf_counter()) == 200:
                return time.perf_counter() - self.started_at
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.stderr()}")

    def stderr(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return str(self.log.read().decode("utf-8", "replace"))

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (Linux; NaN for a server this script did not start).

        /proc/PID/schedstat counts nanoseconds on the CPU; /proc/PID/stat's user+system ticks (10 ms) is the fallback.
        """
        if self.process is None:
            return float("nan")
        try:
            with open(f"/proc/{self.process.pid}/schedstat", "rb") as handle:
                return int(handle.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
        with open(f"/proc/{self.process.pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
            self.log = None


@contextmanager
def running(name: str, argv_for_port: Any) -> Iterator[Server]:
    """Start a server on a free port, wait until it answers, and always stop it."""
    port = free_port()
    server = Server(name, argv_for_port(port), port).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- the load generator


@dataclass
class RunResult:
    """What one timed run measured."""

    name: str
    seconds: float
    jobs: int = 0
    requests: int = 0
    polls: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    requests_ms: dict[str, list[float]] = field(default_factory=dict)  # per request kind, in the timed window
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def percentile(self, q: float) -> float:
        return _percentile(self.latencies, q) * 1000

    def request_percentile(self, kind: str, q: float) -> float:
        return _percentile(self.requests_ms.get(kind, []), q)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on one socket: a few microseconds per request, so the load
    generator's own cost does not hide the server's (httpx.AsyncClient needs ~2 ms of CPU per request here)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status, length, close = int(lines[0].split(b" ", 2)[1]), 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError(f"{method} {target}: chunked answers are not supported by this load generator")
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            await self.aclose()
        return status, data

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


class HttpxConnection:
    """The same interface on a shared httpx.AsyncClient (``--client httpx``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if method == "POST" else None
        answer = await self.client.request(method, target, content=body or None, headers=headers)
        return answer.status_code, answer.content

    async def aclose(self) -> None:
        pass


class AiohttpConnection:
    """The same interface on a shared aiohttp.ClientSession (``--client aiohttp``): the load generator the
    throughput issue measured with (``pip install aiohttp``; not a project dependency)."""

    def __init__(self, session: Any, base: str) -> None:
        self.session, self.base = session, base

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if method == "POST" else None
        async with self.session.request(method, self.base + target, data=body or None, headers=headers) as answer:
            return answer.status, await answer.read()

    async def aclose(self) -> None:
        pass


Connection = Any  # RawConnection | HttpxConnection | AiohttpConnection


REQUEST_KINDS = ("POST /prompt", "GET /history/{id}", "GET /view")


async def lifecycle(conn: Connection, color: int, client_id: str, poll_interval: float,
                    timings: dict[str, list[float]] | None = None) -> tuple[int, int, str, str]:
    """One job: submit, poll its history until present, fetch its first output. Returns (requests, polls,
    prompt_id, output filename); each request's milliseconds go to ``timings`` by kind."""
    workflow = {**WORKFLOW, "1": {**WORKFLOW["1"], "inputs": {**WORKFLOW["1"]["inputs"], "color": color}}}
    clock = time.perf_counter
    if timings is None:
        timings = {}

    async def timed(kind: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        began = clock()
        answer = await conn.request(method, target, body)
        timings.setdefault(kind, []).append((clock() - began) * 1000)
        return answer

    status, body = await timed("POST /prompt", "POST", "/prompt", json.dumps({"prompt": workflow, "client_id": client_id}).encode())
    if status != 200:
        raise RuntimeError(f"POST /prompt -> {status}: {body[:200]!r}")
    prompt_id = json.loads(body)["prompt_id"]
    polls = 0
    while True:
        polls += 1
        status, body = await timed("GET /history/{id}", "GET", f"/history/{prompt_id}")
        entry = json.loads(body).get(prompt_id) if status == 200 else None
        if entry:
            break
        await asyncio.sleep(poll_interval)
    if not entry["status"]["completed"]:
        raise RuntimeError(f"job {prompt_id} ended with {entry['status']}")
    image = entry["outputs"]["2"]["images"][0]
    query = urlencode({"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]})
    status, body = await timed("GET /view", "GET", f"/view?{query}")
    if status != 200 or not body.startswith(PNG_SIGNATURE):
        raise RuntimeError(f"GET /view {image} -> {status}")
    return 2 + polls, polls, prompt_id, f"{image['subfolder']}/{image['filename']}"


async def drive(server: Server, *, clients: int, seconds: float, warmup: float, poll_interval: float, kind: str) -> RunResult:
    """Run `clients` lifecycle loops for warmup + seconds; count the jobs that finish inside the timed window."""
    import httpx

    result = RunResult(server.name, seconds)
    loop = asyncio.get_running_loop()
    colors = itertools.count(1)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    session = None
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), timeout=aiohttp.ClientTimeout(total=30))
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as shared:
        start = loop.time()
        window_start, window_end = start + warmup, start + warmup + seconds
        marks: dict[str, tuple[float, float]] = {}

        async def mark_window() -> None:
            await asyncio.sleep(max(0.0, window_start - loop.time()))
            marks["start"] = (server.cpu_seconds(), time.process_time())
            await asyncio.sleep(max(0.0, window_end - loop.time()))
            marks["end"] = (server.cpu_seconds(), time.process_time())

        async def worker(index: int) -> None:
            client_id = f"bench-{index}"
            conn: Connection = (RawConnection(HOST, server.port) if kind == "raw" else
                                AiohttpConnection(session, server.url) if kind == "aiohttp" else HttpxConnection(shared))
            try:
                while loop.time() < window_end and len(result.errors) < 10:
                    began = loop.time()
                    timings: dict[str, list[float]] = {}
                    try:
                        requests, polls, _, _ = await lifecycle(conn, next(colors) % 0xFFFFFF, client_id, poll_interval, timings)
                    except Exception as exc:  # noqa: BLE001 - reported after the run, the other workers carry on
                        result.errors.append(f"{type(exc).__name__}: {exc}")
                        await conn.aclose()
                        continue
                    finished = loop.time()
                    if window_start <= finished <= window_end:
                        result.jobs += 1
                        result.requests += requests
                        result.polls += polls
                        result.latencies.append(finished - began)
                        for request_kind, values in timings.items():
                            result.requests_ms.setdefault(request_kind, []).extend(values)
            finally:
                await conn.aclose()

        try:
            await asyncio.gather(mark_window(), *(worker(i) for i in range(clients)))
        finally:
            if session is not None:
                await session.close()
    (server_a, client_a), (server_b, client_b) = marks["start"], marks["end"]
    result.server_cpu, result.client_cpu = server_b - server_a, client_b - client_a
    return result


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_loop(coroutine: Any) -> Any:
    """Run on uvloop when available, like the servers, so the load generator stays cheap."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ---------------------------------------------------------------- soak: many clients, many jobs, nothing lost


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def soak(server: Server, output: Path, *, clients: int, jobs: int, poll_interval: float) -> int:
    """``jobs`` lifecycles from ``clients`` concurrent clients against a dynamic-mode server; then every job must be
    in history exactly once with its own output file, and the server's memory is shown as it went."""
    assert server.process is not None
    numbers = iter(range(jobs))
    prompt_ids: list[str] = []
    files: list[str] = []
    errors: list[str] = []
    rss: list[tuple[int, float]] = [(0, rss_mib(server.process.pid))]
    started, cpu = time.perf_counter(), server.cpu_seconds()

    async def worker(index: int) -> None:
        conn = RawConnection(HOST, server.port)
        try:
            for number in numbers:
                try:
                    _, _, prompt_id, filename = await lifecycle(conn, number + 1, f"soak-{index}", poll_interval)
                except Exception as exc:  # noqa: BLE001 - counted and shown after the run
                    errors.append(f"job {number}: {type(exc).__name__}: {exc}")
                    await conn.aclose()
                    continue
                prompt_ids.append(prompt_id)
                files.append(filename)
                if len(prompt_ids) % max(1, jobs // 10) == 0:
                    rss.append((len(prompt_ids), rss_mib(server.process.pid)))  # type: ignore[union-attr]
        finally:
            await conn.aclose()

    await asyncio.gather(*(worker(i) for i in range(clients)))
    seconds, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
    conn = RawConnection(HOST, server.port)
    _, history = await conn.request("GET", "/history")
    _, queue = await conn.request("GET", "/queue")
    await conn.aclose()
    entries = json.loads(history)
    written = sorted(str(p.relative_to(output)) for p in output.rglob("*.png"))
    checks = {
        f"every job answered ({jobs})": len(prompt_ids) == jobs and not errors,
        "no prompt_id handed out twice": len(set(prompt_ids)) == len(prompt_ids),
        # ComfyUI's history keeps the last 10000 prompts (one more while the oldest waits to go).
        f"/history holds the last {min(jobs, 10001)} jobs, completed": len(entries) == min(jobs, 10001)
        and set(entries) <= set(prompt_ids) and all(e["status"]["completed"] for e in entries.values()),
        "no output name given twice": len(set(files)) == len(files),
        "one file on disk per job": len(written) == jobs,
        "queue empty at the end": json.loads(queue) == {"queue_running": [], "queue_pending": []},
    }
    print(f"soak: {jobs} jobs from {clients} clients in {seconds:.1f} s ({jobs / seconds:.0f} jobs/s), "
          f"server CPU {1000 * cpu / jobs:.2f} ms/job")
    for check, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    for error in errors[:5]:
        print(f"    error: {error}")
    print("  server RSS MiB by jobs done: " + ", ".join(f"{n}: {mib:.1f}" for n, mib in rss))
    if len(rss) > 3:
        (n1, m1), (n2, m2) = rss[2], rss[-1]
        print(f"  growth after warm-up: {1024 * (m2 - m1) / max(1, n2 - n1):.2f} KiB per job "
              f"(history and journal keep 10000 entries each, as ComfyUI's history does; flat beyond that)")
    return 0 if all(checks.values()) else 1


# ---------------------------------------------------------------- reporting


def report(rows: Sequence[RunResult], baseline: RunResult) -> None:
    print(f"  {'server':<24} {'jobs/s':>8} {'ratio':>6} {'req/s':>8} {'polls/job':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'srv CPU ms/job':>14} {'srv CPU %':>9} {'loadgen CPU %':>13}")
    for row in rows:
        jobs = max(row.jobs, 1)
        print(f"  {row.name:<24} {row.rate:>8.1f} {row.rate / baseline.rate:>6.2f} {row.requests / row.seconds:>8.0f} "
              f"{row.polls / jobs:>9.2f} {row.percentile(0.5):>7.1f} {row.percentile(0.99):>7.1f} "
              f"{1000 * row.server_cpu / jobs:>14.2f} {100 * row.server_cpu / row.seconds:>9.0f} "
              f"{100 * row.client_cpu / row.seconds:>13.0f}")
        for error in row.errors[:3]:
            print(f"    error: {error}")
    print(f"  request latency, ms (p50 / p99): {'':<4}" + "".join(f"{kind:>24}" for kind in REQUEST_KINDS))
    for row in rows:
        cells = "".join(f"{row.request_percentile(k, 0.5):>12.2f} / {row.request_percentile(k, 0.99):<9.2f}" for k in REQUEST_KINDS)
        print(f"  {row.name:<37}{cells}")


def median_run(runs: Sequence[RunResult]) -> RunResult:
    return sorted(runs, key=lambda r: r.rate)[len(runs) // 2]


def compare(args: argparse.Namespace, kind: str, scratch: Path) -> list[RunResult]:
    """bare, static and dynamic runs with one kind of load generator, `--rounds` times interleaved; prints verdicts."""
    setups: list[tuple[str, str, Any]] = [
        ("bare", "bare uvicorn+Starlette", bare_command),
        ("static", "serve (static)", lambda port: serve_command(port, *timing_options(args))),
        ("dynamic", "serve (dynamic)", None),
    ]
    if args.other:  # another checkout's serve, in the same rounds: before/after figures from one run
        other = [args.other, "serve", "--host", HOST]
        setups += [("other-static", "other serve (static)", lambda port: [*other, "--port", str(port)]),
                   ("other-dynamic", "other serve (dynamic)", "other")]
    only = set(args.only or [key for key, _, _ in setups])
    runs: dict[str, list[RunResult]] = {}
    for round_number in range(args.rounds):
        for key, name, argv_for_port in setups:
            if key not in only:
                continue
            if argv_for_port is None or argv_for_port == "other":
                output = scratch / f"output-{key}-{kind}-{round_number}"
                command = ((lambda port: [*other, "--port", str(port)]) if argv_for_port == "other" else
                           lambda port: serve_command(port, *timing_options(args)))
                argv_for_port = lambda port, output=output, command=command: [  # noqa: E731
                    *command(port), "--disable-static-return", "--output-dir", str(output)]
            with running(name, argv_for_port) as server:
                result = run_loop(drive(server, clients=args.clients, seconds=args.seconds, warmup=args.warmup,
                                        poll_interval=args.poll_interval, kind=kind))
            runs.setdefault(key, []).append(result)
            print(f"  {kind} client, round {round_number + 1}: {name:<24} {result.rate:8.1f} jobs/s"
                  + (f"  ({len(result.errors)} errors)" if result.errors else ""), flush=True)
    rows = [median_run(runs[key]) for key, _, _ in setups if key in runs]
    baseline = median_run(runs["bare"]) if "bare" in runs else rows[0]
    print(f"\n{kind} load generator:")
    report(rows, baseline)
    if "bare" in runs:
        for key in ("static", "dynamic", "other-static", "other-dynamic"):
            if key in runs:
                ratio = median_run(runs[key]).rate / baseline.rate
                verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
                print(f"  {key}: {ratio:.2f} of the bare ceiling, {verdict} the {TARGET_RATIO} target")
    print()
    return [r for rs in runs.values() for r in rs]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    bare = sub.add_parser("serve-bare", help="(internal) run the bare ceiling server in the foreground")
    bare.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed window per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed lead-in per run")
    parser.add_argument("--rounds", type=int, default=1, help="repeat bare/static/dynamic, interleaved; the median is shown")
    parser.add_argument("--poll-interval", type=float, default=0.005, help="sleep between /history polls of one job")
    parser.add_argument("--client", choices=["raw", "aiohttp", "httpx"], action="append",
                        help="load generator(s) (default both): a minimal keep-alive HTTP/1.1 client per worker, "
                             "which leaves the server the bottleneck, or one shared httpx.AsyncClient")
    parser.add_argument("--url", help="drive an already running server on 127.0.0.1 (e.g. one under py-spy) instead")
    parser.add_argument("--only", choices=["bare", "static", "dynamic", "other-static", "other-dynamic"], action="append",
                        help="run only these servers")
    parser.add_argument("--other", metavar="COMFY_CASSETTES",
                        help="also run another checkout's `comfy-cassettes` (its venv's script) in the same rounds")
    parser.add_argument("--timing", choices=["faithful", "floor", "instant", "recorded"],
                        help="this checkout's `serve --timing` (its default when not given; a wrapper given to --other "
                             "adds its own, e.g. /tmp/perf/cc-instant)")
    parser.add_argument("--soak", type=int, metavar="JOBS",
                        help="instead: JOBS lifecycles (e.g. 10000, with --clients 64) against dynamic mode, checking "
                             "none is lost or duplicated and showing the server's memory")
    args = parser.parse_args(argv)
    if args.command == "serve-bare":
        serve_bare(args.port)
        return 0
    if args.soak:
        with tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
            output = Path(scratch) / "output"
            command = lambda port: serve_command(port, "--disable-static-return", "--output-dir", str(output))  # noqa: E731
            with running("serve (dynamic)", command) as server:
                return int(run_loop(soak(server, output, clients=args.clients, jobs=args.soak, poll_interval=args.poll_interval)))

    kinds = args.client or (["aiohttp", "raw"] if _has("aiohttp") else ["raw", "httpx"])
    load = os.getloadavg()[0]
    print(f"full lifecycle (POST /prompt -> poll GET /history/{{id}} -> GET /view), {args.clients} clients, "
          f"{args.seconds:g} s timed after {args.warmup:g} s warm-up, {args.rounds} round(s), "
          f"poll every {args.poll_interval * 1000:g} ms")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load:.2f}"
          + ("  (other work is running: figures are noisy, use --rounds 3)" if load > 0.5 else ""))
    print("the load generator (this process, one uvloop loop) shares those CPUs with the server it measures")
    if args.url:
        port = int(args.url.rsplit(":", 1)[1].rstrip("/"))
        result = run_loop(drive(Server("given server", [], port), clients=args.clients, seconds=args.seconds,
                                warmup=args.warmup, poll_interval=args.poll_interval, kind=kinds[0]))
        report([result], result)
        return 1 if result.errors else 0
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as scratch:
        for kind in kinds:
            results.extend(compare(args, kind, Path(scratch)))
    print("srv CPU ms/job = server process CPU time per completed job, the figure least moved by the shared CPUs; "
          "loadgen CPU % = this process")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
