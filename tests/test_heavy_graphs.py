"""Large prompts through `serve` in a subprocess whose address space is capped: a long chain runs in bounded
memory, and a wide prompt is planned and run while the server keeps answering (issue 21, items 1 and 2)."""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from comfy_cassettes.comfy.graph import execution_order, signatures

# The server's whole address space. A serve process reserves about 70 MB and a planning thread's arena 64 MB;
# before the fix a 26-node chain peaked at 1.9 GB of RSS and a 1,000-node prompt at 350 MB.
ADDRESS_SPACE = 640 * 1024 * 1024
DEADLINE = 60.0  # seconds a job may take before the test gives up (it takes well under one)


def chain(length: int) -> dict[str, Any]:
    """EmptyImage -> ImageInvert x (length - 2) -> SaveImage, the sweep's chain."""
    prompt: dict[str, Any] = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    for i in range(2, length):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt[str(length)] = {"class_type": "SaveImage", "inputs": {"images": [str(length - 1), 0], "filename_prefix": "chain"}}
    return prompt


def wide(pairs: int) -> dict[str, Any]:
    """``pairs`` independent EmptyImage -> SaveImage pairs, the sweep's wide prompt."""
    prompt: dict[str, Any] = {}
    for i in range(pairs):
        prompt[str(2 * i + 1)] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": i}}
        prompt[str(2 * i + 2)] = {"class_type": "SaveImage", "inputs": {"images": [str(2 * i + 1), 0], "filename_prefix": "wide"}}
    return prompt


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.fixture
def capped_server() -> Iterator[str]:
    """`serve` with the bundled cassette, its address space capped (a blow-up is a MemoryError, not a swap storm)."""
    process = subprocess.Popen([sys.executable, "-m", "comfy_cassettes", "serve", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, preexec_fn=_cap_address_space)
    assert process.stdout is not None
    url = None
    for line in process.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            url = found.group(1)
            break
    try:
        assert url is not None, "serve did not start"
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _finished(http: httpx.Client, prompt_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        entry = http.get(f"/history/{prompt_id}").json()
        if entry:
            return dict(entry[prompt_id])
        time.sleep(0.01)
    raise AssertionError(f"{prompt_id} did not finish in {DEADLINE} s")


def test_a_long_chain_runs_in_order_in_bounded_memory(capped_server: str) -> None:
    prompt = chain(300)
    with httpx.Client(base_url=capped_server, timeout=DEADLINE) as http, \
            connect(capped_server.replace("http", "ws", 1) + "/ws?clientId=chain", max_size=None) as ws:
        ws.recv()  # the greeting
        answer = http.post("/prompt", json={"prompt": prompt, "client_id": "chain"})
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        started = []
        while True:
            message = json.loads(ws.recv(timeout=DEADLINE))
            if message["type"] == "executing":
                if message["data"]["node"] is None:
                    break
                started.append(message["data"]["node"])
        assert started == [str(i) for i in range(1, 301)]
        entry = _finished(http, prompt_id)
        assert entry["status"]["status_str"] == "success"
        image = entry["outputs"]["300"]["images"][0]
        assert image["filename"].startswith("chain_")
        assert http.get("/view", params={"filename": image["filename"], "type": "output"}).status_code == 200
    with httpx.Client(base_url=capped_server, timeout=DEADLINE) as http:
        # The same chain twice as long, which 0.3.64 also runs: validation recurses once per link.
        again = http.post("/prompt", json={"prompt": chain(600)})
        assert again.status_code == 200, again.text
        assert _finished(http, again.json()["prompt_id"])["status"]["status_str"] == "success"


def test_a_wide_prompt_is_run_while_the_server_answers(capped_server: str) -> None:
    prompt = wide(500)
    with httpx.Client(base_url=capped_server, timeout=DEADLINE) as http:
        answer = http.post("/prompt", json={"prompt": prompt, "client_id": "wide"})
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        seen_unfinished = False
        deadline = time.monotonic() + DEADLINE
        while not http.get(f"/history/{prompt_id}").json() and time.monotonic() < deadline:
            queue = http.get("/queue").json()
            listed = queue["queue_running"] + queue["queue_pending"]
            seen_unfinished = seen_unfinished or any(item[1] == prompt_id for item in listed)
        # /queue answered while the job was planned or ran: its plan and its run leave the event loop to the handlers.
        assert seen_unfinished
        entry = _finished(http, prompt_id)
        assert entry["status"]["status_str"] == "success"
        assert len(entry["outputs"]) == 500
        assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_signatures_and_order_of_a_deep_chain_take_linear_work() -> None:
    prompt = chain(5000)
    keys = signatures(prompt)
    assert len(set(keys.values())) == 5000  # every prefix of the chain is another computation
    assert max(len(key) for key in keys.values()) == min(len(key) for key in keys.values())  # no key grows with depth
    changed = chain(5000)
    changed["1"]["inputs"]["color"] = 1
    changed_keys = signatures(changed)
    assert all(changed_keys[n] != keys[n] for n in prompt)  # a change at the root reaches every later node
    assert execution_order(prompt, ["5000"]) == [str(i) for i in range(1, 5001)]
