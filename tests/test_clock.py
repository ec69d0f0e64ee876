"""The manual clock: hold jobs queued, at a node or finished, look at what a client shows, then advance them."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from comfy_cassettes.control import ReplayControl
from helpers import AnyServer, job_messages, open_ws

ADMIN = "/__cassettes__"
_colors = itertools.count(1)


def workflow(prefix: str = "clock") -> dict[str, Any]:
    """EmptyImage -> ImageInvert -> SaveImage, a fresh colour each time so nothing comes from the cache."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": next(_colors)}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def drain(ws: Any, quiet: float = 0.1) -> list[dict[str, Any]]:
    """Every text event that arrives until the socket has been quiet for ``quiet`` seconds."""
    events = []
    with contextlib.suppress(TimeoutError):
        while True:
            message = ws.recv(timeout=quiet)
            if isinstance(message, str):
                events.append(json.loads(message))
    return events


@pytest.fixture
def server(start: Callable[..., AnyServer]) -> AnyServer:
    return start()


def submit(http: httpx.Client, client_id: str | None = None, **fields: Any) -> str:
    body = {"prompt": workflow(), **({"client_id": client_id} if client_id else {}), **fields}
    response = http.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    prompt_id: str = response.json()["prompt_id"]
    return prompt_id


def test_step_through_a_job_node_by_node(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    control.hold("node:*")
    with open_ws(server, "step") as ws:
        prompt_id = submit(http, "step")
        assert control.wait_held(prompt_id)["at"] == "node:1"
        seen = [e for e in drain(ws) if e["type"] != "status"]
        # The client sees node 1 running, and nothing after it.
        assert [e["type"] for e in seen[-2:]] == ["progress_state", "executing"]
        assert seen[-1]["data"]["node"] == "1"
        running = next(e for e in reversed(seen) if e["type"] == "progress_state")["data"]["nodes"]
        assert {n: v["state"] for n, v in running.items()} == {"1": "running"}
        assert [i[1] for i in http.get("/queue").json()["queue_running"]] == [prompt_id]

        assert control.advance() == {"prompt_id": prompt_id, "from": "node:1", "to": "node:2"}
        states = next(e for e in reversed(drain(ws)) if e["type"] == "progress_state")["data"]["nodes"]
        assert {n: v["state"] for n, v in states.items()} == {"1": "finished", "2": "running"}
        assert control.advance(prompt_id) == {"prompt_id": prompt_id, "from": "node:2", "to": "node:3"}
        assert control.advance(prompt_id) == {"prompt_id": prompt_id, "from": "node:3", "to": "done"}
        assert [e["type"] for e in drain(ws) if e["type"] != "status"][-3:] == ["progress_state", "execution_success", "executing"]
    assert control.wait_for_job(prompt_id)["status"]["status_str"] == "success"


def test_queued_jobs_wait_their_turn_in_queue_order(control: ReplayControl, http: httpx.Client) -> None:
    control.hold("queued")
    first, second, third = (submit(http) for _ in range(3))
    assert control.wait_held(at="queued")["prompt_id"] == first
    queue = http.get("/queue").json()
    assert queue["queue_running"] == [] and [i[1] for i in queue["queue_pending"]] == [first, second, third]
    assert http.get("/prompt").json() == {"exec_info": {"queue_remaining": 3}}

    assert control.advance() == {"prompt_id": first, "from": "queued", "to": "done"}
    assert control.wait_for_job(first)["status"]["status_str"] == "success"
    assert control.wait_held(at="queued")["prompt_id"] == second
    # Deleting the held head lets the next one come up; the deleted prompt never gets history.
    assert http.post("/queue", json={"delete": [second]}).status_code == 200
    assert control.wait_held(at="queued")["prompt_id"] == third
    assert [i[1] for i in http.get("/queue").json()["queue_pending"]] == [third]
    assert control.release() == [third]
    assert control.wait_for_job(third)["status"]["status_str"] == "success"
    assert http.get(f"/history/{second}").json() == {}


def test_a_front_prompt_overtakes_a_held_head(control: ReplayControl, http: httpx.Client) -> None:
    control.hold("queued")
    normal = submit(http)
    assert control.wait_held(normal)["at"] == "queued"
    urgent = submit(http, front=True)
    assert control.wait_held(urgent, timeout=2)["at"] == "queued"
    assert [i[1] for i in http.get("/queue").json()["queue_pending"]] == [urgent, normal]
    assert control.advance(urgent)["to"] == "done"
    assert control.advance(normal)["to"] == "done"
    assert list(http.get("/history").json()) == [urgent, normal]


def test_hold_when_finished_shows_the_gap_between_success_and_history(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    control.hold("finished")
    with open_ws(server, "fin") as ws:
        prompt_id = submit(http, "fin")
        assert control.wait_held(prompt_id)["at"] == "finished"
        seen = [e["type"] for e in drain(ws) if e["type"] != "status"]
        assert seen[-1] == "execution_success"
        # ComfyUI writes history after execution_success: a client polling now still sees the job running.
        assert http.get(f"/history/{prompt_id}").json() == {}
        assert [i[1] for i in http.get("/queue").json()["queue_running"]] == [prompt_id]
        assert control.advance(prompt_id)["to"] == "done"
        assert [e["type"] for e in drain(ws) if e["type"] != "status"] == ["executing"]
    assert http.get(f"/history/{prompt_id}").json()[prompt_id]["status"]["completed"] is True


def test_hold_only_one_prompt(control: ReplayControl, http: httpx.Client) -> None:
    control.hold("node:2", prompt_id="watched")
    submit(http, prompt_id="watched")
    other = submit(http, prompt_id="other")
    assert control.wait_held("watched")["at"] == "node:2"
    # The worker runs one job at a time: "other" waits behind the held one, like behind a slow job.
    assert [i[1] for i in http.get("/queue").json()["queue_pending"]] == [other]
    assert control.advance("watched")["to"] == "done"
    assert control.wait_for_job(other)["status"]["status_str"] == "success"


def test_interrupt_while_held_at_the_last_node_lets_the_job_finish(control: ReplayControl, http: httpx.Client) -> None:
    """ComfyUI checks the interrupt flag before each node: once the last node runs, the prompt completes."""
    control.hold("node:3")
    prompt_id = submit(http)
    control.wait_held(prompt_id)
    http.post("/interrupt", json={"prompt_id": prompt_id})
    control.release()
    assert control.wait_for_job(prompt_id)["status"]["status_str"] == "success"


def test_clock_admin_api_over_plain_http(http: httpx.Client) -> None:
    bad = http.post(f"{ADMIN}/clock/hold", json={"at": "sometime"})
    assert bad.status_code == 400 and "queued" in bad.json()["error"] and "node:<id>" in bad.json()["error"]
    nothing = http.post(f"{ADMIN}/clock/advance", json={"timeout": 0.05})
    assert nothing.status_code == 409 and "nothing to advance" in nothing.json()["error"]
    timeout = http.post(f"{ADMIN}/clock/wait", json={"timeout": 0.05})
    assert timeout.status_code == 408

    assert http.post(f"{ADMIN}/clock/hold", json={"at": "node", "node": "2"}).json()["holds"] == [{"at": "node:2", "prompt_id": None}]
    prompt_id = submit(http)
    held = http.post(f"{ADMIN}/clock/wait", json={"prompt_id": prompt_id, "at": "node:2"}).json()
    assert (held["prompt_id"], held["at"]) == (prompt_id, "node:2")
    assert http.get(f"{ADMIN}/clock").json()["held"][0]["prompt_id"] == prompt_id
    assert http.get(f"{ADMIN}/state").json()["held"] == [prompt_id]
    assert http.post(f"{ADMIN}/clock/advance", json={"prompt_id": prompt_id}).json() == {"prompt_id": prompt_id, "from": "node:2", "to": "done"}

    again = submit(http)
    http.post(f"{ADMIN}/clock/wait", json={"prompt_id": again})
    assert http.post(f"{ADMIN}/reset").status_code == 200  # reset drops holds and the held job with the queue
    assert http.get(f"{ADMIN}/clock").json() == {"holds": [], "held": []}
    assert http.get(f"/history/{submit(http)}").status_code == 200


def test_hold_a_job_then_let_it_fail_there(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    control.hold("node:2")
    control.fail_jobs(node="2", exception_message="out of memory")
    with open_ws(server, "boom") as ws:
        prompt_id = submit(http, "boom")
        assert control.wait_held(prompt_id)["at"] == "node:2"
        assert [e["type"] for e in drain(ws) if e["type"] != "status"][-1] == "executing"  # running, not failed yet
        assert control.advance(prompt_id)["to"] == "done"
        error = next(e["data"] for e in drain(ws) if e["type"] == "execution_error")
    assert (error["node_id"], error["node_type"], error["exception_message"]) == ("2", "ImageInvert", "out of memory")


def test_the_clock_keeps_the_latest_finished_jobs_only() -> None:
    """A server up for days finishes millions of jobs: the clock remembers the newest FINISHED_KEPT for advance()."""
    from comfy_cassettes.replay.harness.clock import FINISHED_KEPT, Clock

    clock = Clock()
    for n in range(FINISHED_KEPT + 5):
        clock.job_finished(f"p{n}", "success")
    clock.job_finished("p2", "deleted")  # a re-used prompt_id counts as the newest
    assert len(clock.finished) == FINISHED_KEPT
    assert "p5" not in clock.finished and clock.finished["p2"] == "deleted"
    assert list(clock.finished)[-2:] == [f"p{FINISHED_KEPT + 4}", "p2"]


@pytest.mark.real_server
def test_a_client_joining_a_job_that_announced_no_node_is_told_none(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    """ComfyUI clears last_node_id when a prompt ends (execution.py execute_async), and tells a joining client of the
    running job its last node only when there is one (server.py websocket_handler). A fully cached re-run announces
    no node: its client, connecting while the re-run is held, hears only the status (the replay once told it the
    previous job's last node, which comfyui-utils took for a node running)."""
    prompt = workflow()
    with open_ws(server, "first") as ws:
        first = http.post("/prompt", json={"prompt": prompt, "client_id": "first"}).json()["prompt_id"]
        ran = [m for m in job_messages(ws, first) if isinstance(m, dict) and m["type"] == "executing"]
    assert [m["data"]["node"] for m in ran][-1] is None and len(ran) > 1  # it ran its nodes
    control.hold("finished")
    again = http.post("/prompt", json={"prompt": prompt, "client_id": "again"}).json()["prompt_id"]
    assert control.wait_held(again)["at"] == "finished"
    with open_ws(server, "again") as ws:
        assert [e["type"] for e in drain(ws, 0.3)] == []
        control.release()
        assert [e["data"]["node"] for e in drain(ws) if e["type"] == "executing"] == [None]
