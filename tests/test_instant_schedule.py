"""The zero-latency mode's schedule through `serve --timing instant`: prompts that many clients send at once are
all run before the polls their answers cause are read, so no client polls a queued job twice (issue 20: with a
fixed work budget per loop pass, 64 clients polled 3-5 times per job)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from pathlib import Path
from urllib.parse import urlsplit

from serve_process import start_serve

CLIENTS = 48
GRAPH: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
}


def _request(method: str, target: str, body: bytes = b"") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, Any]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), json.loads(await reader.readexactly(length))


async def _first_polls(host: str, port: int) -> list[Any]:
    """Each of CLIENTS connections sends a prompt (all written before any answer is read), then polls its
    /history once, the moment its answer arrives; the first poll's answers."""
    connections = [await asyncio.open_connection(host, port) for _ in range(CLIENTS)]
    for color, (_, writer) in enumerate(connections):
        prompt = {**GRAPH, "1": {**GRAPH["1"], "inputs": {**GRAPH["1"]["inputs"], "color": color + 1}}}
        writer.write(_request("POST", "/prompt", json.dumps({"prompt": prompt, "client_id": f"c{color}"}).encode()))

    async def poll(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        status, answer = await _answer(reader)
        assert status == 200, answer
        writer.write(_request("GET", f"/history/{answer['prompt_id']}"))
        status, entry = await _answer(reader)
        assert status == 200
        return entry.get(answer["prompt_id"])

    try:
        return await asyncio.gather(*(poll(reader, writer) for reader, writer in connections))
    finally:
        for _, writer in connections:
            writer.close()


def test_prompts_sent_at_once_are_finished_when_their_first_poll_arrives() -> None:
    process, url = start_serve("--timing", "instant")
    try:
        address = urlsplit(url)
        assert address.hostname is not None and address.port is not None
        for _ in range(3):  # a few bursts: the second finds the node cache and names of the first
            entries = asyncio.run(_first_polls(address.hostname, address.port))
            missed = [i for i, entry in enumerate(entries) if entry is None]
            assert not missed, f"{len(missed)} of {CLIENTS} jobs were not finished at their first poll"
            assert all(entry["status"]["status_str"] == "success" for entry in entries)
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def _sequential_first_polls(host: str, port: int, jobs: int) -> list[Any]:
    """One connection: a prompt, then a poll of its /history the moment the answer arrives, ``jobs`` times."""
    reader, writer = await asyncio.open_connection(host, port)
    found = []
    try:
        for color in range(jobs):
            prompt = {**GRAPH, "1": {**GRAPH["1"], "inputs": {**GRAPH["1"]["inputs"], "color": color + 1}}}
            writer.write(_request("POST", "/prompt", json.dumps({"prompt": prompt, "client_id": "poller"}).encode()))
            status, answer = await _answer(reader)
            assert status == 200, answer
            writer.write(_request("GET", f"/history/{answer['prompt_id']}"))
            found.append((await _answer(reader))[1].get(answer["prompt_id"]))
    finally:
        writer.close()
    return found


def test_floor_timing_keeps_no_floor_for_a_job_no_socket_receives() -> None:
    """The fixtures' `floor` holds a job's end 0.6 ms after its answer only while a socket would receive it: a
    client that polls has its answer already, and a test polling at once must not sleep to a second poll."""
    process, url = start_serve("--timing", "floor")
    try:
        address = urlsplit(url)
        assert address.hostname is not None and address.port is not None
        entries = asyncio.run(_sequential_first_polls(address.hostname, address.port, 20))
        missed = [i for i, entry in enumerate(entries) if entry is None]
        assert not missed, f"{len(missed)} of 20 jobs were not finished at their first poll"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_a_queue_of_thousands_still_lets_the_loop_in(tmp_path: Path) -> None:
    """A pass's budget grows with the queue, up to pacing.LONGEST_PASS of work: 6,000 prompts queued at once
    (several passes of work however cheap a job gets) are run in several passes, and the loop's other tasks run
    between them."""
    from comfy_cassettes.replay.config import ReplayConfig
    from comfy_cassettes.replay.server import build_engine

    async def run() -> tuple[int, int]:
        engine = build_engine(ReplayConfig(timing="instant", output_dir=tmp_path / "out").validated())
        await engine.start()
        try:
            for color in range(6000):
                prompt = {**GRAPH, "1": {**GRAPH["1"], "inputs": {**GRAPH["1"]["inputs"], "color": color}}}
                assert engine.submit(json.dumps({"prompt": prompt}).encode()).status == 200
            turns = 0  # this task's turns while prompts were still queued: one per pass the worker yields
            while engine.queue_remaining():
                await asyncio.sleep(0)
                turns += 1
            return turns, len(engine.history)
        finally:
            await engine.stop()

    turns, finished = asyncio.run(run())
    assert finished == 6000
    assert turns >= 3, "the worker ran the whole queue in one pass"
