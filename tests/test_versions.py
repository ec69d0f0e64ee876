"""ComfyUI versions as numbers and differences as rows: a version in the known range gets exactly the rows not
newer than it, one outside is refused or announced, and a cassette knows its version (recorded, inferred from its
traffic, or given), through the command line and a served replay."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from comfy_cassettes.comfy.differences import DIFFERENCES
from comfy_cassettes.comfy.profiles import Profile, parts, profile
from comfy_cassettes.replay.server import ReplayServer
from helpers import SESSIONS, SESSIONS_08, finished

CLI = [sys.executable, "-m", "comfy_cassettes"]
GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "v"}}}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("version", ["0.3.64", "0.5.0", "0.8.0", "0.20.0", "0.38.1"])
def test_a_version_has_for_each_field_its_newest_row_not_newer_than_it(version: str) -> None:
    chosen = profile(version)
    for name in {d.field for d in DIFFERENCES}:
        rows = [d for d in DIFFERENCES if d.field == name and parts(d.since) <= parts(version)]
        expected = max(rows, key=lambda d: parts(d.since)).value if rows else getattr(Profile(version=version), name)
        assert getattr(chosen, name) == expected, (version, name)


def test_0_5_0_is_served_with_the_differences_older_than_it(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui", comfyui_version="0.5.0", timing="instant")  # polled back to back: over at once
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/system_stats").json()["system"]["comfyui_version"] == "0.5.0"
        assert "extension" in http.get("/features").json()  # 0.4.0
        answer = http.post("/prompt", json={"prompt": GRAPH, "prompt_id": "Not-A-UUID"}).json()
        entry = finished(http, answer["prompt_id"])
        assert "create_time" in entry["prompt"][3] and "metadata" not in entry["outputs"]["2"]["images"][0]  # 0.3.69, not 0.34
        assert http.get("/api/jobs").status_code == 404  # 0.6.0


def test_0_8_0_answers_the_jobs_api_as_0_8_0(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui", comfyui_version="0.8.0", timing="instant")  # polled back to back: over at once
    with httpx.Client(base_url=server.url) as http:
        prompt_id = http.post("/prompt", json={"prompt": GRAPH, "prompt_id": "MY-JOB"}).json()["prompt_id"]
        assert prompt_id == "MY-JOB"  # no prompt_id validation
        finished(http, prompt_id)
        job = http.get("/api/jobs/MY-JOB").json()
        assert job["status"] == "completed" and "previewable_outputs_count" not in job and job["outputs_count"] == 1
        assert job["preview_output"]["mediaType"] == "images" and job["preview_output"]["nodeId"] == "2"
        refused = http.get("/api/jobs", params={"status": "cancelled"})
        assert (refused.status_code, refused.json()) == (400, {"error": "Invalid status value(s): cancelled. Valid values: "
                                                                         "pending, in_progress, completed, failed"})
        cancel = http.post("/api/jobs/MY-JOB/cancel")
        assert (cancel.status_code, cancel.text, cancel.headers["allow"]) == (405, "405: Method Not Allowed", "GET,HEAD")
        unknown = http.post("/prompt", json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}).json()
        assert unknown["error"]["type"] == "invalid_prompt"
        assert http.get("/features").json() == {"supports_preview_metadata": True, "max_upload_size": 104857600,
                                                "extension": {"manager": {"supports_v4": True}}}


def test_versions_outside_the_known_range_are_not_served_silently() -> None:
    older = run("serve", "--comfyui-version", "0.2", "--port", "0")
    assert older.returncode == 1 and "Traceback" not in older.stderr
    assert "ComfyUI 0.2.0 is older than the versions known (0.3.64 to 0.38.1)" in older.stderr

    process = subprocess.Popen([*CLI, "serve", "--comfyui-version", "9.9", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        warning = process.stderr.readline()
        url = next(line.split()[2] for line in process.stdout if line.startswith("listening on"))
        assert "ComfyUI 9.9.0 is newer than the versions known (0.3.64 to 0.38.1): emulated as 0.38.1" in warning
        assert "comfy-cassettes verify" in warning
        assert httpx.get(url + "/system_stats", timeout=30).json()["system"]["comfyui_version"] == "0.38.1"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_import_infers_the_version_from_the_traffic_and_inspect_says_so(tmp_path: Path) -> None:
    har = str(SESSIONS_08 / "basic_save" / "session.har")  # never asked /system_stats; its items have create_time
    imported = run("import", har, "-o", str(tmp_path / "a.yaml"))
    assert imported.returncode == 0 and "ComfyUI 0.8.0 (inferred from its traffic)" in imported.stdout, imported.stderr
    assert "ComfyUI 0.8.0 (inferred from its traffic)" in run("inspect", str(tmp_path / "a.yaml")).stdout
    older = run("import", str(SESSIONS / "basic_save" / "session.har"), "-o", str(tmp_path / "b.yaml"))
    assert "ComfyUI 0.3.64 (inferred from its traffic)" in older.stdout
    given = run("import", har, "-o", str(tmp_path / "c.yaml"), "--comfyui-version", "0.5.0")
    assert "ComfyUI 0.5.0 (as given)" in given.stdout
    stated = run("import", str(SESSIONS_08 / "snapshots" / "session.har"), "-o", str(tmp_path / "d.yaml"))
    assert "ComfyUI 0.8.0 (from /system_stats)" in stated.stdout


def test_contradicting_or_mixed_versions_are_one_line_errors(tmp_path: Path) -> None:
    contradicted = run("import", str(SESSIONS_08 / "snapshots" / "session.har"), "-o", str(tmp_path / "a.yaml"),
                       "--comfyui-version", "0.3.64")
    assert contradicted.returncode == 1 and "the sessions' /system_stats says ComfyUI 0.8.0" in contradicted.stderr
    mixed = run("import", str(SESSIONS_08 / "basic_save" / "session.har"), str(SESSIONS / "basic_save" / "session.har"),
                "-o", str(tmp_path / "b.yaml"))
    assert mixed.returncode == 1 and "different ComfyUI versions: 0.8.0" in mixed.stderr and "0.3.64" in mixed.stderr
    assert "Traceback" not in contradicted.stderr + mixed.stderr and not (tmp_path / "b.yaml").exists()
    outside = run("import", str(SESSIONS_08 / "basic_save" / "session.har"), "-o", str(tmp_path / "c.yaml"), "--comfyui-version", "0.1")
    assert outside.returncode == 1 and "older than the versions known" in outside.stderr
