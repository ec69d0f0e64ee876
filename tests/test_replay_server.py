"""Full client lifecycles against a live replay server: WebSocket-driven, polling-driven, concurrent, hostile."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image

from comfy_cassettes.cassette import load
from comfy_cassettes.replay.config import BUNDLED_DIR

BUNDLED = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def replayable_jobs(name: str) -> list[Any]:
    """Jobs of a bundled cassette a client can submit and see finish (not rejected, not deleted before running)."""
    return [job for job in load(BUNDLED_DIR / f"{name}.yaml").jobs if job.status in ("success", "error")]


def prepare_inputs(input_dir: Path, workflow: dict[str, Any]) -> None:
    """Put the files a LoadImage node names into the input folder (a broken one stays broken)."""
    for node in workflow.values():
        if node.get("class_type") == "LoadImage":
            name = str(node["inputs"]["image"])
            path = input_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.startswith("broken"):
                path.write_bytes(b"not an image")
            else:
                Image.new("RGB", (64, 64), (200, 10, 10)).save(path)


async def ws_lifecycle(url: str, workflow: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit over HTTP, follow /ws until `executing` with node null for our prompt, then read history."""
    client_id = uuid.uuid4().hex
    events: list[dict[str, Any]] = []
    async with websockets.connect(url.replace("http://", "ws://") + f"/ws?clientId={client_id}") as ws:
        hello = json.loads(await ws.recv())
        assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}}
        async with httpx.AsyncClient(base_url=url) as http:
            answer = (await http.post("/prompt", json={"prompt": workflow, "client_id": client_id})).json()
            prompt_id = answer["prompt_id"]
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                if isinstance(message, bytes):
                    continue
                event = json.loads(message)
                events.append(event)
                if event["type"] == "executing" and event["data"] == {"node": None, "prompt_id": prompt_id}:
                    break
            history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    return history, events


@pytest.mark.parametrize("name", [n for n in BUNDLED if replayable_jobs(n)])
def test_websocket_lifecycle_for_every_bundled_cassette(name: str, start_server, tmp_path: Path) -> None:
    server = start_server(name, dynamic=True)
    for job in replayable_jobs(name):
        prepare_inputs(server.engine.roots.input, job.workflow)
        history, events = asyncio.run(ws_lifecycle(server.url, job.workflow))
        kinds = [e["type"] for e in events]
        assert kinds[0] == "status" and "execution_start" in kinds
        assert history["status"]["status_str"] == job.status
        assert history["status"]["completed"] is (job.status == "success")
        for output in history["outputs"].values():
            for image in output.get("images", []):
                view = httpx.get(f"{server.url}/view", params=image)
                assert view.status_code == 200, image
                assert Image.open(io.BytesIO(view.content)).size[0] > 0
                folder = server.engine.roots.temp if image["type"] == "temp" else server.engine.roots.output
                assert (folder / image["subfolder"] / image["filename"]).is_file()


def test_polling_lifecycle_without_websocket(start_server) -> None:
    server = start_server("basic_save")
    workflow = replayable_jobs("basic_save")[0].workflow
    with httpx.Client(base_url=server.url) as http:
        names = []
        for color in (1, 2, 3):
            workflow["1"]["inputs"]["color"] = color
            prompt_id = http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"]
            for _ in range(500):
                entry = http.get(f"/history/{prompt_id}").json().get(prompt_id)
                if entry:
                    break
            assert entry["status"]["status_str"] == "success"
            image = entry["outputs"]["2"]["images"][0]
            names.append(image["filename"])
            assert http.get("/view", params=image).headers["content-type"] == "image/png"
    assert names == ["ComfyUI_00001_.png", "ComfyUI_00002_.png", "ComfyUI_00003_.png"]
    # Static mode: the names advance but nothing is written.
    assert not any(server.engine.roots.output.iterdir())


def test_prompt_ids_are_deterministic_for_a_seed(start_server) -> None:
    ids = []
    for _ in range(2):
        server = start_server("basic_save", seed=7)
        workflow = replayable_jobs("basic_save")[0].workflow
        ids.append([httpx.post(f"{server.url}/prompt", json={"prompt": workflow}).json()["prompt_id"] for _ in range(3)])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3
    uuid.UUID(ids[0][0], version=4)


def test_two_hundred_concurrent_jobs_in_dynamic_mode(start_server) -> None:
    server = start_server("basic_save", dynamic=True)
    workflow = replayable_jobs("basic_save")[0].workflow

    async def run() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as http:
            async def one(i: int) -> dict[str, Any]:
                graph = json.loads(json.dumps(workflow))
                graph["1"]["inputs"]["color"] = i  # distinct prompts: identical ones would be served from cache
                prompt_id = (await http.post("/prompt", json={"prompt": graph})).json()["prompt_id"]
                while True:
                    entry = (await http.get(f"/history/{prompt_id}")).json().get(prompt_id)
                    if entry:
                        return dict(entry)
                    await asyncio.sleep(0.1)  # a polite poller, like real clients

            return await asyncio.gather(*(one(i) for i in range(200)))

    entries = asyncio.run(run())
    names = {e["outputs"]["2"]["images"][0]["filename"] for e in entries}
    assert len(names) == 200
    assert all(e["status"]["status_str"] == "success" for e in entries)
    assert all((server.engine.roots.output / n).is_file() for n in names)
    assert len(httpx.get(f"{server.url}/history").json()) == 200


def test_identical_prompt_is_a_cached_rerun(start_server) -> None:
    server = start_server("cached_rerun")
    workflow = replayable_jobs("cached_rerun")[0].workflow
    first, _ = asyncio.run(ws_lifecycle(server.url, workflow))
    second, events = asyncio.run(ws_lifecycle(server.url, workflow))
    cached = next(e for e in events if e["type"] == "execution_cached")["data"]["nodes"]
    assert sorted(cached) == sorted(workflow)
    assert not any(e["type"] == "executing" and e["data"]["node"] for e in events)
    assert second["outputs"] == first["outputs"]


def test_hostile_and_malformed_requests(start_server) -> None:
    server = start_server("view_errors")
    with httpx.Client(base_url=server.url) as http:
        bad = http.post("/prompt", content=b"{not json", headers={"Content-Type": "application/json"})
        assert bad.status_code == 500 and bad.text == "500 Internal Server Error\n\nServer got itself in trouble"
        assert http.post("/prompt", json={"client_id": "x"}).json()["error"]["type"] == "no_prompt"
        assert http.get("/history/not-a-real-id").json() == {}
        assert http.get("/view", params={"filename": "../../etc/passwd"}).status_code == 400
        assert http.get("/view?filename=..%2F..%2Fetc%2Fpasswd&type=output").status_code == 400
        assert http.get("/view", params={"filename": "passwd", "subfolder": "../../../../etc"}).status_code == 403
        assert http.get("/view", params={"filename": "x.png", "type": "bogus"}).status_code == 400
        assert http.get("/view").status_code == 404
        assert http.post("/prompt", json={}, headers={"Origin": "http://evil.example"}).status_code == 403
        missing = http.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["closest"] and "differences" in missing.json()["closest"][0]


def test_api_prefix_and_informational_routes(start_server) -> None:
    server = start_server()  # the bundled default cassette
    with httpx.Client(base_url=server.url) as http:
        for path in ("/system_stats", "/embeddings", "/models", "/extensions", "/features", "/object_info/SaveImage"):
            plain, api = http.get(path), http.get("/api" + path)
            assert plain.status_code == api.status_code == 200
            assert plain.json() == api.json()
        assert http.get("/system_stats").json()["system"]["comfyui_version"] == "0.3.64"
        assert http.get("/object_info/NoSuchNode").json() == {}
        assert http.get("/models/not_a_folder").status_code == 404
        assert http.get("/prompt").json() == {"exec_info": {"queue_remaining": 0}}


def test_a_crashing_handler_answers_like_aiohttp_and_reaches_the_journal(start_server) -> None:
    server = start_server("basic_save")

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    server.engine.history_view = broken  # type: ignore[method-assign]
    response = httpx.get(f"{server.url}/history")
    assert response.status_code == 500
    assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"
    errors = httpx.get(f"{server.url}/__cassettes__/journal").json()["errors"]
    assert any("disk on fire" in e and "GET /history" in e for e in errors)


def test_upload_mask_puts_the_mask_alpha_on_the_original(start_server) -> None:
    server = start_server("basic_save")
    original, mask = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(original, format="PNG")
    Image.new("RGBA", (8, 8), (0, 0, 0, 77)).save(mask, format="PNG")
    with httpx.Client(base_url=server.url) as http:
        uploaded = http.post("/upload/image", files={"image": ("photo.png", original.getvalue(), "image/png")}).json()
        ref = json.dumps({"filename": uploaded["name"], "subfolder": "", "type": "input"})
        answer = http.post("/upload/mask", files={"image": ("clipspace-mask.png", mask.getvalue(), "image/png")},
                           data={"original_ref": ref, "type": "input"})
        assert answer.status_code == 200 and answer.json() == {"name": "clipspace-mask.png", "subfolder": "", "type": "input"}
        result = Image.open(io.BytesIO(http.get("/view", params={"filename": "clipspace-mask.png", "type": "input"}).content))
    assert result.mode == "RGBA"
    assert result.getpixel((3, 3)) == (10, 200, 30, 77)


def test_history_keeps_only_the_newest_entries_like_comfyui(start_server, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfy_cassettes.replay import engine as engine_module

    monkeypatch.setattr(engine_module, "MAXIMUM_HISTORY_SIZE", 3)
    server = start_server("basic_save")
    workflow = replayable_jobs("basic_save")[0].workflow
    ids = []
    with httpx.Client(base_url=server.url) as http:
        for color in range(5):
            workflow["1"]["inputs"]["color"] = color
            ids.append(http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"])
        for _ in range(500):
            if ids[-1] in http.get("/history").json():
                break
        assert list(http.get("/history").json()) == ids[2:]
