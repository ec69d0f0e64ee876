"""Full client lifecycles against the replay app: WebSocket-driven, polling-driven, concurrent, hostile (in-process;
on a real socket where the WebSocket client library's own refusal is the point)."""

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

from comfy_cassettes.cassette.load import load
from comfy_cassettes.replay.config import BUNDLED_DIR
from helpers import control_for, finished, ws_lifecycle

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


@pytest.mark.parametrize("name", [n for n in BUNDLED if replayable_jobs(n)])
def test_websocket_lifecycle_for_every_bundled_cassette(name: str, start_app, tmp_path: Path) -> None:
    server = start_app(name, dynamic=True)
    with server.client() as http:
        for job in replayable_jobs(name):
            prepare_inputs(server.engine.roots.input, job.workflow)
            history, events = ws_lifecycle(server, job.workflow)
            kinds = [e["type"] for e in events]
            assert kinds[0] == "status" and "execution_start" in kinds
            assert history["status"]["status_str"] == job.status
            assert history["status"]["completed"] is (job.status == "success")
            for output in history["outputs"].values():
                for image in output.get("images", []):
                    view = http.get("/view", params=image)
                    assert view.status_code == 200, image
                    assert Image.open(io.BytesIO(view.content)).size[0] > 0
                    folder = server.engine.roots.temp if image["type"] == "temp" else server.engine.roots.output
                    assert (folder / image["subfolder"] / image["filename"]).is_file()


def test_polling_lifecycle_without_websocket(start_app) -> None:
    server = start_app("basic_save")
    workflow = replayable_jobs("basic_save")[0].workflow
    with server.client() as http:
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


def test_a_repeated_query_key_reads_its_first_value_as_aiohttp_does(start_app) -> None:
    server = start_app("basic_save")
    workflow = replayable_jobs("basic_save")[0].workflow
    with server.client() as http:
        ids = [http.post("/prompt", json={"prompt": {**workflow, "1": {**workflow["1"], "inputs": {**workflow["1"]["inputs"], "color": c}}}}).json()["prompt_id"] for c in (7, 8)]
        for _ in range(500):
            if len(http.get("/history").json()) == 2:
                break
        assert list(http.get("/history?max_items=1&max_items=2").json()) == ids[1:]  # the newest one
        image = http.get(f"/history/{ids[0]}").json()[ids[0]]["outputs"]["2"]["images"][0]
        first = http.get(f"/view?filename={image['filename']}&filename=nothing.png&type=output&type=input")
        assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
        assert http.get(f"/view?filename=nothing.png&filename={image['filename']}&type=output").status_code == 404


def test_object_info_lists_an_upload_made_after_it_was_first_asked_for(start_app) -> None:
    server = start_app()
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with server.client() as http:
        first = http.get("/object_info")
        assert first.content == http.get("/object_info").content
        assert http.post("/upload/image", files={"image": ("later.png", png.getvalue(), "image/png")}).status_code == 200
        listed = http.get("/object_info").json()["LoadImage"]["input"]["required"]["image"][0]
    assert "later.png" in listed and "later.png" not in first.json()["LoadImage"]["input"]["required"]["image"][0]


def test_prompt_ids_are_deterministic_for_a_seed(start_app) -> None:
    ids = []
    for _ in range(2):
        server = start_app("basic_save", seed=7)
        workflow = replayable_jobs("basic_save")[0].workflow
        with server.client() as http:
            ids.append([http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"] for _ in range(3)])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3
    uuid.UUID(ids[0][0], version=4)


def test_two_hundred_concurrent_jobs_in_dynamic_mode(start_app) -> None:
    server = start_app("basic_save", dynamic=True)
    workflow = replayable_jobs("basic_save")[0].workflow

    async def run() -> list[dict[str, Any]]:
        limits = httpx.Limits(max_connections=50)
        async with server.async_client(limits=limits, timeout=60) as http:
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
    with server.client() as http:
        assert len(http.get("/history").json()) == 200


def test_identical_prompt_is_a_cached_rerun(start_app) -> None:
    server = start_app("cached_rerun")
    workflow = replayable_jobs("cached_rerun")[0].workflow
    first, _ = ws_lifecycle(server, workflow)
    second, events = ws_lifecycle(server, workflow)
    cached = next(e for e in events if e["type"] == "execution_cached")["data"]["nodes"]
    assert sorted(cached) == sorted(workflow)
    assert not any(e["type"] == "executing" and e["data"]["node"] for e in events)
    assert second["outputs"] == first["outputs"]


def test_hostile_and_malformed_requests(start_app) -> None:
    server = start_app("view_errors")
    with server.client() as http:
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
        # A route nothing knows: aiohttp's empty 404 (snapshots capture); the closest recordings reach problems.
        missing = http.get("/no/such/route")
        assert (missing.status_code, missing.content, missing.headers["content-type"]) == (404, b"", "application/octet-stream")
        miss = server.engine.journal.problems()["unmatched"][-1]
        assert miss["request"] == "GET /no/such/route" and "differences" in miss["closest"][0]


def test_request_bodies_are_decoded_as_aiohttp_decodes_them_for_comfyui(start_app) -> None:
    # ComfyUI reads JSON with aiohttp's request.json(): the text decoded with the Content-Type's charset (UTF-8 by
    # default), then json.loads. json.loads(bytes) would also take a byte order mark or UTF-16: ComfyUI crashes on both.
    server = start_app()
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "café"}}}
    text = json.dumps({"prompt": graph}, ensure_ascii=False)
    crash = "500 Internal Server Error\n\nServer got itself in trouble"
    with server.client() as http:
        for body, content_type in ((b"\xef\xbb\xbf" + text.encode(), "application/json"), (text.encode("utf-16"), "application/json"),
                                   (text.encode("latin-1"), "application/json"), (text.encode(), "application/json; charset=no-such")):
            answer = http.post("/prompt", content=body, headers={"Content-Type": content_type})
            assert (answer.status_code, answer.text) == (500, crash), (body[:8], content_type)
            # /interrupt catches only json.loads' error (a byte order mark: a global interrupt); decoding fails first
            # for the others, and aiohttp answers that with its 500 (as a live 0.8.0 did).
            expected = 200 if body.startswith(b"\xef\xbb\xbf") else 500
            assert http.post("/interrupt", content=body, headers={"Content-Type": content_type}).status_code == expected
        for body, content_type in ((text.encode(), "application/json"), (text.encode("latin-1"), 'application/json; charset="ISO-8859-1"')):
            answer = http.post("/prompt", content=body, headers={"Content-Type": content_type})
            assert answer.status_code == 200 and answer.json()["node_errors"] == {}, content_type
            [image] = finished(http, answer.json()["prompt_id"])["outputs"]["2"]["images"]
            assert image["filename"].startswith("café_")  # the é read as the charset says


def test_api_prefix_and_informational_routes(start_app) -> None:
    server = start_app()  # the bundled default cassette
    with server.client() as http:
        for path in ("/system_stats", "/embeddings", "/models", "/extensions", "/features", "/object_info/SaveImage"):
            plain, api = http.get(path), http.get("/api" + path)
            assert plain.status_code == api.status_code == 200
            assert plain.json() == api.json()
        assert http.get("/system_stats").json()["system"]["comfyui_version"] == "0.3.64"
        assert http.get("/object_info/NoSuchNode").json() == {}
        assert http.get("/models/not_a_folder").status_code == 404
        assert http.get("/prompt").json() == {"exec_info": {"queue_remaining": 0}}


def test_a_crashing_handler_answers_like_aiohttp_and_reaches_the_journal(start_app) -> None:
    server = start_app("basic_save")

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    server.engine.history.view_json = broken  # type: ignore[method-assign]
    with server.client() as http:
        response = http.get("/history")
        assert response.status_code == 500
        assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"
        errors = http.get("/__cassettes__/journal").json()["errors"]
    assert any("disk on fire" in e and "GET /history" in e for e in errors)


def test_upload_mask_puts_the_mask_alpha_on_the_original(start_app) -> None:
    server = start_app("basic_save")
    original, mask = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(original, format="PNG")
    Image.new("RGBA", (8, 8), (0, 0, 0, 77)).save(mask, format="PNG")
    with server.client() as http:
        uploaded = http.post("/upload/image", files={"image": ("photo.png", original.getvalue(), "image/png")}).json()
        ref = json.dumps({"filename": uploaded["name"], "subfolder": "", "type": "input"})
        answer = http.post("/upload/mask", files={"image": ("clipspace-mask.png", mask.getvalue(), "image/png")},
                           data={"original_ref": ref, "type": "input"})
        assert answer.status_code == 200 and answer.json() == {"name": "clipspace-mask.png", "subfolder": "", "type": "input"}
        result = Image.open(io.BytesIO(http.get("/view", params={"filename": "clipspace-mask.png", "type": "input"}).content))
    assert result.mode == "RGBA"
    assert result.getpixel((3, 3)) == (10, 200, 30, 77)


def test_upload_mask_finds_a_saved_output_in_static_mode(start_app) -> None:
    # Static mode serves outputs from the recording without writing them: a mask drawn on one still finds it, as
    # a live 0.8.0 did (more_sessions_0.8/masks: original_ref type output -> the masked file is viewable).
    server = start_app("basic_save")
    entry, _ = ws_lifecycle(server, replayable_jobs("basic_save")[0].workflow)
    (image,) = entry["outputs"]["2"]["images"]
    mask = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 90)).save(mask, format="PNG")
    with server.client() as http:
        saved = Image.open(io.BytesIO(http.get("/view", params={"filename": image["filename"], "type": "output"}).content))
        ref = json.dumps({"filename": image["filename"], "subfolder": "", "type": "output"})
        answer = http.post("/upload/mask", files={"image": ("om.png", mask.getvalue(), "image/png")}, data={"original_ref": ref})
        assert answer.json() == {"name": "om.png", "subfolder": "", "type": "input"}
        view = http.get("/view", params={"filename": "om.png", "type": "input"})
    assert view.status_code == 200
    assert Image.open(io.BytesIO(view.content)).getpixel((5, 5)) == (*saved.convert("RGB").getpixel((5, 5)), 90)


def test_history_keeps_only_the_newest_entries_like_comfyui(start_app, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfy_cassettes.replay.sim import state

    monkeypatch.setattr(state, "MAXIMUM_HISTORY_SIZE", 3)
    server = start_app("basic_save")
    workflow = replayable_jobs("basic_save")[0].workflow
    ids = []
    with server.client() as http:
        for color in range(5):
            workflow["1"]["inputs"]["color"] = color
            ids.append(http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"])
        for _ in range(500):
            if ids[-1] in http.get("/history").json():
                break
        # execution.py task_done drops the oldest only once the history is *over* the limit, then adds: limit + 1 stay.
        assert list(http.get("/history").json()) == ids[1:]


UNRECORDED_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": 7}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "../outside/x"}},
}


def test_a_prefix_outside_the_output_folder_fails_like_comfyui(start_app) -> None:
    server = start_app("snapshots")
    history, events = ws_lifecycle(server, UNRECORDED_SAVE)
    error = next(e for e in events if e["type"] == "execution_error")["data"]
    assert error["node_id"] == "3" and error["node_type"] == "SaveImage" and error["exception_type"] == "Exception"
    assert error["exception_message"].startswith("**** ERROR: Saving image outside the output folder is not allowed.")
    assert history["status"]["status_str"] == "error" and history["status"]["messages"][-1][0] == "execution_error"


def test_a_job_the_engine_cannot_replay_still_ends_for_the_client(start_app) -> None:
    server = start_app("basic_save")

    def broken(item: Any) -> Any:
        raise RuntimeError("no plan")

    server.engine.worker.plan = broken  # type: ignore[method-assign]
    history, events = ws_lifecycle(server, replayable_jobs("basic_save")[0].workflow)
    assert [e["type"] for e in events][-3:] == ["execution_error", "status", "executing"]
    assert history["status"]["status_str"] == "error"
    assert "no plan" in history["status"]["messages"][-1][1]["exception_message"]


def test_widget_values_wired_from_other_nodes_still_run(start_app) -> None:
    server = start_app("snapshots", dynamic=True)
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": ["9", 0], "height": 32, "batch_size": 1, "color": 3}},
        "9": {"class_type": "PrimitiveInt", "inputs": {"value": 48}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "wired"}},
    }
    if "PrimitiveInt" not in (server.engine.catalogue.object_info() or {}):
        pytest.skip("the recorded catalogue has no PrimitiveInt")
    history, _ = ws_lifecycle(server, graph)
    assert history["status"]["status_str"] == "success"
    assert history["outputs"]["2"]["images"][0]["filename"] == "wired_00001_.png"


def test_load_image_accepts_an_annotated_output_file(start_app) -> None:
    server = start_app("snapshots", dynamic=True)
    first, _ = ws_lifecycle(server, {k: v for k, v in UNRECORDED_SAVE.items() if k != "3"} | {
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "made"}}})
    name = first["outputs"]["3"]["images"][0]["filename"]
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": f"{name} [output]"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "again"}},
    }
    with server.client() as http:
        answer = http.post("/prompt", json={"prompt": graph})
        assert answer.status_code == 200, answer.text
        missing = {**graph, "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png [output]"}}}
        refused = http.post("/prompt", json={"prompt": missing}).json()
    assert refused["node_errors"]["1"]["errors"][0]["type"] == "custom_validation_failed"


def test_free_keeps_the_cache_unless_memory_is_freed(start_app) -> None:
    server = start_app("cached_rerun")
    workflow = replayable_jobs("cached_rerun")[0].workflow

    def cached_nodes() -> list[str]:
        _, events = ws_lifecycle(server, workflow)
        return list(next(e for e in events if e["type"] == "execution_cached")["data"]["nodes"])

    with server.client() as http:
        assert cached_nodes() == []
        http.post("/free", json={"unload_models": True})
        assert sorted(cached_nodes()) == sorted(workflow)
        http.post("/free", json={"unload_models": True, "free_memory": True})
        assert cached_nodes() == []


def test_an_interrupt_during_the_recorded_start_up_delay_counts(start_app) -> None:
    server = start_app("basic_save", timing="recorded", speed=0.25)  # ~1.5 s between POST and execution_start
    workflow = replayable_jobs("basic_save")[0].workflow
    with server.client() as http:
        prompt_id = http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"]
        for _ in range(200):
            if http.get("/queue").json()["queue_running"]:
                break
        http.post("/interrupt", json={"prompt_id": prompt_id})
        with control_for(server) as control:
            entry = control.wait_for_job(prompt_id, timeout=20)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_no_temporary_folder_survives_a_busy_port_or_an_unstarted_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import tempfile

    from comfy_cassettes import ConfigError, ReplayConfig, ReplayServer

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # other workers' servers use the shared /tmp

    def ours() -> set[str]:
        return {p.name for p in private.glob("comfy-cassettes-*")}

    before = ours()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="already in use"):
            ReplayServer(ReplayConfig(port=busy.getsockname()[1]))
    ReplayServer(ReplayConfig(port=0)).stop()
    assert ours() == before


def test_bad_history_paging_is_comfyuis_500_and_journaled(start_app) -> None:
    server = start_app("basic_save")
    with server.client() as http:
        answer = http.get("/history", params={"max_items": "many"})
        assert answer.status_code == 500 and answer.text.startswith("500 Internal Server Error")
        journal = http.get("/__cassettes__/journal", params={"path": "/history"}).json()["entries"]
    assert journal[-1]["status"] == 500


@pytest.mark.parametrize(
    ("host", "origin", "refused"),
    [
        ("127.0.0.1:8189", "http://127.0.0.1:8189", False),
        ("127.0.0.1:8189", "http://evil.example", True),
        ("localhost:8189", "http://LOCALHOST:8189", False),
        ("127.0.0.1:8189", "http://127.0.0.1", False),  # no port on one side: compared without ports
        ("comfy-mock:8189", "http://app:3000", False),  # not loopback: ComfyUI does not check
    ],
)
def test_origin_check_follows_comfyui(start_app, host: str, origin: str, refused: bool) -> None:
    server = start_app("basic_save")
    with server.client() as http:
        answer = http.get("/queue", headers={"Host": host, "Origin": origin})
    assert (answer.status_code == 403) is refused


@pytest.mark.parametrize(("origin", "refused"), [("http://127.0.0.1:8189", False), ("http://127.0.0.1:8190", True)])
def test_origin_of_the_recorded_server_is_this_one(start_server, origin: str, refused: bool) -> None:
    # basic_save was recorded at 127.0.0.1:8189: a page of that server is one of the replay's, on whatever port it
    # listens (a real 0.3.64 answered such a request 200: more_sessions_0.3/v064_gates); any other port is foreign.
    server = start_server("basic_save")
    with httpx.Client(base_url=server.url) as http:
        answer = http.get("/queue", headers={"Origin": origin})
    assert (answer.status_code == 403) is refused


def test_origin_check_covers_the_websocket_upgrade(start_server) -> None:
    server = start_server("basic_save")  # a real socket: the refusal is what websockets' own client sees
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(_connect(server.url.replace("http://", "ws://") + "/ws", {"Origin": "http://evil.example"}))
    assert refused.value.response.status_code == 403


async def _connect(url: str, headers: dict[str, str]) -> None:
    async with websockets.connect(url, additional_headers=headers):
        pass


def test_websocket_connections_are_in_the_journal(start_app) -> None:
    server = start_app("basic_save")
    ws_lifecycle(server, replayable_jobs("basic_save")[0].workflow)
    with control_for(server) as control:
        [connected] = control.journal(path="/ws")
    assert connected["method"] == "GET" and connected["status"] == 101 and connected["query"]["clientId"]


@pytest.mark.parametrize("before", [None, '{"type": "hello"}'])
def test_feature_flags_are_answered_only_as_the_first_message(start_app, before: str | None) -> None:
    # server.py websocket_handler: only the socket's first JSON object is read as feature_flags (then the status
    # broadcast of the next job is the first thing after the greeting, and binary previews keep the legacy format).
    server = start_app("basic_save")
    flags = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    with server.websocket("/ws?clientId=flags") as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "status"
        for text in ([before] if before else []) + [flags, flags]:
            ws.send(text)
        with server.client() as http:
            http.post("/prompt", json={"prompt": replayable_jobs("basic_save")[0].workflow, "client_id": "flags"})
        kinds = [json.loads(ws.recv(timeout=5))["type"] for _ in range(4)]
    assert kinds.count("feature_flags") == (0 if before else 1) and kinds[0] == ("status" if before else "feature_flags")


def _chunk_types(png: bytes) -> list[bytes]:
    import struct

    types, position = [], 8
    while position < len(png):
        length = struct.unpack(">I", png[position : position + 4])[0]
        types.append(png[position + 4 : position + 8])
        position += 12 + length
    return types


def test_saved_pngs_carry_the_prompt_and_extra_pnginfo_like_comfyui(start_app) -> None:
    server = start_app("basic_save", dynamic=True)
    workflow = replayable_jobs("basic_save")[0].workflow
    extra = {"extra_pnginfo": {"workflow": {"nodes": [1, 2], "links": []}}}
    with server.client() as http:
        prompt_id = http.post("/prompt", json={"prompt": workflow, "extra_data": extra}).json()["prompt_id"]
        with control_for(server) as control:
            image = control.wait_for_job(prompt_id)["outputs"]["2"]["images"][0]
        png = http.get("/view", params=image).content
    saved = Image.open(io.BytesIO(png))
    assert saved.text["prompt"] == json.dumps(workflow)  # what ComfyUI writes (basic_save capture)
    assert saved.text["workflow"] == json.dumps(extra["extra_pnginfo"]["workflow"])
    assert _chunk_types(png) == [b"IHDR", b"tEXt", b"tEXt", b"IDAT", b"IEND"]


def test_a_jpeg_source_image_is_saved_as_a_real_png(start_app, tmp_path: Path) -> None:
    source = tmp_path / "kernie_512x768.jpg"
    Image.new("RGB", (51, 76), (9, 99, 199)).save(source, format="JPEG")
    server = start_app("basic_save", dynamic=True, source_image=source)
    workflow = replayable_jobs("basic_save")[0].workflow
    history, _ = ws_lifecycle(server, workflow)
    image = history["outputs"]["2"]["images"][0]
    saved = Image.open(server.engine.roots.output / image["subfolder"] / image["filename"])
    assert saved.format == "PNG" and saved.size == (51, 76) and "prompt" in saved.text


def test_a_jpeg_source_image_is_served_as_a_png_in_static_mode(start_app, tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    Image.new("RGB", (51, 76), (9, 99, 199)).save(source, format="JPEG")
    server = start_app("basic_save", source_image=source)
    history, _ = ws_lifecycle(server, replayable_jobs("basic_save")[0].workflow)
    image = history["outputs"]["2"]["images"][0]
    with server.client() as http:
        view = http.get("/view", params=image)
    assert view.headers["content-type"] == "image/png"
    served = Image.open(io.BytesIO(view.content))
    assert served.format == "PNG" and served.size == (51, 76)
    assert not list(server.engine.roots.output.iterdir())  # static mode still writes nothing

