"""The bundled bases, chosen by the version served: a replay of ComfyUI 0.8.0 (or newer) answers the informational
routes its cassettes never recorded from a real 0.8.0's answers, so it lists and validates the nodes 0.8.0 has
(and refuses those it lacks) as real 0.8.0 did; an older replay keeps 0.3.64's; an explicit --base wins."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from comfy_cassettes.cassette.load import load
from comfy_cassettes.cassette.templating import render_text
from comfy_cassettes.cli import app
from comfy_cassettes.comfy.routes import is_base_route
from comfy_cassettes.importer import import_har
from comfy_cassettes.replay.config import BUNDLED_BASES, DEFAULT_BASE
from comfy_cassettes.replay.server import ReplayServer
from helpers import DATA, bundled, finished, http_entries, request_path, response_json
from serve_process import serve
from value_compare import ValueComparer

# Recorded from a real 0.8.0 through `record --proxy`: three prompts and nothing else (its README).
NEW_NODES = DATA / "new_nodes_0.8" / "new_nodes.yaml"
SNAPSHOTS_08 = "real_sessions_0.8/snapshots"
ONLY_08 = ("AdjustBrightness", "ImageGrid", "EmptyFlux2LatentImage", "BatchImagesNode")
BRIGHTER = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5}},
            "2": {"class_type": "AdjustBrightness", "inputs": {"images": ["1", 0], "factor": 0.5}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "dim"}}}


def captured_object_info() -> dict[str, Any]:
    """Real 0.8.0's GET /object_info, from the captured snapshots session."""
    entry = next(e for e in http_entries(SNAPSHOTS_08) if request_path(e) == "/object_info")
    return dict(response_json(entry))


def test_each_bundled_base_is_recorded_from_the_version_it_is_listed_under() -> None:
    for version, path in BUNDLED_BASES.items():
        cassette = load(path)
        assert cassette.comfyui_version == version
        assert all(item.method == "GET" and is_base_route(item.path) for item in cassette.interactions) or path == DEFAULT_BASE


def test_a_0_8_0_replay_answers_prompts_of_0_8_only_nodes_as_real_0_8_0_did(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server(NEW_NODES, timing="instant")
    comparer = ValueComparer()
    with httpx.Client(base_url=server.url) as http:
        listed = http.get("/object_info").json()
        assert set(listed) == set(captured_object_info()) and all(name in listed for name in ONLY_08)
        for index, job in enumerate(load(NEW_NODES).jobs):
            answer = http.post("/prompt", json={"prompt": job.workflow})
            assert answer.status_code == job.response_status, answer.text
            # The recorded answer's placeholders filled with values of their kind; the comparer maps a uuid to ours.
            recorded = render_text(job.response_body, {"prompt_id": str(uuid.uuid4()), "number": 0})
            comparer.compare(json.loads(recorded), answer.json(), f"POST /prompt of job {index}")
            if answer.status_code == 200:
                entry = finished(http, answer.json()["prompt_id"])
                assert entry["status"]["status_str"] == "success" and entry["outputs"]["3"]["images"]
    assert not comparer.problems, "\n".join(comparer.problems)


def test_a_0_8_0_session_accepts_a_graph_of_0_8_only_nodes_it_never_recorded(start_server: Callable[..., ReplayServer],
                                                                            tmp_path: Path) -> None:
    cassette = import_har([DATA / "real_sessions_0.8" / "basic_save" / "session.har"], tmp_path / "basic_save.yaml")
    server = start_server(cassette, timing="instant")
    with httpx.Client(base_url=server.url) as http:
        answer = http.post("/prompt", json={"prompt": BRIGHTER})
        assert answer.status_code == 200 and answer.json()["node_errors"] == {}
        assert finished(http, answer.json()["prompt_id"])["status"]["status_str"] == "success"
        assert http.get("/system_stats").json()["system"]["comfyui_version"] == "0.8.0"


def test_the_0_8_0_base_answers_as_the_real_0_8_0_did(start_server: Callable[..., ReplayServer]) -> None:
    """Every informational GET of the captured snapshots session, replayed from the bundled base alone."""
    server = start_server(NEW_NODES, recorded_inputs=False)
    comparer, checked = ValueComparer(), 0
    with httpx.Client(base_url=server.url) as http:
        for entry in http_entries(SNAPSHOTS_08):
            url = entry["request"]["url"]
            if entry["request"]["method"] != "GET" or not is_base_route(request_path(entry)):
                continue
            answer = http.get(url[url.index("/", len("http://")):])
            assert answer.status_code == entry["response"]["status"], url
            if answer.status_code == 200:
                comparer.compare(response_json(entry), answer.json(), url)
                checked += 1
        assert http.get("/object_info").json() == captured_object_info()
    assert checked >= 20 and not comparer.problems, "\n".join(comparer.problems)


@pytest.mark.parametrize(("version", "base_version"), [("0.3.64", "0.3.64"), ("0.7.0", "0.3.64"), ("0.8.0", "0.8.0"),
                                                       ("0.38", "0.8.0")])
def test_the_base_is_the_newest_bundled_one_not_newer_than_the_version_served(
        start_server: Callable[..., ReplayServer], version: str, base_version: str) -> None:
    server = start_server("basic_save", comfyui_version=version, timing="instant")
    with httpx.Client(base_url=server.url) as http:
        listed = http.get("/object_info").json()
        assert all((name in listed) == (base_version == "0.8.0") for name in ONLY_08)
        stats = http.get("/system_stats").json()["system"]
        refused = http.post("/prompt", json={"prompt": BRIGHTER})
    recorded = load(BUNDLED_BASES[base_version])
    last = [item for item in recorded.interactions if item.path == "/system_stats"][-1]  # the last recording wins
    recorded_stats = json.loads(recorded.body(last))["system"]
    # Served as the base's own version, /system_stats is the recorded one; served as another, it is that version's.
    assert stats["comfyui_version"] == server.engine.profile.version
    assert (stats == recorded_stats) == (server.engine.profile.version == base_version)
    if base_version == "0.3.64":
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_prompt"
    else:
        assert refused.status_code == 200


def test_an_explicit_base_wins_over_the_version_served(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copyfile(DEFAULT_BASE, mine / "base.yaml")
    shutil.copytree(DEFAULT_BASE.parent / "blobs", mine / "blobs")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with serve(tmp_path / "a", str(NEW_NODES), "--base", str(mine / "base.yaml")) as (url, _):
        listed = httpx.get(url + "/object_info").json()
        assert "AdjustBrightness" not in listed and "SaveLoRANode" in listed
    with serve(tmp_path / "b", str(NEW_NODES), "--no-base") as (url, _):
        assert httpx.get(url + "/object_info").status_code == 404


def test_inspect_names_the_base_serve_takes_for_the_cassettes_version() -> None:
    shown = CliRunner().invoke(app, ["inspect", str(NEW_NODES)], terminal_width=200).output
    assert "answered from the base comfyui-0.8.0.yaml" in shown and "GET /object_info" in shown
    older = CliRunner().invoke(app, ["inspect", str(bundled("basic_save"))], terminal_width=200).output
    assert "answered from the base snapshots.yaml" in older
