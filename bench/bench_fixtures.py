"""Overhead of the pytest plugin's fixtures: session start-up of a replay server and the per-test reset, run by hand.

Baselines, measured the same way in the same run:

- start-up: a bare Starlette app with one no-op route on uvicorn in a thread (same socket binding, same
  readiness wait), i.e. the server stack alone, against ``ComfyServers.get()`` (what ``comfy_server`` does:
  folders, cassette load, engine, uvicorn thread);
- reset: an httpx round-trip to the bare app's no-op route, against ``ComfyHandle.reset()`` (one call on the
  server's loop: the engine's reset and the folders put back), what the ``comfy`` fixture does before each test;
- per test, end to end: pytest runs of N and 2N tests that take ``comfy`` against the same with tests that
  take nothing (subprocesses; the marginal difference is what a user pays per test);
- per test against pytest-httpserver (``--phases``, when it is installed): pytest runs of tests that each do one
  ComfyUI job as a client does (POST /prompt, GET /history/{id} every 5 ms until it is there, GET /view), with the
  ``comfy`` fixture and with pytest-httpserver answering the same requests; each phase's median (setup, call,
  teardown) in wall and process CPU time, rounds interleaved. ``--before PATH``: also ``comfy`` from another
  checkout (put first on PYTHONPATH) in the same rounds.

    .venv/bin/python bench/bench_fixtures.py [--runs 15] [--resets 2000] [--tests 500]
    .venv/bin/python bench/bench_fixtures.py --phases-only [--rounds 3] [--before /tmp/old-checkout]

Not a test: prints medians, ratios and the targets (start-up under 0.5 s, reset about 1 ms, a ``comfy`` test at
most 1.2x a pytest-httpserver one).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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
PER_TEST_TARGET = 1.2  # a comfy test's total over a pytest-httpserver one's
PHASES = ("setup", "call", "teardown")


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


# The suites of the phase comparison: per-phase wall and process CPU of every test, to a JSON file.
PHASE_CONFTEST = textwrap.dedent('''\
    import json, os, time
    import pytest

    TIMES = {}

    def _timed(item, phase):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return (yield)
        finally:
            TIMES.setdefault(item.nodeid, {}).update({phase: time.perf_counter() - start, phase + "_cpu": time.process_time() - cpu})

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(item):
        return (yield from _timed(item, "setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(item):
        return (yield from _timed(item, "call"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(item):
        return (yield from _timed(item, "teardown"))

    def pytest_sessionfinish(session):
        with open(os.environ["PHASES_OUT"], "w") as out:
            json.dump(list(TIMES.values()), out)
''')
PHASE_CLIENT = textwrap.dedent('''\
    import http.client, json, time
    from urllib.parse import urlencode, urlsplit

    WORKFLOW = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
    }

    def run_job(url, color):
        """POST /prompt, GET /history/{id} every 5 ms until the job is there, GET /view of its image."""
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        workflow = {**WORKFLOW, "1": {**WORKFLOW["1"], "inputs": {**WORKFLOW["1"]["inputs"], "color": color}}}
        conn.request("POST", "/prompt", json.dumps({"prompt": workflow, "client_id": "t"}), {"Content-Type": "application/json"})
        answer = conn.getresponse()
        assert answer.status == 200
        prompt_id = json.loads(answer.read())["prompt_id"]
        while True:
            conn.request("GET", f"/history/{prompt_id}")
            entry = json.loads(conn.getresponse().read()).get(prompt_id)
            if entry:
                break
            time.sleep(0.005)
        conn.request("GET", "/view?" + urlencode(entry["outputs"]["2"]["images"][0]))
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read().startswith(b"\\x89PNG")
        conn.close()
''')
PHASE_TESTS = {
    "comfy": textwrap.dedent('''\
        import pytest
        from client import run_job

        @pytest.mark.parametrize("i", range({n}))
        def test_job(comfy, i):
            run_job(comfy.url, i + 1)
    '''),
    "httpserver": textwrap.dedent('''\
        import io, uuid
        import pytest
        from PIL import Image
        from client import run_job

        buffer = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buffer, format="PNG")
        PNG = buffer.getvalue()

        @pytest.mark.parametrize("i", range({n}))
        def test_job(httpserver, i):
            prompt_id = str(uuid.uuid4())
            entry = {{"prompt": [0, prompt_id, {{}}, {{}}, ["2"]], "status": {{"status_str": "success", "completed": True, "messages": []}},
                     "outputs": {{"2": {{"images": [{{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}}]}}}}, "meta": {{}}}}
            httpserver.expect_request("/prompt", method="POST").respond_with_json({{"prompt_id": prompt_id, "number": 0, "node_errors": {{}}}})
            httpserver.expect_request(f"/history/{{prompt_id}}").respond_with_json({{prompt_id: entry}})
            httpserver.expect_request("/view").respond_with_data(PNG, content_type="image/png")
            run_job(httpserver.url_for("/"), i + 1)
    '''),
}


def phases(rounds: int, count: int, root: Path, before: Path | None) -> dict[str, list[dict[str, float]]]:
    """Per-phase medians (ms) of each variant in each round: ``comfy`` (and ``before``'s) and pytest-httpserver,
    the first test of each run left out (it starts the server)."""
    suite = root / "phases"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider -p no:randomly -q\n")
    (suite / "conftest.py").write_text(PHASE_CONFTEST)
    (suite / "client.py").write_text(PHASE_CLIENT)
    for name, text in PHASE_TESTS.items():
        (suite / f"test_{name}.py").write_text(text.format(n=count))
    variants = [("comfy", "comfy", None)] + ([("comfy before", "comfy", before)] if before else [])
    if importlib.util.find_spec("pytest_httpserver") is not None:
        variants.append(("pytest-httpserver", "httpserver", None))
    found: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in variants}
    for _ in range(rounds):
        for label, test, path in variants:
            out = suite / "phases.json"
            env = {**os.environ, "PHASES_OUT": str(out)}
            if path is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
            subprocess.run([sys.executable, "-m", "pytest", f"test_{test}.py"], cwd=suite, env=env, check=True, capture_output=True)
            tests = json.loads(out.read_text())[1:]
            keys = [*PHASES, *(p + "_cpu" for p in PHASES)]
            medians = {key: statistics.median(t[key] for t in tests) * 1000 for key in keys}
            medians["total"] = statistics.median(sum(t[p] for p in PHASES) for t in tests) * 1000
            medians["total_cpu"] = statistics.median(sum(t[p + "_cpu"] for p in PHASES) for t in tests) * 1000
            found[label].append(medians)
    return found


def print_phases(found: dict[str, list[dict[str, float]]], rounds: int, count: int) -> None:
    print(f"per test, one ComfyUI job (POST, poll every 5 ms, /view): medians over {count - 1} tests, median of {rounds} rounds, ms")
    print(f"  {'':18s} {'total':>7s} {'setup':>7s} {'call':>7s} {'teardown':>8s}   CPU: {'total':>7s} {'setup':>7s} {'call':>7s} {'teardown':>8s}")
    median = statistics.median
    summary = {label: {key: median(r[key] for r in rows) for key in rows[0]} for label, rows in found.items() if rows}
    for label, m in summary.items():
        print(f"  {label:18s} {m['total']:7.2f} {m['setup']:7.2f} {m['call']:7.2f} {m['teardown']:8.2f}        "
              f"{m['total_cpu']:7.2f} {m['setup_cpu']:7.2f} {m['call_cpu']:7.2f} {m['teardown_cpu']:8.2f}")
    base = summary.get("pytest-httpserver")
    if base is None:
        print("  (pytest-httpserver is not installed: pip install pytest-httpserver for the baseline)")
        return
    for label in (name for name in summary if name.startswith("comfy")):
        wall, cpu = summary[label]["total"] / base["total"], summary[label]["total_cpu"] / base["total_cpu"]
        print(f"  {label} / pytest-httpserver: {wall:.2f}x wall, {cpu:.2f}x CPU   target <= {PER_TEST_TARGET}x: "
              f"{'met' if wall <= PER_TEST_TARGET else 'MISSED'}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="server start-ups to time (each kind)")
    parser.add_argument("--resets", type=int, default=2000, help="resets and baseline round-trips to time")
    parser.add_argument("--tests", type=int, default=500, help="tests in the smaller pytest run of the end-to-end figure")
    parser.add_argument("--phases-only", action="store_true", help="only the per-phase comparison with pytest-httpserver")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the per-phase comparison")
    parser.add_argument("--phase-tests", type=int, default=51, help="tests per run of the per-phase comparison")
    parser.add_argument("--before", type=Path, help="another checkout whose comfy fixture runs in the same rounds")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fixtures-"))
    if args.phases_only:
        try:
            print_phases(phases(args.rounds, args.phase_tests, root, args.before), args.rounds, args.phase_tests)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    try:
        ours_start, ours_stop, bare_start, bare_stop = startup(args.runs, root)
        ours_reset, bare_reset = resets(args.resets, root)
        load = [timed(lambda: cassette_io.load(DEFAULT_CASSETTE)) for _ in range(args.runs)]
        with_comfy, without = per_test(args.tests, root)
        found = phases(args.rounds, args.phase_tests, root, args.before)
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
    print_phases(found, args.rounds, args.phase_tests)
    print(textwrap.dedent(f"""\
        python {sys.version.split()[0]}, {sys.platform}; the bare baseline shares the machine and the run."""))


if __name__ == "__main__":
    main()
