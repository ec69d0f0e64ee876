"""Recorded inputs exist: a replay starts with the input files its cassettes' recordings had, listed and valid
where ComfyUI lists and validates them, while names the recording never had are still refused."""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from helpers import SESSIONS, har_path, http_entries, response_bytes, response_json
from test_cli import CLI, start_serve

# The capture's session: three uploads of test_input.png (same bytes, other bytes -> "test_input (1).png",
# overwrite), sub_input.png into uploads/, then LoadImage jobs on test_input.png and uploads/sub_input.png.
HAR = SESSIONS / "load_transform_save" / "session.har"

SCALE_BY = {  # not a recorded graph: executed synthetically from the loaded image's size
    "10": {"class_type": "LoadImage", "inputs": {"image": "test_input.png"}},
    "11": {"class_type": "ImageScaleBy", "inputs": {"image": ["10", 0], "upscale_method": "bilinear", "scale_by": 1.5}},
    "14": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "scaled"}},
}


def _recorded_workflows() -> dict[str, Any]:
    """The workflows the session POSTed, as its HAR has them."""
    har = json.loads(HAR.read_text())
    posted = [e["request"]["postData"]["text"] for e in har["log"]["entries"]
              if e["request"]["method"] == "POST" and e["request"]["url"].endswith("/prompt")]
    return {str(i): json.loads(text)["prompt"] for i, text in enumerate(posted)}


def _recorded_upload(name: str) -> bytes:
    """The bytes the session's last 200 upload of ``name`` sent (what the recording server then held)."""
    from helpers import http_entries, multipart_fields, response_json

    data = b""
    for entry in http_entries("load_transform_save"):
        if entry["request"]["url"].endswith("/upload/image") and entry["response"]["status"] == 200:
            if response_json(entry)["name"] == name:
                data = multipart_fields(entry)["image"].data
    assert data, name
    return data


def _run(url: str, workflow: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(url + "/prompt", json={"prompt": workflow, "client_id": "t"})
    assert answer.status_code == 200, answer.text
    prompt_id = answer.json()["prompt_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        entry = httpx.get(f"{url}/history/{prompt_id}").json().get(prompt_id)
        if entry and entry["status"]["completed"]:
            return dict(entry)
        time.sleep(0.05)
    raise AssertionError(f"job {prompt_id} did not finish")


def _image(url: str, ref: dict[str, str]) -> Image.Image:
    got = httpx.get(url + "/view", params=ref)
    assert got.status_code == 200, ref
    return Image.open(io.BytesIO(got.content))


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    target = tmp_path / "session.yaml"
    done = subprocess.run([*CLI, "import", str(HAR), "-o", str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return target


def test_uploaded_then_loaded_session_replays_without_uploading_again(imported: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "input"
    process, url = start_serve(str(imported), "--input-dir", str(inputs))
    try:
        # Listed where ComfyUI lists them: LoadImage's choices (top-level files only, like ComfyUI), /view type=input.
        choices = httpx.get(url + "/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
        assert choices == ["test_input (1).png", "test_input.png"]
        for name, subfolder in (("test_input.png", ""), ("test_input (1).png", ""), ("sub_input.png", "uploads")):
            got = httpx.get(url + "/view", params={"filename": name, "type": "input", "subfolder": subfolder})
            assert got.status_code == 200 and got.content == _recorded_upload(name)

        # Every recorded workflow runs as recorded, without uploading: its image comes back.
        for workflow in _recorded_workflows().values():
            entry = _run(url, workflow)
            assert entry["status"]["status_str"] == "success"
            images = [i for out in entry["outputs"].values() for i in out["images"]]
            assert images and all(_image(url, i).format == "PNG" for i in images)

        # A graph no recording has loads the recorded file: LoadImage (64x64 upload) -> ImageScaleBy 1.5 -> SaveImage.
        with Image.open(io.BytesIO(_recorded_upload("test_input.png"))) as uploaded:
            expected = (round(uploaded.width * 1.5), round(uploaded.height * 1.5))
        entry = _run(url, SCALE_BY)
        (image,) = entry["outputs"]["14"]["images"]
        assert image["filename"] == "scaled_00001_.png" and _image(url, image).size == expected

        # A name the recording never had is refused as ComfyUI refuses it.
        missing = dict(SCALE_BY, **{"10": {"class_type": "LoadImage", "inputs": {"image": "never_uploaded.png"}}})
        refused = httpx.post(url + "/prompt", json={"prompt": missing})
        assert refused.status_code == 400
        assert refused.json()["node_errors"]["10"]["errors"][0]["details"] == "image - Invalid image file: never_uploaded.png"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert (inputs / "uploads" / "sub_input.png").is_file()


def test_a_file_already_in_the_input_folder_is_kept(imported: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "test_input.png").write_bytes(b"mine")
    process, url = start_serve(str(imported), "--input-dir", str(inputs))
    try:
        assert httpx.get(url + "/view", params={"filename": "test_input.png", "type": "input"}).content == b"mine"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert (inputs / "test_input.png").read_bytes() == b"mine"


def test_a_loaded_image_no_upload_recorded_gets_a_stand_in_of_its_recorded_size(imported: Path, tmp_path: Path,
                                                                              start_server: Any) -> None:
    """A job loaded an image the server already had: the recording shows the name and, through an output that
    received it unchanged, its size; a rejected job's name stays absent."""
    from comfy_cassettes.cassette.load import load, save
    from comfy_cassettes.cassette.model import Cassette

    cassette = load(imported)
    # The session without its uploads and input views; its LoadImage -> ImageInvert -> SaveImage job's output as a
    # session that fetched it would have recorded it (the capture never fetched it, so its size is unknown: 0x0).
    jobs = [replace(job, outputs=tuple(replace(o, width=64, height=48) for o in job.outputs))
            if job.workflow.get("1", {}).get("class_type") == "LoadImage" else job for job in cassette.jobs]
    kept = tuple(i for i in cassette.interactions if "upload" not in i.uri and "type=input" not in i.uri)
    save(Cassette(path=None, interactions=kept, jobs=tuple(jobs), recorded=cassette.recorded), tmp_path / "jobs_only.yaml")
    server = start_server(tmp_path / "jobs_only.yaml", "error_invalid_prompt")
    folder = server.engine.roots.input
    with Image.open(folder / "uploads" / "sub_input.png") as stand_in:
        assert stand_in.size == (64, 48)
    with Image.open(folder / "test_input.png") as stand_in:  # LoadImage -> ImageScale: the output says nothing of it
        assert stand_in.size == (512, 512)
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["sub_input.png", "test_input.png"]


def test_no_recorded_inputs_starts_with_an_empty_input_folder(imported: Path) -> None:
    process, url = start_serve(str(imported), "--no-recorded-inputs")
    try:
        choices = httpx.get(url + "/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0]
        assert choices == []
        refused = httpx.post(url + "/prompt", json={"prompt": SCALE_BY})
        assert refused.status_code == 400 and "Invalid image file: test_input.png" in refused.text
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_every_comfy_test_starts_with_the_recorded_inputs(suite: pytest.Pytester) -> None:
    """The pytest handle empties the input folder between tests and puts the recorded files back."""
    suite.makepyfile(
        """
        import pytest

        LOAD = {"1": {"class_type": "LoadImage", "inputs": {"image": "uploads/sub_input.png"}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}

        @pytest.mark.comfy_cassette("load_transform_save")
        def test_one_removes_it(comfy):
            assert comfy.run(LOAD)["status"]["status_str"] == "success"
            (comfy.input_dir / "uploads" / "sub_input.png").unlink()

        @pytest.mark.comfy_cassette("load_transform_save")
        def test_two_has_it_again(comfy):
            assert (comfy.input_dir / "uploads" / "sub_input.png").is_file()
            assert comfy.run(LOAD)["status"]["status_str"] == "success"
        """
    )
    suite.runpytest().assert_outcomes(passed=2)


def pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGBA").tobytes()


@pytest.mark.parametrize("scenario", ["more_sessions_0.8/upload_collisions", "more_sessions_0.8/masks"])
def test_a_session_replays_its_uploads_to_the_names_it_got(scenario: str, tmp_path: Path) -> None:
    # upload_collisions: a live 0.8.0's answers to six uploads of pic.png: new, other bytes (1), other again (2),
    # overwrite=true with the (1) bytes, the first bytes again (3), the (2) bytes again. masks: /upload/mask onto an
    # uploaded photo, the same mask again -> (1) and (2) (the stored composite never equals the mask), into a
    # subfolder, onto a missing original (200, nothing written), of another size (500), onto an output.
    # The replay starts with every file the session made; an upload must still meet what it met on the real server,
    # and the files it leaves must hold what ComfyUI stored (the composite, for a mask).
    target = tmp_path / "session.yaml"
    done = subprocess.run([*CLI, "import", str(har_path(scenario)), "-o", str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    process, url = start_serve(str(target), "--input-dir", str(tmp_path / "input"))
    try:
        for entry in http_entries(scenario):
            request = entry["request"]
            path = urlsplit(request["url"])
            if path.path not in ("/upload/image", "/upload/mask", "/view"):
                continue
            post = request.get("postData")
            body = base64.b64decode(post["text"]) if post else None
            headers = {"Content-Type": post["mimeType"]} if post else {}
            got = httpx.request(request["method"], url + path.path + ("?" + path.query if path.query else ""),
                                content=body, headers=headers)
            assert got.status_code == entry["response"]["status"], request["url"]
            if path.path == "/view" and got.status_code == 200:
                assert pixels(got.content) == pixels(response_bytes(entry)), request["url"]
            elif got.status_code == 200:
                assert got.json() == response_json(entry), request["url"]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
