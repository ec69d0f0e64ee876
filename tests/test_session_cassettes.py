"""A cassette of one session serves like a whole ComfyUI (a base answers what it never recorded); recording then
verifying against the same server agrees; vcr matches like the server and says where it looked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from comfy_cassettes.cli import app
from comfy_cassettes.record.live import record_workflow
from comfy_cassettes.replay.server import ReplayServer
from comfy_cassettes.verify import verify
from helpers import bundled


def client_that_reads_the_catalogue(url: str) -> dict[str, Any]:
    """A client like ComfyScript: learns the nodes from /object_info, builds a graph from their defaults, runs it."""
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/system_stats").json()["system"]["comfyui_version"] == "0.3.64"
        catalogue = http.get("/object_info").json()
        empty = {name: spec[1]["default"] for name, spec in catalogue["EmptyImage"]["input"]["required"].items()}
        empty.update(width=32, height=24)
        graph = {"1": {"class_type": "EmptyImage", "inputs": empty},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "from_catalogue"}}}
        assert catalogue["SaveImage"]["output_node"] is True
        prompt_id = http.post("/prompt", json={"prompt": graph}).json()["prompt_id"]
        for _ in range(500):
            entry = http.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry:
                return dict(entry)
        raise AssertionError("the job never finished")


def test_a_session_cassette_answers_what_it_never_recorded_from_the_base(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save")  # its session never asked /object_info or /system_stats
    entry = client_that_reads_the_catalogue(server.url)
    assert entry["outputs"]["2"]["images"][0]["filename"] == "from_catalogue_00001_.png"
    assert httpx.get(server.url + "/models").status_code == 200
    assert server.engine.journal.problems() == {"errors": [], "unmatched": []}


def test_without_the_base_the_session_cassette_answers_only_what_it_recorded(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save", base=None)
    answer = httpx.get(server.url + "/object_info")
    assert answer.status_code == 404 and answer.headers["X-Comfy-Cassettes"] == "unmatched"


def test_the_cassettes_own_answers_win_over_the_base(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("txt2img")  # recorded its own /object_info, listing its checkpoint
    info = httpx.get(server.url + "/object_info/CheckpointLoaderSimple").json()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["random-sd15.safetensors"]


def test_a_base_lists_the_models_the_sessions_jobs_loaded(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("txt2img_interrupt")  # no /object_info of its own: the base's, plus its checkpoint
    assert httpx.get(server.url + "/models/checkpoints").json() == ["random-sd15.safetensors"]


def test_inspect_says_which_routes_come_from_the_base() -> None:
    result = CliRunner().invoke(app, ["inspect", str(bundled("basic_save"))])
    assert result.exit_code == 0
    assert "answered from the base snapshots.yaml" in result.output and "GET /object_info" in result.output
    assert "from the base" not in CliRunner().invoke(app, ["inspect", str(bundled("basic_save")), "--no-base"]).output


def test_record_then_verify_against_the_same_server_finds_no_difference(start_server: Callable[..., ReplayServer], tmp_path: Path) -> None:
    server = start_server("comfyui")
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 4242}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "verify_me"}}}
    recorded = record_workflow(graph, server.url, tmp_path / "recorded.yaml", repeat=2)
    assert recorded.statuses == ["success", "success"]
    # The server now holds the graph in its cache: the first job, recorded uncached, must run uncached again.
    report = verify(recorded.path, server.url)
    assert report.ok, report.differences
    assert any("POST /free" in note for note in report.notes)


def test_vcr_ignores_per_job_prefixes_and_texts_like_the_server(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings = error\n")
    pytester.makepyfile(f"""
        import httpx
        import pytest
        from comfy_cassettes.vcr import bundled_cassette

        GRAPH = {{"1": {{"class_type": "EmptyImage", "inputs": {{"width": 64, "height": 64, "batch_size": 1, "color": 16744448}}}},
                  "2": {{"class_type": "SaveImage", "inputs": {{"images": ["1", 0], "filename_prefix": "gen_job_4711"}}}}}}

        @pytest.mark.vcr(bundled_cassette("basic_save"))
        def test_per_job_prefix():
            with httpx.Client(base_url="http://comfy.invalid:8188") as http:
                answer = http.post("/prompt", json={{"prompt": GRAPH, "client_id": "me"}})
                assert answer.status_code == 200 and answer.json()["prompt_id"]

        @pytest.mark.vcr(bundled_cassette("basic_save"))
        def test_a_miss_names_the_file_searched():
            with httpx.Client(base_url="http://comfy.invalid:8188") as http:
                http.get("/system_stats")
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    assert f"searched: {bundled('basic_save').resolve()}" in result.stdout.str()


def test_bundled_cassettes_say_which_comfyui_they_come_from() -> None:
    for path in sorted(bundled("comfyui").parent.glob("*.yaml")):
        text = path.read_text()
        assert "comfyui_version: 0.3.64" in text, path.name
    assert json.loads(json.dumps({"ok": True}))  # the files above were read whole
