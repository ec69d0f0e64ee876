"""Version profiles on a live server: ComfyUI 0.38's jobs API from the engine's real state, its POST /prompt
rules, output metadata, feature flags, /system_stats and assets; 0.3.64 unchanged."""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from comfy_cassettes import DEFAULT_CASSETTE
from comfy_cassettes.comfy.profiles import profile
from comfy_cassettes.control import ReplayControl
from comfy_cassettes.errors import ConfigError
from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.server import ReplayServer
from helpers import finished


def graph(color: int) -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"p{color}"}}}


def submit(http: httpx.Client, color: int, **fields: Any) -> str:
    answer = http.post("/prompt", json={"prompt": graph(color), **fields})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["prompt_id"])


@pytest.fixture
def current(start_server: Callable[..., ReplayServer]) -> ReplayServer:
    return start_server("comfyui", comfyui_version="0.38", dynamic=True)


def test_the_jobs_api_follows_the_engines_state(current: ReplayServer) -> None:
    with httpx.Client(base_url=current.url) as http, ReplayControl(current.url) as control:
        control.fail_jobs(1, exception_message="CUDA out of memory")
        failed = submit(http, 1, extra_data={"extra_pnginfo": {"workflow": {"id": "wf-a"}}})
        finished(http, failed)
        completed = submit(http, 2, extra_data={"extra_pnginfo": {"workflow": {"id": "wf-a"}}})
        finished(http, completed)
        control.hold("node:1")
        running = submit(http, 3)
        control.wait_held(running)
        pending = submit(http, 4)

        listed = http.get("/api/jobs").json()
        assert [(j["id"], j["status"]) for j in listed["jobs"]] == [
            (pending, "pending"), (running, "in_progress"), (completed, "completed"), (failed, "failed")]  # newest first
        assert listed["pagination"] == {"offset": 0, "limit": None, "total": 4, "has_more": False}
        done = next(j for j in listed["jobs"] if j["id"] == completed)
        assert done["outputs_count"] == 1 and done["previewable_outputs_count"] == 1 and done["workflow_id"] == "wf-a"
        assert done["preview_output"] == {"filename": "p2_00001_.png", "subfolder": "", "type": "output",
                                          "metadata": {"kind": "image", "width": 40, "height": 24}, "nodeId": "2", "mediaType": "images"}
        assert done["execution_end_time"] >= done["execution_start_time"] >= done["create_time"]
        error = next(j for j in listed["jobs"] if j["id"] == failed)["execution_error"]
        assert error["exception_message"] == "CUDA out of memory" and error["node_id"] == "2"

        page = http.get("/api/jobs", params={"limit": 2, "offset": 1, "sort_order": "asc"}).json()
        assert [j["id"] for j in page["jobs"]] == [completed, running]
        assert page["pagination"] == {"offset": 1, "limit": 2, "total": 4, "has_more": True}
        assert [j["id"] for j in http.get("/api/jobs", params={"status": "completed, FAILED"}).json()["jobs"]] == [completed, failed]
        assert [j["id"] for j in http.get("/api/jobs", params={"workflow_id": "wf-a"}).json()["jobs"]] == [completed, failed]

        assert http.post(f"/api/jobs/{pending}/cancel").json() == {"cancelled": True}
        assert http.get(f"/api/jobs/{pending}").status_code == 404
        assert http.get(f"/api/jobs/{pending}").json() == {"error": "Job not found"}
        assert http.post("/api/jobs/cancel", json={"job_ids": [running, completed]}).json() == {"cancelled": True}
        control.release()
        finished(http, running)
        cancelled = http.get(f"/api/jobs/{running}").json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["execution_status"]["messages"][-1][0] == "execution_interrupted"
        assert cancelled["workflow"]["prompt"] == graph(3)
        assert http.post(f"/api/jobs/{completed}/cancel").json() == {"cancelled": False}
        assert http.get(f"{current.url}/api/api/jobs").status_code == 200  # ComfyUI adds /api to every route


@pytest.mark.parametrize(("query", "error"), [
    ({"status": "done,bogus"}, "Invalid status value(s): done, bogus. Valid values: pending, in_progress, completed, failed, cancelled"),
    ({"sort_by": "name"}, "sort_by must be 'created_at' or 'execution_duration'"),
    ({"sort_order": "up"}, "sort_order must be 'asc' or 'desc'"),
    ({"limit": "x"}, "limit must be an integer"),
    ({"limit": "0"}, "limit must be a positive integer"),
    ({"offset": "x"}, "offset must be an integer"),
])
def test_the_jobs_api_refuses_bad_queries_like_comfyui(current: ReplayServer, query: dict[str, str], error: str) -> None:
    answer = httpx.get(current.url + "/api/jobs", params=query)
    assert answer.status_code == 400 and answer.json() == {"error": error}


def test_a_batch_cancel_checks_every_id_first(current: ReplayServer) -> None:
    answer = httpx.post(current.url + "/api/jobs/cancel", json={"job_ids": ["x", 3, None, str(uuid.uuid4())]})
    assert answer.status_code == 400
    assert answer.json() == {"error": "job_ids contains invalid id(s)", "invalid_ids": ["x", "3", "None"]}
    assert httpx.post(current.url + "/api/jobs/cancel", json={"ids": []}).json() == {"error": "job_ids must be a list"}
    assert httpx.post(current.url + "/api/jobs/cancel", content=b"{").json() == {"error": "Request body must be valid JSON"}


def test_0_38_prompt_rules(current: ReplayServer) -> None:
    with httpx.Client(base_url=current.url) as http:
        refused = http.post("/prompt", json={"prompt": graph(5), "prompt_id": "my-job-42"})
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_prompt_id"
        accepted = http.post("/prompt", json={"prompt": graph(5), "extra_data": {"api_key_comfy_org": "k-123"}},
                             headers={"Comfy-Usage-Source": "frontend"})
        assert accepted.json()["number"] == 1  # the refused prompt still took a number
        prompt_id = accepted.json()["prompt_id"]
        entry = finished(http, prompt_id)
        extra = entry["prompt"][3]
        assert "api_key_comfy_org" not in extra and extra["comfy_usage_source"] == "frontend" and isinstance(extra["create_time"], int)
        image = entry["outputs"]["2"]["images"][0]
        assert image["metadata"] == {"kind": "image", "width": 40, "height": 24}
        missing = http.post("/prompt", json={"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}).json()["error"]
        assert missing == {"type": "missing_node_type", "message": "Node 'Nope' not found. The custom node may not be installed.",
                           "details": "Node ID '#1'", "extra_info": {"node_id": "1", "class_type": "Nope", "node_title": "Nope"}}
        assert http.get("/features").json()["supports_model_type_tags"] is True
        stats = http.get("/system_stats").json()["system"]
        assert stats["comfyui_version"] == "0.38.1" and stats["required_frontend_version"] == "1.53.6"
        assert stats["deploy_environment"] == "local-git" and stats["comfy_package_versions"][0]["name"] == "comfyui-frontend-package"
        view = http.get("/view", params={"filename": image["filename"]})
        assert view.headers["X-Content-Type-Options"] == "nosniff"
        assert http.get("/api/assets").status_code == 503
        assert http.get("/api/assets").json()["error"]["code"] == "SERVICE_DISABLED"


def test_output_metadata_is_the_size_of_the_file_as_it_is_now(current: ReplayServer) -> None:
    """Dynamic mode: the size of a file the replay just wrote, and after someone else rewrote it, the new one's
    (the same graph again is a cached re-run, reporting the same file)."""
    with httpx.Client(base_url=current.url) as http:
        first = finished(http, submit(http, 7))["outputs"]["2"]["images"][0]
        assert first["metadata"] == {"kind": "image", "width": 40, "height": 24}
        written = current.config.output_dir / first["filename"]
        with Image.open(written) as image:
            assert image.size == (40, 24)
        buffer = io.BytesIO()
        Image.new("RGB", (10, 6)).save(buffer, format="PNG")
        written.write_bytes(buffer.getvalue())
        again = finished(http, submit(http, 7))["outputs"]["2"]["images"][0]
        assert again["filename"] == first["filename"] and again["metadata"] == {"kind": "image", "width": 10, "height": 6}


def test_the_0_3_64_profile_has_none_of_it(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/jobs").status_code == 404
        assert http.post("/prompt", json={"prompt": graph(6), "prompt_id": "my-job-42"}).json()["prompt_id"] == "my-job-42"
        entry = finished(http, "my-job-42")
        assert "metadata" not in entry["outputs"]["2"]["images"][0] and "create_time" not in entry["prompt"][3]
        assert http.get("/features").json() == {"supports_preview_metadata": True, "max_upload_size": 104857600}
        assert http.get("/system_stats").json()["system"]["comfyui_version"] == "0.3.64"


def test_assets_on_make_uploads_and_outputs_assets(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("comfyui", comfyui_version="0.38", assets=True, dynamic=True)
    png = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(png, format="PNG")
    with httpx.Client(base_url=server.url) as http:
        uploaded = http.post("/upload/image", files={"image": ("photo.png", png.getvalue(), "image/png")}).json()
        asset = uploaded["asset"]
        assert asset["name"] == "photo.png" and asset["tags"] == ["input", "uploaded"] and asset["size"] == len(png.getvalue())
        assert asset["asset_hash"].startswith("blake3:") and asset["mime_type"] == "image/png"
        assert http.get(f"/api/assets/{asset['id']}/content").content == png.getvalue()
        prompt_id = submit(http, 7)
        image = finished(http, prompt_id)["outputs"]["2"]["images"][0]
        assert image["id"] == image["preview_id"]
        described = http.get(f"/api/assets/{image['id']}").json()
        assert described["job_id"] == prompt_id and described["metadata"] == {"kind": "image", "width": 40, "height": 24}
        assert len(http.get("/api/assets").json()["assets"]) == 2
        assert http.get("/features").json()["assets"] is True


def test_a_cassettes_version_picks_its_profile_and_serve_can_choose() -> None:
    assert profile("0.3.64").jobs_api is False and profile("0.38.1").jobs_api is True
    with pytest.raises(ConfigError, match="needs a ComfyUI with the assets system"):
        ReplayConfig(assets=True).validated()
    with pytest.raises(ConfigError, match="expected a version"):
        ReplayConfig(comfyui_version="latest").validated()


def test_a_cassette_recorded_from_0_38_replays_as_0_38(start_server: Callable[..., ReplayServer], tmp_path: Path) -> None:
    bundled = Path(DEFAULT_CASSETTE).parent
    newer = tmp_path / "newer.yaml"
    newer.write_text((bundled / "basic_save.yaml").read_text().replace("comfyui_version: 0.3.64", "comfyui_version: 0.38.1"))
    shutil.copytree(bundled / "blobs", tmp_path / "blobs")
    server = start_server(newer)
    assert httpx.get(server.url + "/system_stats").json()["system"]["comfyui_version"] == "0.38.1"
    assert httpx.get(server.url + "/api/jobs").status_code == 200
    chosen = start_server(newer, comfyui_version="0.3.64")
    assert httpx.get(chosen.url + "/api/jobs").status_code == 404
    # Two versions at once: the server cannot be both, and says which cassette is which.
    with pytest.raises(ConfigError, match=r"different ComfyUI versions: 0\.38\.1 \(newer\.yaml\), 0\.3\.64 \(basic_save\.yaml\)"):
        start_server(newer, bundled / "basic_save.yaml")
