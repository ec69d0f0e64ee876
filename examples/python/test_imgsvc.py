"""The image service's tests: ComfyUI replayed by comfy-cassettes (a real ComfyUI 0.8.0 recording), the payments API
by the team's own pytest-recording cassette, side by side."""

import asyncio
import json

import httpx
import pytest

import imgsvc

# cassettes/render.yaml: `comfy-cassettes record render.json --server http://127.0.0.1:8188 -o cassettes/render.yaml`
pytestmark = pytest.mark.comfy_cassette("cassettes/render.yaml")


def test_generate_downloads_the_image(comfy):
    [(name, png)] = asyncio.run(imgsvc.generate(imgsvc.render_workflow("cus_1", 255)))
    assert name == "render_00001_.png" and png.startswith(b"\x89PNG")
    [post] = comfy.journal(method="POST", path="/prompt")
    assert json.loads(post["body"])["prompt"]["2"]["inputs"]["filename_prefix"] == "cus_1/render"
    assert httpx.get(f"{comfy.url}/system_stats").json()["system"]["comfyui_version"] == "0.8.0"  # as recorded


def test_a_refused_prompt_says_why(comfy):
    with pytest.raises(imgsvc.ComfyError, match="Failed to convert an input value to a INT value"):
        asyncio.run(imgsvc.generate(imgsvc.render_workflow("cus_1", "red")))


def test_a_failed_job_raises_its_message(comfy):
    comfy.fail_jobs(node="2", exception_message="CUDA out of memory")
    with pytest.raises(imgsvc.ComfyError, match="CUDA out of memory"):
        asyncio.run(imgsvc.generate(imgsvc.render_workflow("cus_1", 255)))


def test_a_503_on_submit_is_an_error(comfy):
    comfy.fail("/prompt", status=503)
    with pytest.raises(imgsvc.ComfyError, match="503"):
        asyncio.run(imgsvc.generate(imgsvc.render_workflow("cus_1", 255)))


# The payments API answers from cassettes/test_imgsvc/<test>.yaml (pytest-recording's own); the calls to the replay
# server pass that cassette by themselves.
@pytest.mark.vcr
def test_render_task_charges_the_customer(comfy, tmp_path):
    result = imgsvc.render_task("cus_1", 255, tmp_path)
    assert [path.name for path in result["files"]] == ["render_00001_.png"]
    assert result["charge"] == "ch_1"
    assert comfy.count(method="POST", path="/prompt") == 1
