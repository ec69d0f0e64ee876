"""Fault rules as a client sees them: errors, delays, drops, failed and interrupted jobs, cut sockets, downtime
(in-process, except what needs a real socket: cut or refused connections, downtime, a client's timeout)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpcore  # noqa: F401 - imported before pytester's in-process run so its exception classes stay the same
import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from comfy_cassettes.comfy.protocol import CRASH_BODY
from comfy_cassettes.control import ReplayControl
from comfy_cassettes.errors import FaultSpecError
from comfy_cassettes.replay.harness.faults import parse_cli_delay, parse_cli_status, route_matches
from comfy_cassettes.replay.server import ReplayServer
from helpers import AnyServer, events_until_done, open_ws, ws_received

ADMIN = "/__cassettes__"
_colors = itertools.count(1)


def workflow(prefix: str = "fault") -> dict[str, Any]:
    """EmptyImage -> SaveImage with a fresh colour each time, so no run is served from the node cache."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": next(_colors)}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def captured(scenario: str, kind: str) -> dict[str, Any]:
    """The first ``kind`` WebSocket payload of a real capture."""
    data: dict[str, Any] = next(m["data"] for m in ws_received(scenario) if m["type"] == kind)
    return data


@pytest.fixture
def server(start: Callable[..., AnyServer]) -> AnyServer:
    return start(dynamic=True)


def post_with_retries(http: httpx.Client, path: str, body: dict[str, Any], attempts: int = 5) -> tuple[httpx.Response, int]:
    """What a careful client does: retry 5xx answers, honouring Retry-After, with exponential backoff."""
    for attempt in range(1, attempts + 1):
        response = http.post(path, json=body)
        if response.status_code not in (500, 502, 503, 504) or attempt == attempts:
            return response, attempt
        time.sleep(float(response.headers.get("Retry-After", 0.01 * 2**attempt)))
    raise AssertionError("unreachable")


def test_client_with_retries_succeeds_after_two_injected_503s(control: ReplayControl, http: httpx.Client) -> None:
    control.fail("/prompt", 503, count=2, method="POST", headers={"Retry-After": "0.01"})

    first = http.post("/prompt", json={"prompt": workflow()})
    assert first.status_code == 503
    assert first.text == "503: Service Unavailable"
    assert first.headers["content-type"] == "text/plain; charset=utf-8"
    assert first.headers["retry-after"] == "0.01"

    response, attempts = post_with_retries(http, "/prompt", {"prompt": workflow()})
    assert (response.status_code, attempts) == (200, 2)
    # A 503 never reached ComfyUI: the first accepted prompt still gets number 0.
    assert response.json()["number"] == 0
    assert control.wait_for_job(response.json()["prompt_id"])["status"]["status_str"] == "success"
    assert [e["status"] for e in control.find(method="POST", path="/prompt")] == [503, 503, 200]
    control.assert_requested("POST", "/prompt", count=2, status=503)
    assert control.faults() == []  # spent rules are gone


def test_500_reads_like_a_crashing_comfyui_and_hits_only_its_route(control: ReplayControl, http: httpx.Client) -> None:
    control.fail("/history/*", 500, method="GET")
    crashed = http.get("/api/history/some-id")  # /api/... is the same route
    assert crashed.status_code == 500
    assert crashed.content == CRASH_BODY
    assert http.get("/queue").status_code == 200
    assert http.post("/history", json={"clear": True}).status_code == 200  # POST is not GET
    assert http.get("/history/some-id").json() == {}  # count 1 is spent


def test_rule_without_count_fires_until_removed_over_http(server: AnyServer, http: httpx.Client) -> None:
    added = http.post(f"{ADMIN}/faults", json={"kind": "status", "route": "/features", "status": 502, "count": None})
    assert added.status_code == 201
    rule_id = added.json()["added"][0]["id"]
    assert [http.get("/features").status_code for _ in range(3)] == [502, 502, 502]
    listed = http.get(f"{ADMIN}/faults").json()["faults"]
    assert [(r["id"], r["hits"], r["remaining"]) for r in listed] == [(rule_id, 3, None)]
    assert http.delete(f"{ADMIN}/faults/{rule_id}").status_code == 200
    assert http.get("/features").json() == {"supports_preview_metadata": True, "max_upload_size": 104857600}


@pytest.mark.real_server
def test_delayed_response_times_out_a_short_timeout_client(control: ReplayControl, server: ReplayServer) -> None:
    control.delay("/prompt", 0.6, count=1, method="GET")
    with httpx.Client(base_url=server.url, timeout=0.15) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.get("/prompt")
        assert impatient.get("/prompt").json() == {"exec_info": {"queue_remaining": 0}}  # in time: count 1 is spent


def test_random_delays_stay_within_their_bounds(control: ReplayControl, http: httpx.Client) -> None:
    control.delay("/queue", 0.05, max_seconds=0.15, count=4)
    elapsed = []
    for _ in range(5):
        started = time.monotonic()
        assert http.get("/queue").status_code == 200
        elapsed.append(time.monotonic() - started)
    assert all(0.05 <= t < 1.0 for t in elapsed[:4]), elapsed
    assert len({round(t, 3) for t in elapsed[:4]}) > 1
    matched = [e["matched"] for e in control.find(path="/queue")]
    assert [m.startswith("fault: delayed 0.") for m in matched] == [True, True, True, True, False]  # count 4
    assert all(0.05 <= float(m.split()[-1].rstrip("s")) <= 0.15 for m in matched[:4])


@pytest.mark.real_server
def test_dropped_connection_gets_no_answer_then_the_server_serves_again(control: ReplayControl, http: httpx.Client) -> None:
    control.drop("/queue", count=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.get("/queue")
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    dropped, answered = control.find(path="/queue")
    assert (dropped["status"], dropped["matched"]) == (0, "fault f1: drop")
    assert answered["status"] == 200


# ---------------------------------------------------------------- job faults


def test_forced_execution_error_has_the_captured_shape(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    control.fail_jobs(1, exception_type="torch.OutOfMemoryError", exception_message="CUDA out of memory\n")
    with open_ws(server, "c1") as ws:
        failing = http.post("/prompt", json={"prompt": workflow("doomed"), "client_id": "c1"}).json()["prompt_id"]
        events = events_until_done(ws, failing)
        healthy = http.post("/prompt", json={"prompt": workflow("fine"), "client_id": "c1"}).json()["prompt_id"]
        assert "execution_success" in [e["type"] for e in events_until_done(ws, healthy)]

    kinds = [e["type"] for e in events if e["type"] != "status"]
    assert kinds[-3:] == ["executing", "execution_error", "executing"]
    error = next(e["data"] for e in events if e["type"] == "execution_error")
    reference = captured("error_execution", "execution_error")
    assert list(error) == list(reference)
    assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "SaveImage", ["1"])
    assert (error["exception_type"], error["exception_message"]) == ("torch.OutOfMemoryError", "CUDA out of memory\n")
    assert error["current_outputs"] == ["2", "1"]
    assert error["current_inputs"]["filename_prefix"] == ["doomed"]
    assert all(isinstance(line, str) and line.startswith("  File ") for line in error["traceback"])

    history = control.wait_for_job(failing)
    assert history["status"]["status_str"] == "error" and history["status"]["completed"] is False
    assert history["status"]["messages"][-1] == ["execution_error", error]
    assert (history["outputs"], history["meta"]) == ({}, {})
    assert not (server.engine.roots.output / "doomed_00001_.png").exists()
    assert control.wait_for_job(healthy)["status"]["status_str"] == "success"


def test_forced_error_at_a_chosen_node_names_that_node(control: ReplayControl, http: httpx.Client) -> None:
    control.fail_jobs(node="1", exception_message="bad input")
    prompt_id = http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"]
    error = control.wait_for_job(prompt_id)["status"]["messages"][-1][1]
    assert (error["node_id"], error["node_type"], error["executed"]) == ("1", "EmptyImage", [])
    assert error["current_inputs"]["width"] == [64]


def test_forced_interrupt_ends_the_job_like_a_user_interrupt(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    control.interrupt_jobs(1)
    with open_ws(server, "c2") as ws:
        prompt_id = http.post("/prompt", json={"prompt": workflow(), "client_id": "c2"}).json()["prompt_id"]
        events = [e for e in events_until_done(ws, prompt_id) if e["type"] != "status"]
    assert [e["type"] for e in events[-3:]] == ["executing", "execution_interrupted", "executing"]
    interrupted = events[-2]["data"]
    assert list(interrupted) == list(captured("interrupt", "execution_interrupted"))
    assert (interrupted["node_id"], interrupted["node_type"], interrupted["executed"]) == ("2", "SaveImage", ["1"])
    history = control.wait_for_job(prompt_id)
    assert history["status"]["status_str"] == "error"
    assert history["status"]["messages"][-1] == ["execution_interrupted", interrupted]


@pytest.mark.real_server
def test_websocket_cut_mid_job_and_the_job_still_finishes(control: ReplayControl, server: ReplayServer, http: httpx.Client) -> None:
    control.disconnect_ws(1)
    seen = []
    with open_ws(server, "c3") as ws:
        prompt_id = http.post("/prompt", json={"prompt": workflow(), "client_id": "c3"}).json()["prompt_id"]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = ws.recv(timeout=5)
                seen.append(json.loads(message)["type"])
        assert closed.value.rcvd is None  # no close frame: the connection was cut
    assert "execution_start" in seen and "execution_success" not in seen
    assert seen[-1] == "executing"
    assert control.wait_for_job(prompt_id)["status"]["status_str"] == "success"
    with open_ws(server, "c3"):
        pass  # the same clientId reconnects


def test_websocket_close_with_a_code(control: ReplayControl, server: AnyServer, http: httpx.Client) -> None:
    control.disconnect_ws(node="2", code=1011)
    with open_ws(server, "c4") as ws:
        http.post("/prompt", json={"prompt": workflow(), "client_id": "c4"})
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


@pytest.mark.real_server
def test_websocket_handshake_refused_or_dropped_then_accepted(control: ReplayControl, server: ReplayServer) -> None:
    url = server.url.replace("http://", "ws://") + "/ws?clientId=hs"
    control.fail("/ws", 503, count=1)
    with pytest.raises(InvalidStatus) as refused:
        with connect(url):
            pass
    assert (refused.value.response.status_code, bytes(refused.value.response.body or b"")) == (503, b"503: Service Unavailable")
    control.drop("/api/ws", count=1)
    with pytest.raises(InvalidMessage):
        with connect(server.url.replace("http://", "ws://") + "/api/ws?clientId=hs", open_timeout=2):
            pass
    with open_ws(server, "hs"):
        pass


def test_the_next_n_jobs_fail_then_jobs_succeed_again(control: ReplayControl, http: httpx.Client) -> None:
    control.fail_jobs(2)
    prompt_ids = [http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"] for _ in range(3)]
    outcomes = control.wait_for_jobs(prompt_ids)
    assert [outcomes[p]["status"]["status_str"] for p in prompt_ids] == ["error", "error", "success"]


def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/prompt", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False  # accepted just before the cut, then cut: not refused yet
    return False


@pytest.mark.real_server
def test_server_down_refuses_connections_then_comes_back(control: ReplayControl, server: ReplayServer, http: httpx.Client) -> None:
    before = http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"]
    control.wait_for_job(before)
    with open_ws(server, "c5") as ws:
        started = time.monotonic()
        control.down(0.8)
        assert _until(lambda: _refused(server.url), 0.5), "connections were not refused"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=2)
    with pytest.raises(httpx.TransportError):
        http.get("/queue")  # the pooled keep-alive connection was cut too
    assert _until(lambda: not _refused(server.url), 3.0), "the server did not come back"
    assert time.monotonic() - started >= 0.7
    # Same server, same state: history kept, new sockets and jobs work.
    assert before in httpx.get(server.url + "/history").json()
    with open_ws(server, "c5") as again:
        after = httpx.post(server.url + "/prompt", json={"prompt": workflow(), "client_id": "c5"}).json()["prompt_id"]
        assert events_until_done(again, after)[-1]["data"]["prompt_id"] == after


@pytest.mark.real_server
def test_server_restart_forgets_jobs_a_client_still_polls_for(control: ReplayControl, server: ReplayServer, http: httpx.Client) -> None:
    control.hold("queued")
    finished = http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"]
    assert control.advance(finished)["to"] == "done"
    waiting = http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"]
    control.down(0.8, restart=True)
    assert _until(lambda: _refused(server.url), 0.7)
    assert _until(lambda: not _refused(server.url), 3.0)
    with httpx.Client(base_url=server.url) as fresh:
        # Like a restarted ComfyUI: no history, nothing queued, the counter back at 0; the test's holds remain.
        assert fresh.get(f"/history/{finished}").json() == {} and fresh.get(f"/history/{waiting}").json() == {}
        assert fresh.get("/queue").json() == {"queue_running": [], "queue_pending": []}
        again = fresh.post("/prompt", json={"prompt": workflow()}).json()
        assert again["number"] == 0 and again["prompt_id"] not in (finished, waiting)
    assert control.clock()["holds"] == [{"at": "queued", "prompt_id": None}]
    assert control.count(method="POST", path="/prompt") == 3  # the journal survives


# ---------------------------------------------------------------- the admin API, plain HTTP


def test_fault_admin_api_validates_and_lists(http: httpx.Client) -> None:
    added = http.post(f"{ADMIN}/faults", json=[
        {"kind": "delay", "route": "/view", "seconds": 0.01},
        {"kind": "execution_error", "count": 2, "exception_message": "boom"},
    ])
    assert added.status_code == 201
    assert [(r["id"], r["kind"], r["remaining"]) for r in added.json()["faults"]] == [("f1", "delay", None), ("f2", "execution_error", 2)]

    bad_kind = http.post(f"{ADMIN}/faults", json={"kind": "explode"})
    assert bad_kind.status_code == 400 and "'kind' must be one of" in bad_kind.json()["error"]
    bad_key = http.post(f"{ADMIN}/faults", json={"kind": "status", "route": "/prompt", "stauts": 503})
    assert bad_key.status_code == 400 and "stauts" in bad_key.json()["error"]
    bad_status = http.post(f"{ADMIN}/faults", json={"kind": "status", "status": 200})
    assert bad_status.status_code == 400 and "400-599" in bad_status.json()["error"]
    assert http.post(f"{ADMIN}/faults", content=b"{nope").status_code == 400
    missing = http.delete(f"{ADMIN}/faults/f99")
    assert missing.status_code == 404 and "f1" in missing.json()["error"]

    assert http.post(f"{ADMIN}/reset").status_code == 200
    assert http.get(f"{ADMIN}/faults").json() == {"faults": [], "down_for": 0.0}


def test_configure_takes_faults_and_holds_like_the_pytest_marker_passes_them(control: ReplayControl) -> None:
    control.configure(faults=[{"kind": "status", "route": "/prompt", "status": 503}], hold="queued")
    assert [r["kind"] for r in control.faults()] == ["status"]
    assert control.clock()["holds"] == [{"at": "queued", "prompt_id": None}]
    control.configure(faults={"kind": "drop", "route": "/view"}, hold=[{"at": "node", "node": "3"}])
    assert [r["kind"] for r in control.faults()] == ["status", "drop"]
    with pytest.raises(TypeError, match="unknown replay option"):
        control.configure(explode=True)
    with pytest.raises(ValueError, match="'kind' must be one of"):
        control.configure(faults=[{"kind": "nope"}])
    control.reset()
    assert control.faults() == [] and control.clock()["holds"] == []


# ---------------------------------------------------------------- CLI


def test_cli_flag_parsing() -> None:
    assert parse_cli_status("/prompt:503:2") == {"kind": "status", "route": "/prompt", "status": 503, "count": 2}
    assert parse_cli_status("/history/*:500:*") == {"kind": "status", "route": "/history/*", "status": 500, "count": None}
    assert parse_cli_status("/queue:502") == {"kind": "status", "route": "/queue", "status": 502}
    assert parse_cli_delay("/history/*:0.1-0.3") == {"kind": "delay", "route": "/history/*", "seconds": 0.1, "max_seconds": 0.3, "count": None}
    with pytest.raises(FaultSpecError, match="ROUTE:STATUS"):
        parse_cli_status("/prompt")
    with pytest.raises(FaultSpecError, match="ROUTE:SECONDS"):
        parse_cli_delay("/prompt:soon")
    assert route_matches("/prompt", "/api/prompt") and not route_matches("/prompt", "/prompts")


def test_serve_with_fault_flags(tmp_path: Any) -> None:
    command = [sys.executable, "-m", "comfy_cassettes", "serve", "--port", "0", "--output-dir", str(tmp_path / "out"),
               "--fault", "/prompt:503:1", "--delay", "/queue:0.2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("listening on"):
                break
        url = lines[-1].split()[2]
        assert any("fault f1" in line for line in lines)
        assert httpx.post(url + "/prompt", json={"prompt": workflow()}).status_code == 503
        assert httpx.post(url + "/prompt", json={"prompt": workflow()}).status_code == 200
        started = time.monotonic()
        httpx.get(url + "/queue")
        assert time.monotonic() - started >= 0.2
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


# ---------------------------------------------------------------- the pytest marker and handle

USER_SUITE = """
import httpx
import pytest

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 7}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "user"}},
}


@pytest.mark.comfy_cassette(faults=[{"kind": "status", "route": "/prompt", "status": 503, "count": 2}])
def test_my_client_retries(comfy):
    for attempt in range(1, 4):
        response = httpx.post(comfy.url + "/prompt", json={"prompt": WORKFLOW})
        if response.status_code != 503:
            break
    assert (response.status_code, attempt) == (200, 3)
    comfy.assert_requested("POST", "/prompt", count=2, status=503)


def test_faults_do_not_leak_into_the_next_test(comfy):
    assert comfy.faults() == []
    assert comfy.run(WORKFLOW)["status"]["status_str"] == "success"


def test_my_client_reports_a_failed_job(comfy):
    comfy.fail_jobs(exception_type="torch.OutOfMemoryError", exception_message="CUDA out of memory")
    entry = comfy.run(WORKFLOW)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][1]["exception_type"] == "torch.OutOfMemoryError"


@pytest.mark.comfy_cassette(hold="node:2")
def test_my_client_cancels_a_running_job(comfy):
    prompt_id = comfy.submit({**WORKFLOW, "1": {**WORKFLOW["1"], "inputs": {**WORKFLOW["1"]["inputs"], "color": 8}}})
    assert comfy.wait_held(prompt_id)["at"] == "node:2"
    httpx.post(comfy.url + "/interrupt", json={"prompt_id": prompt_id})
    comfy.release()
    assert comfy.wait_for_job(prompt_id)["status"]["status_str"] == "success"  # node 2 was the last: too late
"""


def test_faults_and_holds_from_the_pytest_marker_and_handle(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = --strict-markers -p no:cacheprovider\nfilterwarnings = error\n")
    pytester.makepyfile(test_user=USER_SUITE)
    pytester.runpytest().assert_outcomes(passed=4)
