"""Against a real ComfyUI (opt-in: COMFYUI_URL, like the live recording test; a server no other client uses meanwhile,
since the jobs API lists every job): the replay, being the version the
live server reports, answers the jobs API, the prompt rules and the feature flags as that server does, value by
value; and `verify` of a cassette recorded from it finds no difference."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from typer.testing import CliRunner

from comfy_cassettes.cli import app
from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.server import ReplayServer
from value_compare import ValueComparer

LIVE = os.environ.get("COMFYUI_URL", "")
pytestmark = pytest.mark.skipif(not LIVE, reason="set COMFYUI_URL to compare with a real ComfyUI")

QUICK = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 1, "color": 0}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "live_versions"}}}
# Seconds of CPU on a real server, long enough to interrupt it (the snapshots capture's slow job).
SLOW = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2048, "height": 2048, "batch_size": 1, "color": 1118481}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "live_versions_slow"}}}
JOB_QUERIES = ["", "?status=cancelled", "?status=completed,failed&sort_order=asc", "?sort_by=execution_duration&status=pending",
               "?limit=1&offset=1", "?limit=0", "?limit=x", "?offset=-3", "?sort_by=size", "?sort_order=up",
               "?workflow_id=wf-live"]


def wait(http: httpx.Client, prompt_id: str) -> None:
    deadline = time.monotonic() + 60
    while not http.get(f"/history/{prompt_id}").json() and time.monotonic() < deadline:
        time.sleep(0.05)


def run_sequence(url: str, color: int, running: Callable[[str], None], resume: Callable[[], None]) -> list[tuple[str, int, Any]]:
    """The same client session against any server: (what, status, body) of each answer."""
    seen: list[tuple[str, int, Any]] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/queue", json={"clear": True})
        http.post("/history", json={"clear": True})
        with connect(url.replace("http", "ws") + "/ws?clientId=live-versions") as ws:
            json.loads(ws.recv(timeout=10))  # status
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            seen.append(("ws feature_flags", 200, json.loads(ws.recv(timeout=10))))
        extra = {"extra_pnginfo": {"workflow": {"id": "wf-live"}}}
        quick = dict(QUICK, **{"1": {**QUICK["1"], "inputs": {**QUICK["1"]["inputs"], "color": color}}})
        for body in ({"prompt": quick, "prompt_id": "Live-Job-1", "number": 7, "extra_data": extra},
                     {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}):
            answer = http.post("/prompt", json=body)
            seen.append((f"POST /prompt {body.get('prompt_id')}", answer.status_code, answer.json()))
        wait(http, "Live-Job-1")
        # The same prompt again without client_id, all cached: from 0.3.68 its history leaves the cached outputs out.
        http.post("/prompt", json={"prompt": quick, "prompt_id": "live-job-1-again", "number": 7, "extra_data": extra})
        wait(http, "live-job-1-again")
        entry = http.get("/history/live-job-1-again").json()["live-job-1-again"]
        seen.append(("GET /history/live-job-1-again outputs and meta", 200, [entry["outputs"], entry["meta"]]))
        slow = http.post("/prompt", json={"prompt": SLOW, "prompt_id": "live-job-2", "number": 8}).json()["prompt_id"]
        waiting = dict(quick, **{"1": {**quick["1"], "inputs": {**quick["1"]["inputs"], "color": color + 1}}})
        http.post("/prompt", json={"prompt": waiting, "prompt_id": "live-job-3", "number": 9})
        running(slow)  # the slow job runs, the last one waits
        for path in ("/api/jobs", "/api/jobs/live-job-2", "/api/jobs/live-job-3"):
            answer = http.get(path)
            seen.append((f"GET {path} (queued)", answer.status_code, answer.json()))
        http.post("/interrupt", json={})
        resume()
        wait(http, slow)
        wait(http, "live-job-3")
        for path in ["/api/jobs" + q for q in JOB_QUERIES] + ["/api/jobs/Live-Job-1", "/api/jobs/live-job-2", "/api/jobs/nope", "/features",
                                                                                                 "/models", "/object_info/SaveImage"]:
            answer = http.get(path)
            seen.append((f"GET {path}", answer.status_code, answer.json()))
        stats = http.get("/system_stats")  # the machine's devices and the server's command line aside
        seen.append(("GET /system_stats", stats.status_code, {k: v for k, v in stats.json()["system"].items() if k != "argv"}))
        for path in ("/api/jobs/live-job-2/cancel", "/api/jobs/cancel"):
            answer = http.post(path, json={"job_ids": ["live-job-2"]})
            seen.append((f"POST {path}", answer.status_code, answer.text))
    return seen


def test_the_replay_of_the_live_version_answers_as_it_does(start_server: Callable[..., ReplayServer], tmp_path: Path) -> None:
    version = httpx.get(LIVE + "/system_stats").json()["system"]["comfyui_version"]

    color = int(time.time()) % 1000  # a value the live server has not cached
    live = run_sequence(LIVE, color, lambda prompt_id: time.sleep(1.0), lambda: None)  # 1 s into its long blur
    server = start_server("comfyui", comfyui_version=version, dynamic=True)

    with ReplayControl(server.url) as control:
        control.hold("node:2", prompt_id="live-job-2")  # the slow job's blur, where the live server is interrupted
        replayed = run_sequence(server.url, color, lambda prompt_id: control.wait_held(prompt_id) and None, control.release)
    comparer = ValueComparer()
    for (what, status, body), (_, got_status, got) in zip(live, replayed, strict=True):
        if status != got_status:
            comparer.problems.append(f"{what}: status {got_status} != {status}")
        else:
            comparer.compare(body, got, what)
    assert not comparer.problems, "\n".join(comparer.problems)
    # In the same test: two tests driving one live server at once (xdist) would see each other's jobs.
    verify_of_a_recording_finds_no_difference(tmp_path)


def verify_of_a_recording_finds_no_difference(tmp_path: Path) -> None:
    """`record` from the live server, `inspect` shows its version, `verify` against it finds nothing."""
    workflow = tmp_path / "wf.json"
    quick = dict(QUICK, **{"1": {**QUICK["1"], "inputs": {**QUICK["1"]["inputs"], "color": int(time.time()) % 997 + 1000}}})
    workflow.write_text(json.dumps(quick))
    out = tmp_path / "live.yaml"
    recorded = CliRunner().invoke(app, ["record", str(workflow), "--server", LIVE, "-o", str(out)])
    assert recorded.exit_code == 0, recorded.output
    shown = CliRunner().invoke(app, ["inspect", str(out)])
    version = httpx.get(LIVE + "/system_stats").json()["system"]["comfyui_version"]
    assert f"ComfyUI {version} (from /system_stats)" in shown.output
    verified = CliRunner().invoke(app, ["verify", str(out), "--server", LIVE])
    assert verified.exit_code == 0, verified.output
