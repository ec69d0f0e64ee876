"""Large graphs: a chain (EmptyImage -> ImageInvert x (N-2) -> SaveImage) and a wide prompt (N/2 independent
EmptyImage -> SaveImage pairs) POSTed to a `serve` subprocess. Prints, per graph: the POST's time, the time to
its history entry, the server's peak RSS, and GET /queue latency (p50 and max, polled every 10 ms from another
thread) while the job is planned and run. ``--ws`` connects a /ws client with the prompt's client_id first, which
then receives every progress_state (their total size grows with the square of the graph, as on ComfyUI).

    .venv/bin/python bench/bench_graphs.py chain:30 chain:300 chain:600 wide:1000 wide:10000
    .venv/bin/python bench/bench_graphs.py --ws chain:600 wide:1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CLI = [sys.executable, "-m", "comfy_cassettes"]


def chain(n: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    for i in range(2, n):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt[str(n)] = {"class_type": "SaveImage", "inputs": {"images": [str(n - 1), 0], "filename_prefix": "c"}}
    return prompt


def wide(n: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {}
    for i in range(n // 2):
        prompt[str(2 * i + 1)] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}}
        prompt[str(2 * i + 2)] = {"class_type": "SaveImage", "inputs": {"images": [str(2 * i + 1), 0], "filename_prefix": "w"}}
    return prompt


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get(url: str, timeout: float) -> tuple[float, bytes]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body = answer.read()
    return time.perf_counter() - start, body


def _read_stream(ws: Any, sizes: list[int]) -> None:
    while True:
        message = ws.recv()
        sizes.append(len(message))
        parsed = json.loads(message)
        if parsed["type"] == "executing" and parsed["data"]["node"] is None:
            return


def run(kind: str, n: int, *, listen: bool, limit: float) -> dict[str, Any]:
    process = subprocess.Popen([*CLI, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    with contextlib.ExitStack() as stack:
        stack.callback(process.wait, 10)
        stack.callback(process.terminate)
        return _measure(process, stack, kind, n, listen=listen, limit=limit)


def _measure(process: subprocess.Popen[str], stack: contextlib.ExitStack, kind: str, n: int, *, listen: bool, limit: float) -> dict[str, Any]:
    assert process.stdout is not None
    url = re.search(r"(http://\S+)", process.stdout.readline()).group(1)  # type: ignore[union-attr]
    prompt = chain(n) if kind == "chain" else wide(n)
    ws = stack.enter_context(connect(url.replace("http", "ws", 1) + "/ws?clientId=bench", max_size=None)) if listen else None
    sizes: list[int] = []
    reader = None
    if ws is not None:
        ws.recv()
        reader = threading.Thread(target=_read_stream, args=(ws, sizes))
        reader.start()
    body = json.dumps({"prompt": prompt, "client_id": "bench"}).encode()
    start = time.perf_counter()
    request = urllib.request.Request(url + "/prompt", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=limit) as answer:
        prompt_id = json.loads(answer.read())["prompt_id"]
    post = time.perf_counter() - start
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            latencies.append(get(url + "/queue", limit)[0])
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    status = None
    while time.perf_counter() - start < limit:
        entry = json.loads(get(f"{url}/history/{prompt_id}", limit)[1])
        if entry:
            status = entry[prompt_id]["status"]["status_str"]
            break
        time.sleep(0.02)
    done = time.perf_counter() - start
    stop.set()
    poller.join()
    if reader is not None:
        reader.join(limit)
    latencies.sort()
    row = {"graph": f"{kind} {n}", "post_s": round(post, 3), "done_s": round(done, 3), "status": status,
           "peak_rss_mb": round(peak_rss_mb(process.pid)), "queue_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
           "queue_max_ms": round(latencies[-1] * 1000, 1)}
    if listen:
        row.update(ws_messages=len(sizes), ws_mb=round(sum(sizes) / 1e6, 1), stream_s=round(time.perf_counter() - start, 2))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("graphs", nargs="+", help="chain:N or wide:N")
    parser.add_argument("--ws", action="store_true", help="a /ws client receives the job's stream")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds before giving up on one graph")
    args = parser.parse_args()
    for spec in args.graphs:
        kind, n = spec.split(":")
        print(json.dumps(run(kind, int(n), listen=args.ws, limit=args.limit)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
