"""What the current web page reads from a ComfyUI 0.38 that 0.3.64 answers differently or not at all, on a live
server: /node_replacements, /global_subgraphs, /experiment/models' extensions, /userdata times in milliseconds,
no-store caching of the page and its scripts; /internal/folder_paths on both versions."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from comfy_cassettes.comfy.nodes import NODE_REPLACEMENTS
from comfy_cassettes.replay.server import ReplayServer

Start = Callable[..., ReplayServer]


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A two-file frontend build."""
    (tmp_path / "build" / "assets").mkdir(parents=True)
    (tmp_path / "build" / "index.html").write_bytes(b"<!doctype html><html></html>")
    (tmp_path / "build" / "assets" / "app.js").write_bytes(b"export {};")
    return tmp_path / "build"


def serve(start_server: Start, build: Path, tmp_path: Path, version: str | None) -> httpx.Client:
    server = start_server("comfyui", comfyui_version=version, front_end_root=build, user_dir=tmp_path / f"user-{version}")
    return httpx.Client(base_url=server.url, timeout=10)


def test_node_replacements_and_global_subgraphs_of_0_38(start_server: Start, build: Path, tmp_path: Path) -> None:
    with serve(start_server, build, tmp_path, "0.38") as http:
        for path in ("/node_replacements", "/api/node_replacements"):
            r = http.get(path)
            assert (r.status_code, r.headers["content-type"]) == (200, "application/json; charset=utf-8")
            assert r.json() == NODE_REPLACEMENTS
        replacements = http.get("/api/node_replacements").json()
        # comfy_extras/nodes_replacements.py, in registration order, as NodeReplace.as_dict() writes it
        assert list(replacements) == ["ResizeImagesByLongerEdge", "ImageBatch", "ImageScaleBy", "T2IAdapterLoader",
                                      "Load3DAnimation", "Preview3DAnimation", "SDV_img2vid_Conditioning", "ConditioningAverage "]
        assert replacements["Load3DAnimation"] == [{"new_node_id": "Load3D", "old_node_id": "Load3DAnimation",
                                                    "old_widget_ids": None, "input_mapping": None, "output_mapping": None}]
        assert replacements["ResizeImagesByLongerEdge"][0]["output_mapping"] == [{"new_idx": 0, "old_idx": 0}]
        # No blueprints folder and no custom nodes: no entries, and null for any id (app/subgraph_manager.py).
        assert http.get("/api/global_subgraphs").text == "{}"
        r = http.get("/global_subgraphs/0123abcd")
        assert (r.status_code, r.text, r.headers["content-type"]) == (200, "null", "application/json; charset=utf-8")


def test_0_3_64_has_neither_route(start_server: Start, build: Path, tmp_path: Path) -> None:
    with serve(start_server, build, tmp_path, None) as http:
        assert http.get("/api/node_replacements").status_code == 404
        assert http.get("/api/global_subgraphs").status_code == 404


@pytest.mark.parametrize("version", [None, "0.38"])
def test_internal_folder_paths(start_server: Start, build: Path, tmp_path: Path, version: str | None) -> None:
    with serve(start_server, build, tmp_path, version) as http:
        paths = http.get("/internal/folder_paths").json()
        assert list(paths) == http.get("/api/models").json()  # every folder key, configs and custom_nodes too
        assert paths["checkpoints"] == ["models/checkpoints"]
        assert paths["text_encoders"] == ["models/text_encoders", "models/clip"]
        assert paths["custom_nodes"] == ["custom_nodes"]
        assert http.get("/api/internal/folder_paths").status_code == 404  # a sub-app: no /api twin


def test_experiment_models_lists_extensions_from_0_28(start_server: Start, build: Path, tmp_path: Path) -> None:
    with serve(start_server, build, tmp_path, "0.38") as current:
        folders = {f["name"]: f for f in current.get("/api/experiment/models").json()}
    assert folders["checkpoints"] == {"name": "checkpoints", "folders": ["models/checkpoints"],
                                      "extensions": [".bin", ".ckpt", ".pkl", ".pt", ".pt2", ".pth", ".safetensors", ".sft"]}
    assert folders["diffusers"]["extensions"] == ["folder"] and folders["classifiers"]["extensions"] == [""]
    assert "configs" not in folders and "custom_nodes" not in folders
    with serve(start_server, build, tmp_path, None) as old:
        assert all(list(f) == ["name", "folders"] for f in old.get("/api/experiment/models").json())


def test_userdata_times_are_milliseconds_on_0_38(start_server: Start, build: Path, tmp_path: Path) -> None:
    with serve(start_server, build, tmp_path, "0.38") as http:
        written = http.post("/api/userdata/workflows%2Fa.json", params={"full_info": "true"}, content=b"{}").json()
        stored = tmp_path / "user-0.38" / "default" / "workflows" / "a.json"
        assert written == {"path": "workflows/a.json", "size": 2, "modified": int(os.path.getmtime(stored) * 1000),
                           "created": int(os.path.getctime(stored) * 1000)}
        listed = http.get("/api/userdata", params={"dir": "workflows", "recurse": "true", "full_info": "true"}).json()
        assert listed == [{**written, "path": "a.json"}]
        assert isinstance(http.get("/api/v2/userdata").json()[1]["modified"], float)  # v2 keeps st_mtime


def test_0_38_never_stores_the_page_or_its_scripts(start_server: Start, build: Path, tmp_path: Path) -> None:
    with serve(start_server, build, tmp_path, "0.38") as http:
        page = http.get("/")
        assert (page.headers["cache-control"], page.headers["pragma"], page.headers["expires"]) == ("no-store, must-revalidate", "no-cache", "0")
        assert http.get("/assets/app.js").headers["cache-control"] == "no-store"
        assert http.get("/assets/missing.js").headers["cache-control"] == "no-store"
        assert http.get("/api/userdata/missing.css").headers["cache-control"] == "no-store"
    with serve(start_server, build, tmp_path, None) as old:
        assert old.get("/").headers["cache-control"] == "no-cache"
        assert old.get("/assets/app.js").headers["cache-control"] == "no-cache"


def test_0_38_user_files_are_downloads_but_the_user_stylesheet(start_server: Start, build: Path, tmp_path: Path) -> None:
    with serve(start_server, build, tmp_path, "0.38") as http:
        for name, body in (("user.css", b"body{}"), ("workflows%2Fa.json", b"{}"), ("page.html", b"<p>"), ("x.svg", b"<svg/>")):
            assert http.post(f"/api/userdata/{name}", content=body).status_code == 200
        heads = {name: http.get(f"/api/userdata/{name}").headers for name in ("user.css", "workflows%2Fa.json", "page.html", "x.svg")}
    assert [(k, heads["user.css"][k]) for k in ("content-type", "x-content-type-options", "content-disposition")] == [
        ("content-type", "text/css"), ("x-content-type-options", "nosniff"), ("content-disposition", "inline")]
    assert (heads["workflows%2Fa.json"]["content-type"], heads["workflows%2Fa.json"]["content-disposition"]) == ("application/json", "attachment")
    assert heads["page.html"]["content-type"] == heads["x.svg"]["content-type"] == "application/octet-stream"  # dangerous
    assert "etag" in heads["user.css"] and "last-modified" in heads["user.css"]  # still aiohttp's FileResponse
    with serve(start_server, build, tmp_path, None) as old:
        assert old.post("/api/userdata/workflows%2Fa.json", content=b"{}").status_code == 200
        r = old.get("/api/userdata/workflows%2Fa.json")
        assert (r.headers["content-type"], "content-disposition" in r.headers) == ("application/json", False)
