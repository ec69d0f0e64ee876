"""An output name handed out again: a `%batch_num%` prefix restarts its counter on every run
(folder_paths.get_save_image_path never matches it), so ComfyUI's SaveImage writes a later run's image over the
earlier one's under the same name. The replay's /view then answers the later run's image, in static mode (nothing
written) as in dynamic mode (files written), while a cached re-run leaves the file as it was."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from comfy_cassettes.cassette.load import load
from comfy_cassettes.replay.server import ReplayServer
from helpers import bundled, finished

PREFIX = "again_%batch_num%"


def run(http: httpx.Client, workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """POST the workflow, wait for its history, return SaveImage's image entries."""
    prompt_id = http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"]
    return list(finished(http, prompt_id)["outputs"]["9"]["images"])


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_a_name_handed_out_again_serves_the_later_runs_image(start_server: Callable[..., ReplayServer], dynamic: bool) -> None:
    # The txt2img capture's two jobs: one image of 3 steps, then two of 4 steps (other pixels). The counter still
    # goes up within a batch (SaveImage adds 1 per image): again_0_00001_, again_1_00002_.
    cassette = load(bundled("txt2img"))
    first, second = (copy.deepcopy(job.workflow) for job in cassette.jobs[:2])
    for workflow in (first, second):
        workflow["9"]["inputs"]["filename_prefix"] = PREFIX
    later = cassette.blob_path(next(o.file for o in cassette.jobs[1].outputs if o.index == 0 and o.file))
    earlier = cassette.blob_path(next(o.file for o in cassette.jobs[0].outputs if o.index == 0 and o.file))
    assert pixels(later.read_bytes()) != pixels(earlier.read_bytes())

    server = start_server(bundled("txt2img"), dynamic=dynamic, timing="instant")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        (made,) = run(http, first)
        assert made["filename"] == "again_0_00001_.png"
        assert pixels(http.get("/view", params=made).content) == pixels(earlier.read_bytes())

        again = run(http, second)
        assert [image["filename"] for image in again] == ["again_0_00001_.png", "again_1_00002_.png"]
        served = http.get("/view", params=again[0]).content
        assert pixels(served) == pixels(later.read_bytes())
        if dynamic:  # the file on disk is the later run's, with the later prompt in its text chunk
            on_disk = (server.config.output_dir / "again_0_00001_.png").read_bytes()
            assert on_disk == served
            with Image.open(io.BytesIO(on_disk)) as image:
                assert json.loads(image.text["prompt"])["5"]["inputs"]["batch_size"] == 2

        # The same prompt again is ComfyUI's cache: nothing runs, nothing is written, the file stays.
        assert [image["filename"] for image in run(http, second)] == ["again_0_00001_.png", "again_1_00002_.png"]
        assert http.get("/view", params=again[0]).content == served
