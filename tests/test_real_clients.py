"""A third-party ComfyUI client against `serve` at its default settings (issue 18): ComfyScript (PyPI comfy-script,
in the test extra) gets its images from the bundled default cassette and from an imported session cassette, and a
/ws listener never hears a job end before it has read the POST /prompt answer that named the job."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from helpers import har_path

# One ComfyScript session, as its README shows: load() the server, build each workflow with its node functions,
# queue it and wait, then fetch the images. argv: URL, the jobs as JSON. Prints one JSON line of sizes per job.
COMFYSCRIPT = r'''
import json, sys, time, urllib.request
from comfy_script.runtime import *

url = sys.argv[1]
load(url)
from comfy_script.runtime.nodes import *

# ComfyScript hears of jobs only through the /ws its watcher thread opens after load(), and misses what a job sent
# before (against ComfyUI too): wait until the server has that socket before queueing anything.
deadline = time.monotonic() + 20
while json.load(urllib.request.urlopen(url + "__cassettes__/journal?path=/ws"))["count"] == 0:
    assert time.monotonic() < deadline, "ComfyScript's watcher never connected"
    time.sleep(0.05)

for job in json.loads(sys.argv[2]):
    with Workflow(wait=True):
        image = EmptyImage(job["width"], job["height"], job["batch_size"], job["color"])
        images = SaveImage(ImageInvert(image) if job["invert"] else image, job["prefix"])
    result = images.wait()
    assert result is not None, "ComfyScript got no result: its task was never completed"
    print(json.dumps({"sizes": [list(picture.size) for picture in result.wait()]}), flush=True)
'''


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[str]:
    """`comfy-cassettes serve` with ``args`` and nothing else but a free port and its folders under ``tmp_path``;
    yields its URL (with the trailing slash ComfyScript wants)."""
    ready = tmp_path / "ready.json"
    folders = [arg for name in ("output", "input", "temp") for arg in (f"--{name}-dir", str(tmp_path / name))]
    process = subprocess.Popen([sys.executable, "-m", "comfy_cassettes", "serve", *args, "--port", "0", "--ready-file", str(ready), *folders],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.02)
        yield json.loads(ready.read_text())["url"] + "/"
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
        assert "Traceback" not in errors, errors


def run_comfyscript(url: str, jobs: list[dict[str, object]], tmp_path: Path) -> list[list[list[int]]]:
    script = tmp_path / "comfyscript_session.py"
    script.write_text(COMFYSCRIPT)
    process = subprocess.Popen([sys.executable, str(script), url, json.dumps(jobs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)
    try:
        out, errors = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        out, errors = process.communicate()
        raise AssertionError(f"ComfyScript never finished:\n{out}\n{errors}") from None
    assert process.returncode == 0 and "Traceback" not in errors, out + errors
    return [json.loads(line)["sizes"] for line in out.splitlines() if line.startswith('{"sizes"')]


def job(color: int, *, batch_size: int = 1, prefix: str = "ComfyUI", invert: bool = False) -> dict[str, object]:
    return {"width": 64, "height": 64, "batch_size": batch_size, "color": color, "prefix": prefix, "invert": invert}


# Recorded prompts, as ComfyScript builds them (its own node ids: "EmptyImage.0"), whose jobs took ComfyUI tens of
# milliseconds or more: replayed at the recording's pace. ComfyScript notes a prompt_id only after its POST answer, on
# a thread that shares the GIL with its /ws watcher: on a busy machine that can take longer than the few milliseconds
# a cached re-run takes (against ComfyUI too), which the probe below covers on the server's side.
BASIC_SAVE_FIRST = job(16744448)  # basic_save: the first prompt of a fresh server, 64 ms
CACHED_RERUN_FIRST = job(10066329, prefix="cached", invert=True)  # cached_rerun: 0.37 s
BATCH_3_FIRST = job(8388863, batch_size=3, prefix="batch")  # batch_3: 0.32 s


def test_comfyscript_gets_its_images_from_the_bundled_default_cassette(tmp_path: Path) -> None:
    with serving(tmp_path) as url:
        sizes = run_comfyscript(url, [BASIC_SAVE_FIRST, CACHED_RERUN_FIRST, BATCH_3_FIRST], tmp_path)
    assert sizes == [[[64, 64]], [[64, 64]], [[64, 64]] * 3]


def test_comfyscript_gets_its_images_from_an_imported_session_cassette(tmp_path: Path) -> None:
    cassette = tmp_path / "batch_3.yaml"
    imported = subprocess.run([sys.executable, "-m", "comfy_cassettes", "import", str(har_path("batch_3")), "-o", str(cassette)],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    with serving(tmp_path, str(cassette)) as url:
        sizes = run_comfyscript(url, [BATCH_3_FIRST], tmp_path)
    assert sizes == [[[64, 64]] * 3]


# ---------------------------------------------------------------- the probe: 20 prompts in a row, one /ws listener

PROBE_WORKFLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}}}


async def probe(url: str, count: int) -> dict[str, tuple[float, float]]:
    """POST ``count`` prompts back to back while one /ws listens; each prompt_id's (answer read, job's end) times."""
    client_id = uuid.uuid4().hex
    ended: dict[str, float] = {}
    read: dict[str, float] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}ws?clientId={client_id}") as ws:
        async def listen() -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(message.data)
                    data = event.get("data") or {}
                    if event["type"] == "executing" and data.get("node") is None:
                        ended[data["prompt_id"]] = time.perf_counter()

        listener = asyncio.create_task(listen())
        for i in range(count):
            workflow = json.loads(json.dumps(PROBE_WORKFLOW))
            workflow["1"]["inputs"]["color"] = i  # a new graph each time: no cached re-runs
            async with session.post(f"{url}prompt", json={"prompt": workflow, "client_id": client_id}) as answer:
                prompt_id = (await answer.json())["prompt_id"]
            read[prompt_id] = time.perf_counter()
        deadline = time.monotonic() + 30
        while len(ended) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        listener.cancel()
    return {prompt_id: (read[prompt_id], ended[prompt_id]) for prompt_id in read if prompt_id in ended}


def test_no_job_ends_before_its_post_answer_was_read(tmp_path: Path) -> None:
    with serving(tmp_path) as url:
        times = asyncio.run(probe(url, 20))
    assert len(times) == 20, "some jobs never ended"
    early = [prompt_id for prompt_id, (read, ended) in times.items() if ended < read]
    assert early == [], f"{len(early)} of 20 jobs ended before their POST answer was read"
