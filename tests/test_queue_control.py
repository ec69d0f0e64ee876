"""Cancellation and queue control like ComfyUI, unrecorded workflows, invalid prompts and the request journal,
each driven over HTTP and /ws against the replay app and compared with the real captures."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from comfy_cassettes.control import ReplayControl
from helpers import (
    AnyServer, HarEntry, InProcessServer, control_for, events_until_done, http_entries, job_messages, open_ws, request_bytes,
    request_json, request_path, response_bytes, ws_entries, ws_received,
)

ADMIN = "/__cassettes__"


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event types without ``status``, which ComfyUI may send before or after neighbouring events."""
    return [e["type"] for e in events if e["type"] != "status"]


def captured_workflow(scenario: str, index: int = 0) -> dict[str, Any]:
    posts = [e for e in http_entries(scenario) if e["request"]["method"] == "POST" and request_path(e) == "/prompt"]
    workflow: dict[str, Any] = request_json(posts[index])["prompt"]
    return workflow


@pytest.fixture
def server(start: Callable[..., AnyServer]) -> AnyServer:
    return start(dynamic=True)


def test_interrupt_a_running_job_matches_the_interrupt_capture(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    """The capture interrupted the slow blur chain while node 3 ran; hold there, interrupt, let it go on."""
    control.hold("node:3")
    with open_ws(server, "me") as ws:
        prompt_id = http.post("/prompt", json={"prompt": captured_workflow("interrupt"), "client_id": "me"}).json()["prompt_id"]
        assert control.wait_held(prompt_id)["at"] == "node:3"
        # What a client sees meanwhile, as in the capture: running, no history yet.
        queue = http.get("/queue").json()
        assert [item[1] for item in queue["queue_running"]] == [prompt_id] and queue["queue_pending"] == []
        assert http.get(f"/history/{prompt_id}").json() == {}
        interrupted = http.post("/interrupt")
        assert (interrupted.status_code, interrupted.content) == (200, b"")
        control.release()
        events = events_until_done(ws, prompt_id)

    capture = list(ws_received("interrupt"))
    assert kinds(events) == kinds(capture[1:])
    ours, theirs = events[-3]["data"], next(m["data"] for m in capture if m["type"] == "execution_interrupted")
    assert list(ours) == list(theirs)
    assert (ours["node_id"], ours["node_type"], sorted(ours["executed"])) == (theirs["node_id"], theirs["node_type"], sorted(theirs["executed"]))

    entry = http.get(f"/history/{prompt_id}").json()[prompt_id]
    reference = next(json.loads(response_bytes(e)) for e in http_entries("interrupt") if request_path(e).startswith("/history/") and response_bytes(e) != b"{}")
    reference = next(iter(reference.values()))
    assert (entry["status"]["status_str"], entry["status"]["completed"], entry["outputs"], entry["meta"]) == ("error", False, {}, {})
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in reference["status"]["messages"]]
    assert entry["status"]["messages"][-1] == ["execution_interrupted", ours]
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_interrupt_with_recorded_timing_and_no_clock(start_app: Callable[..., InProcessServer]) -> None:
    """The interrupt cassette at ten times its real pace: a client interrupts as soon as node 2 starts."""
    server = start_app("interrupt", timing="recorded", speed=10)
    with open_ws(server, "rt") as ws, server.client() as http:
        prompt_id = http.post("/prompt", json={"prompt": captured_workflow("interrupt"), "client_id": "rt"}).json()["prompt_id"]
        events = []
        for event in job_messages(ws, prompt_id, timeout=10):
            assert isinstance(event, dict)  # the interrupt capture sends no binary frame
            events.append(event)
            if events[-1]["type"] == "executing" and events[-1]["data"]["node"] == "2":
                http.post("/interrupt", json={"prompt_id": prompt_id})
        entry = http.get(f"/history/{prompt_id}").json()[prompt_id]
    interrupted = next(e["data"] for e in events if e["type"] == "execution_interrupted")
    assert (interrupted["node_id"], sorted(interrupted["executed"])) == ("3", ["1", "2"])
    assert entry["status"]["status_str"] == "error" and entry["status"]["messages"][-1][0] == "execution_interrupted"


def _map_ids(text: str, ids: dict[str, str]) -> str:
    for theirs, ours in ids.items():
        text = text.replace(theirs, ours)
    return text


def test_queue_and_history_operations_replay_the_capture(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    """Every request of queue_and_history_ops, in order, with the manual clock standing in for the slow job."""
    entries = http_entries("queue_and_history_ops")
    captured_client = ws_entries("queue_and_history_ops")[0]["request"]["url"].split("clientId=")[1]
    ids: dict[str, str] = {captured_client: "qh"}
    prompts: list[str] = []

    def send(entry: HarEntry) -> httpx.Response:
        request = entry["request"]
        url = _map_ids(request["url"].split("8189", 1)[1], ids)
        body = _map_ids(request_bytes(entry).decode(), ids).encode()
        response = http.request(request["method"], url, content=body or None, headers={"Content-Type": "application/json"} if body else {})
        assert response.status_code == entry["response"]["status"], url
        theirs = response_bytes(entry)
        if not theirs:
            assert response.content == b"", url
        elif request_path(entry) == "/queue":
            expected = json.loads(_map_ids(theirs.decode(), ids))
            got = response.json()
            assert [i[1] for i in got["queue_running"]] == [i[1] for i in expected["queue_running"]], url
            assert [i[1] for i in got["queue_pending"]] == [i[1] for i in expected["queue_pending"]], url
        elif request_path(entry).startswith("/history"):
            expected = json.loads(_map_ids(theirs.decode(), ids))
            got = response.json()
            assert list(got) == list(expected), url
            for key, entry_ in expected.items():
                assert got[key]["prompt"][0] == entry_["prompt"][0]
                assert [m[0] for m in got[key]["status"]["messages"]] == [m[0] for m in entry_["status"]["messages"]]
                assert list(got[key]["outputs"]) == list(entry_["outputs"])
        elif request_path(entry) == "/prompt" and request["method"] == "POST":
            ids[json.loads(theirs)["prompt_id"]] = response.json()["prompt_id"]
            prompts.append(response.json()["prompt_id"])
            assert response.json()["number"] == json.loads(theirs)["number"]
        else:
            assert response.json() == json.loads(theirs), url
        return response

    control.hold("node:2")  # the capture's slow job was busy in node 2 while the client did all this
    with open_ws(server, "qh") as ws:
        for index, entry in enumerate(entries):
            path, method = request_path(entry), entry["request"]["method"]
            if method == "POST" and path == "/prompt" and len(prompts) == 4:
                control.release()  # the last, fast prompt runs through
            send(entry)
            if method == "POST" and path == "/prompt" and len(prompts) in (1, 4):
                control.wait_held(prompts[-1], at="node:2")
            if method == "POST" and path == "/interrupt" and control.clock()["held"]:
                running = http.get("/queue").json()["queue_running"][0][1]
                interrupt_hit = not request_bytes(entry) or ids.get(json.loads(request_bytes(entry))["prompt_id"], "") == running
                if interrupt_hit:
                    assert control.advance(running)["to"] == "done"
            if method == "POST" and path == "/prompt" and len(prompts) == 5:
                control.wait_for_job(prompts[-1])
        events = events_until_done(ws, prompts[-1])

    capture = list(ws_received("queue_and_history_ops"))
    assert kinds(events) == kinds(capture[1:])
    interrupted = [e["data"] for e in events if e["type"] == "execution_interrupted"]
    assert [(d["prompt_id"], d["node_id"], sorted(d["executed"])) for d in interrupted] == [(prompts[0], "3", ["1", "2"]), (prompts[3], "3", ["1", "2"])]


def test_interrupt_is_a_no_op_when_idle_or_aimed_at_a_pending_prompt(control: ReplayControl, http: httpx.Client) -> None:
    assert http.post("/interrupt").status_code == 200  # idle: nothing to interrupt, and the flag is not sticky
    control.hold("node:1")
    first = http.post("/prompt", json={"prompt": captured_workflow("basic_save")}).json()["prompt_id"]
    second = http.post("/prompt", json={"prompt": captured_workflow("basic_save", 1)}).json()["prompt_id"]
    control.wait_held(first)
    assert http.post("/interrupt", json={"prompt_id": second}).status_code == 200  # pending, not running
    control.release()
    finished = control.wait_for_jobs([first, second])
    assert [finished[p]["status"]["status_str"] for p in (first, second)] == ["success", "success"]


# ---------------------------------------------------------------- unrecorded and invalid prompts

UNRECORDED = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 96, "height": 80, "batch_size": 1, "color": 0xFF8800}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "synthetic/inverted"}},
}


def test_unrecorded_workflow_runs_synthetically_with_a_real_sized_image(start_app: Callable[..., InProcessServer]) -> None:
    # Only the informational snapshots (with /object_info to validate against): no recorded job at all.
    server = start_app("snapshots", dynamic=True)
    assert server.engine.index.choose(UNRECORDED, has_client=True, cached=[]) is None
    with control_for(server) as control, server.client() as http:
        _run_unrecorded(server, control, http)


def _run_unrecorded(server: AnyServer, control: ReplayControl, http: httpx.Client) -> None:
    with open_ws(server, "syn") as ws:
        answer = http.post("/prompt", json={"prompt": UNRECORDED, "client_id": "syn"})
        assert answer.status_code == 200 and answer.json()["node_errors"] == {}
        prompt_id = answer.json()["prompt_id"]
        events = events_until_done(ws, prompt_id)

    per_node = ["progress_state", "executing", "progress_state"]
    assert kinds(events) == ["execution_start", "execution_cached", *per_node, *per_node,
                             "progress_state", "executing", "executed", "progress_state", "execution_success", "executing"]
    assert [e["data"]["node"] for e in events if e["type"] == "executing"] == ["1", "2", "3", None]
    image = {"filename": "inverted_00001_.png", "subfolder": "synthetic", "type": "output"}
    assert next(e["data"] for e in events if e["type"] == "executed")["output"] == {"images": [image]}

    entry = control.wait_for_job(prompt_id)
    assert entry["status"]["status_str"] == "success" and entry["outputs"] == {"3": {"images": [image]}}
    on_disk = server.engine.roots.output / "synthetic" / "inverted_00001_.png"
    with Image.open(on_disk) as saved:
        assert saved.size == (96, 80)
    served = http.get("/view", params={"filename": image["filename"], "subfolder": "synthetic", "type": "output"})
    assert served.status_code == 200 and Image.open(io.BytesIO(served.content)).size == (96, 80)


def _invalid_posts() -> list[HarEntry]:
    return [e for e in http_entries("error_invalid_prompt") if e["request"]["method"] == "POST" and request_path(e) == "/prompt"]


def test_invalid_prompts_get_comfyuis_answers_over_http(http: httpx.Client) -> None:
    """Every POST /prompt of error_invalid_prompt, sent as captured, in order: same status, error types and keys."""
    posts = _invalid_posts()
    assert len(posts) == 16
    for entry in posts:
        headers = {h["name"]: h["value"] for h in entry["request"]["headers"] if h["name"].lower() in ("content-type", "origin")}
        ours = http.post("/prompt", content=request_bytes(entry), headers=headers)
        theirs = response_bytes(entry)
        label = request_bytes(entry)[:80]
        assert ours.status_code == entry["response"]["status"], label
        if entry["response"]["status"] == 500:
            assert ours.content == theirs
            continue
        expected, got = json.loads(theirs), ours.json()
        if "error" in expected:
            assert got["error"]["type"] == expected["error"]["type"], label
        else:
            assert got["number"] == expected["number"] == 14  # every parsed POST took a number, as in ComfyUI
        assert list(got["node_errors"]) == list(expected["node_errors"]), label
        for node, errors in expected["node_errors"].items():
            assert [e["type"] for e in got["node_errors"][node]["errors"]] == [e["type"] for e in errors["errors"]], label
            assert got["node_errors"][node]["dependent_outputs"] == errors["dependent_outputs"]


# ---------------------------------------------------------------- request journal


def test_journal_verification_in_python(control: ReplayControl, http: httpx.Client) -> None:
    first = http.post("/prompt", json={"prompt": captured_workflow("basic_save"), "client_id": "j1"}).json()["prompt_id"]
    http.post("/api/prompt", json={"prompt": captured_workflow("basic_save", 1), "client_id": "j2"})
    http.post("/prompt", json={"client_id": "j3"})
    http.get(f"/history/{first}")

    assert control.count(method="POST", path="/prompt") == 3
    assert control.count(path="/history/*") == 1
    assert [e["path"] for e in control.find(body_json={"client_id": "j2"})] == ["/api/prompt"]
    assert control.assert_requested("POST", "/prompt", count=1, status=400) == 1
    control.assert_requested("POST", "/prompt", min=2, max=3)
    control.assert_not_requested("POST", "/queue")
    with pytest.raises(AssertionError, match=r"expected exactly 5 request\(s\) matching method='POST' path='/prompt', received 3") as failure:
        control.assert_requested("POST", "/prompt", count=5)
    assert "GET /history/" in str(failure.value)  # the message lists what the server did receive
    since = control.find()[-1]["seq"]
    http.get("/queue")
    assert [e["path"] for e in control.find(since=since)] == ["/queue"]


def test_journal_verification_over_plain_http(http: httpx.Client) -> None:
    http.post("/prompt", json={"prompt": captured_workflow("basic_save"), "client_id": "h1"})
    http.get("/queue", params={"x": "1"})

    assert http.post(f"{ADMIN}/journal/count", json={"method": "POST", "path": "/prompt"}).json() == {"count": 1}
    found = http.post(f"{ADMIN}/journal/find", json={"query": {"x": 1}}).json()
    assert found["count"] == 1 and found["entries"][0]["path"] == "/queue"
    ok = http.post(f"{ADMIN}/journal/assert", json={"path": "/prompt", "body_json": {"client_id": "h1"}, "count": 1})
    assert ok.status_code == 200 and ok.json()["ok"] is True
    failed = http.post(f"{ADMIN}/journal/assert", json={"path": "/interrupt"})
    assert failed.status_code == 409
    assert failed.json()["message"] == "expected at least 1 request(s) matching path='/interrupt', received 0"
    assert failed.json()["received"][0] == "POST /prompt -> 200"
    assert http.get(f"{ADMIN}/journal", params={"status": 200, "path": "/queue"}).json()["count"] == 1
    bad = http.post(f"{ADMIN}/journal/count", json={"verb": "GET"})
    assert bad.status_code == 400 and "verb" in bad.json()["error"]
    assert http.post(f"{ADMIN}/journal/assert", json={"path": "/queue", "count": -1}).status_code == 400


def test_a_take_reported_at_the_run_start_counts_the_queue_as_it_was_taken() -> None:
    # ComfyUI's worker reports the queue as it takes a prompt; a replay sends that report when the run starts, after
    # the recorded start-up delay. A prompt queued within that delay (more_sessions_0.8/two_clients: 4 ms apart)
    # is reported after the take, and the take's count does not include it: 1, 1, 2 as the live server sent them.
    from comfy_cassettes.replay.sim.state import PromptQueue, QueueItem

    heard: list[int] = []
    queue = PromptQueue(on_change=heard.append)
    queue.put(QueueItem(0, "a", {}, {}, ["2"], None, 1))
    queue.take(report=False)
    queue.put(QueueItem(1, "b", {}, {}, ["2"], None, 2))
    queue.report_taken()  # the run starts: nothing left to report
    assert heard == [1, 1, 2]
