"""Public Python ComfyUI clients from PyPI (in the test extra), and the patterns of ComfyUI's own script_examples,
against `comfy-cassettes serve` at its default settings: each gets its images from the bundled default cassette and
from an imported session cassette, as it does from ComfyUI (each was run against ComfyUI 0.8.0 as well)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from helpers import har_path
from PIL import Image
from serve_process import serve, serve_imported

T = TypeVar("T")

# basic_save's first prompt and ws_binary_legacy's prompt, as the bundled default cassette recorded them.
SAVE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}}}
SEND = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 2, "color": 16711680}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
# prompt_options' partial_execution_targets graph: recorded with only "4" targeted; sent whole, both outputs run.
TWO_OUTPUTS = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 460809}},
               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "target_a"}},
               "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
               "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "target_b"}}}


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result, failing the test if the client has not returned after ``seconds`` (a hang)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"the client still waited after {seconds} s") from None
    finally:
        pool.shutdown(wait=False)


def sizes(pictures: list[bytes]) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(picture)).size for picture in pictures]


@pytest.fixture(scope="module")
def default_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`serve` with nothing but its folders: the bundled default cassette, default timing."""
    with serve(tmp_path_factory.mktemp("default")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def session_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`serve` on a cassette imported from a real session's HAR (prompt_options), default timing."""
    with serve_imported(tmp_path_factory.mktemp("session"), har_path("prompt_options")) as url:
        yield url


# ---------------------------------------------------------------- ComfyUI's script_examples, with websocket-client

def websockets_api_example(url: str, prompt: dict[str, Any]) -> dict[str, list[bytes]]:
    """script_examples/websockets_api_example.py: /ws first, POST /prompt with client_id and prompt_id, wait for
    ``executing`` with node null, then /history and /view for every output image."""
    import websocket

    host, client_id, prompt_id = urllib.parse.urlsplit(url).netloc, str(uuid.uuid4()), str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.connect(f"ws://{host}/ws?clientId={client_id}", timeout=30)
    try:
        body = json.dumps({"prompt": prompt, "client_id": client_id, "prompt_id": prompt_id}).encode()
        urllib.request.urlopen(urllib.request.Request(f"http://{host}/prompt", data=body)).read()
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                if message["type"] == "executing" and message["data"]["node"] is None and message["data"]["prompt_id"] == prompt_id:
                    break
    finally:
        ws.close()
    with urllib.request.urlopen(f"http://{host}/history/{prompt_id}") as response:
        history = json.loads(response.read())[prompt_id]
    images: dict[str, list[bytes]] = {}
    for node_id, output in history["outputs"].items():
        for image in output.get("images", []):
            query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]})
            with urllib.request.urlopen(f"http://{host}/view?{query}") as response:
                images.setdefault(node_id, []).append(response.read())
    return images


def websockets_api_example_ws_images(url: str, prompt: dict[str, Any], node: str) -> list[bytes]:
    """script_examples/websockets_api_example_ws_images.py: the binary frames received while ``node`` (a
    SaveImageWebsocket) executes, each an 8-byte header then the image."""
    import websocket

    host, client_id = urllib.parse.urlsplit(url).netloc, str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.connect(f"ws://{host}/ws?clientId={client_id}", timeout=30)
    try:
        body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
        prompt_id = json.loads(urllib.request.urlopen(urllib.request.Request(f"http://{host}/prompt", data=body)).read())["prompt_id"]
        current, images = "", []
        while True:
            out = ws.recv()
            if isinstance(out, str):
                data = json.loads(out)["data"] if json.loads(out)["type"] == "executing" else {}
                if data.get("prompt_id") == prompt_id:
                    if data["node"] is None:
                        return images
                    current = data["node"]
            elif current == node:
                images.append(out[8:])
    finally:
        ws.close()


def test_script_example_gets_the_images_of_every_output_node(default_url: str, session_url: str) -> None:
    assert [sizes(v) for v in within(30, lambda: websockets_api_example(default_url, SAVE)).values()] == [[(64, 64)]]
    # Sent whole, a graph recorded with partial_execution_targets runs both outputs, as ComfyUI does.
    images = within(30, lambda: websockets_api_example(session_url, TWO_OUTPUTS))
    assert {node: sizes(pictures) for node, pictures in images.items()} == {"2": [(64, 64)], "4": [(64, 64)]}


def test_save_image_websocket_sends_its_images_on_every_run(default_url: str) -> None:
    # SaveImageWebsocket's IS_CHANGED is time.time(): ComfyUI never caches it, so a re-run sends the images again,
    # and a graph no cassette has (other size and count) sends its own.
    for _ in range(2):
        assert sizes(within(30, lambda: websockets_api_example_ws_images(default_url, SEND, "2"))) == [(32, 32)] * 2
    other = json.loads(json.dumps(SEND))
    other["1"]["inputs"].update(width=48, batch_size=3)
    assert sizes(within(30, lambda: websockets_api_example_ws_images(default_url, other, "2"))) == [(48, 32)] * 3


def status_then_start(url: str, prompt: dict[str, Any]) -> list[tuple[float, str]]:
    """The messages one job sends a client (receipt time, type) from its POST (first, as "POST") until
    ``executing`` null."""
    import websocket

    host, client_id = urllib.parse.urlsplit(url).netloc, str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.connect(f"ws://{host}/ws?clientId={client_id}", timeout=30)
    try:
        ws.recv()  # the greeting status
        body = json.dumps({"prompt": prompt, "client_id": client_id}).encode()
        received: list[tuple[float, str]] = [(time.monotonic(), "POST")]
        urllib.request.urlopen(urllib.request.Request(f"http://{host}/prompt", data=body)).read()
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                received.append((time.monotonic(), message["type"]))
                if message["type"] == "executing" and message["data"]["node"] is None:
                    return received
    finally:
        ws.close()


def test_the_status_of_a_job_taken_comes_with_its_execution_start(tmp_path: Path) -> None:
    # ComfyUI's worker reports the queue as it gets a prompt and sends execution_start at once (0-3 ms apart in
    # every capture): clients that read /queue on each status (@saintno/comfyui-sdk and its cfli) count on the
    # job being listed then, and hang if it had already ended. The replay once sent that status before the
    # recorded start-up delay. basic_save's is 64 ms from the POST (60 of them validating it, before the status of
    # its put: the capture's two statuses and execution_start came within 0.2 ms), here slowed twentyfold to stand
    # out from a busy machine.
    with serve_imported(tmp_path, har_path("basic_save"), "--timing", "recorded", "--speed", "0.05") as url:
        received = within(60, lambda: status_then_start(url, SAVE))
    kinds = [kind for _, kind in received]
    start = kinds.index("execution_start")
    assert kinds[:start] == ["POST", "status", "status"]  # put, then get
    delay = received[start][0] - received[0][0]
    assert delay > 0.6, f"the recorded start-up delay was not kept ({delay:.2f} s)"
    assert received[start][0] - received[start - 1][0] < delay / 2, received


def polled_outputs(url: str, prompt: dict[str, Any]) -> dict[str, Any]:
    """comfyui-xy's ComfyUiClient.process_workflow: POST only the prompt (no client_id, no socket), poll
    /history/{id} until the id is listed, and take its outputs."""
    return cast(dict[str, Any], polled_entry(url, prompt)["outputs"])


def polled_entry(url: str, prompt: dict[str, Any]) -> dict[str, Any]:
    """The history entry of ``prompt`` sent without client_id, polled for as comfyui-xy and comfy-catapult do."""
    body = json.dumps({"prompt": prompt}).encode()
    prompt_id = json.loads(urllib.request.urlopen(urllib.request.Request(f"{url}/prompt", data=body)).read())["prompt_id"]
    while True:
        with urllib.request.urlopen(f"{url}/history/{prompt_id}") as response:
            history = json.loads(response.read())
        if prompt_id in history:
            return cast(dict[str, Any], history[prompt_id])
        time.sleep(0.05)


@pytest.mark.parametrize(("version", "cached_listed"), [("0.3.64", True), ("0.8.0", False)])
def test_a_cached_rerun_without_client_id_lists_its_outputs_up_to_0_3_67(tmp_path: Path, version: str, cached_listed: bool) -> None:
    # 0.3.68-0.8.0 execution.py adds a cached node's outputs to the prompt's history only for a client_id (a live
    # 0.8.0 answers so too): a client that polls without one finds a fully cached re-run with no outputs.
    with serve(tmp_path, "--comfyui-version", version) as (url, _):
        first = within(30, lambda: polled_outputs(url, SAVE))
        again = within(30, lambda: polled_outputs(url, SAVE))
    assert list(first) == ["2"] and first["2"]["images"][0]["filename"].endswith(".png")
    assert again == (first if cached_listed else {})


def test_a_job_recorded_without_client_id_has_its_files_when_polled(tmp_path: Path) -> None:
    # A prompt sent without client_id replays a job recorded so, whose recording has no `executed` (ComfyUI sends
    # it to nobody): its history's images are made then, and /view answers them (it once answered 404).
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 43690}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "anon"}}}
    with serve_imported(tmp_path, har_path("no_client_id")) as url:
        outputs = within(30, lambda: polled_outputs(url.rstrip("/"), workflow))
        [image] = outputs["3"]["images"]
        with urllib.request.urlopen(f"{url.rstrip('/')}/view?{urllib.parse.urlencode(image)}") as response:
            picture = response.read()
    assert image["filename"] == "anon_00001_.png" and sizes([picture]) == [(64, 64)]


def test_a_job_recorded_without_client_id_is_matched_by_the_nodes_its_history_says_were_cached(tmp_path: Path) -> None:
    # ComfyUI sends execution_cached to nobody for a prompt without client_id; its history keeps the message. The
    # v064_gates capture ran its `nc` prompt without client_id after other prompts had cached its EmptyImage, then
    # again all cached: on a fresh replay the first run caches nothing and must not take either recording's history
    # (comfy-catapult's own session showed an error, a run and its re-run: the run said both nodes were cached).
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 255}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "nc"}}}

    def cached(entry: dict[str, Any]) -> list[str]:
        return next(data["nodes"] for kind, data in entry["status"]["messages"] if kind == "execution_cached")

    with serve_imported(tmp_path, har_path("more_sessions_0.3/v064_gates")) as url:
        first, again = (within(30, lambda: polled_entry(url.rstrip("/"), prompt)) for _ in range(2))
    assert (cached(first), cached(again)) == ([], ["1", "2"])


# ---------------------------------------------------------------- clients from PyPI

def test_comfy_api_simplified_gets_its_images(default_url: str, session_url: str) -> None:
    """comfy-api-simplified: POST /prompt first, then /ws (a job already done shows in the first status as an empty
    queue), then /history by the node's title and /view; workflows carry ``_meta`` titles as the UI exports them."""
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    def titled(prompt: dict[str, Any]) -> ComfyWorkflowWrapper:
        return ComfyWorkflowWrapper({n: {**node, "_meta": {"title": f"{node['class_type']} {n}"}} for n, node in prompt.items()})

    api = ComfyApiWrapper(default_url.rstrip("/"))
    for _ in range(2):  # the second run is all cached: its image comes from history all the same
        images = within(30, lambda: api.queue_and_wait_images(titled(SAVE), "SaveImage 2"))
        assert sizes(list(images.values())) == [(64, 64)]
    session = ComfyApiWrapper(session_url.rstrip("/"))
    assert sizes(list(within(30, lambda: session.queue_and_wait_images(titled(TWO_OUTPUTS), "SaveImage 2")).values())) == [(64, 64)]


def test_comfyui_utils_gets_its_outputs(default_url: str, session_url: str) -> None:
    """comfyui-utils: POST /prompt, then /ws; on each status it reads /queue and, once the prompt has left it, finds
    the outputs in /history by comparing the prompt it sent; else it ends on the first ``executed``."""
    from comfyui_utils.comfy import Callbacks, ComfyAPI

    class Collect(Callbacks):
        def __init__(self) -> None:
            self.outputs: dict[str, Any] = {}

        async def queue_position(self, position: int) -> None:
            pass

        async def in_progress(self, node_id: int, progress: int, total: int) -> None:
            pass

        async def completed(self, outputs: dict[str, Any], cached: bool) -> None:
            self.outputs = outputs

    async def run(url: str, prompt: dict[str, Any]) -> list[bytes]:
        api, collect, pictures = ComfyAPI(urllib.parse.urlsplit(url).netloc), Collect(), []
        await api.submit(prompt, collect)

        async def keep(data: io.BytesIO) -> None:
            pictures.append(data.read())

        for image in collect.outputs["images"]:
            await api.fetch(image, keep)
        return pictures

    for url, prompt in ((default_url, SAVE), (default_url, SAVE), (session_url, TWO_OUTPUTS)):
        assert sizes(within(30, lambda: asyncio.run(run(url, prompt)))) == [(64, 64)]


def test_comfyapi_polls_history_for_its_output(default_url: str, tmp_path: Path) -> None:
    """comfyapi: POST /prompt, poll /history/{id} until an output image is listed, then download it by /view."""
    from comfyapi import ComfyAPIManager

    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(SAVE))
    manager = ComfyAPIManager()
    manager.set_base_url(default_url.rstrip("/"))
    manager.load_workflow(str(workflow))
    manager.edit_workflow(["1", "inputs", "color"], 33023)  # basic_save's second prompt
    prompt_id = manager.submit_workflow()
    filename, image_url = within(30, lambda: manager.wait_for_finish(prompt_id, poll_interval=0.05, max_wait_time=20))
    assert filename.endswith(".png")
    with urllib.request.urlopen(image_url) as response:
        assert sizes([response.read()]) == [(64, 64)]


# ---------------------------------------------------------------- previews asked for per prompt

TXT2IMG = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "random-sd15.safetensors"}},
           "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
           "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
           "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
           "3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 2, "cfg": 7, "sampler_name": "euler", "scheduler": "normal",
                                                      "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                      "latent_image": ["5", 0]}},
           "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
           "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "txt2img", "images": ["8", 0]}}}


def binary_frames(url: str, prompt: dict[str, Any], extra_data: dict[str, Any]) -> int:
    """How many binary frames a client gets for one prompt sent with ``extra_data``."""
    import websocket

    host, client_id = urllib.parse.urlsplit(url).netloc, str(uuid.uuid4())
    ws = websocket.WebSocket()
    ws.connect(f"ws://{host}/ws?clientId={client_id}", timeout=30)
    try:
        body = json.dumps({"prompt": prompt, "client_id": client_id, "extra_data": extra_data}).encode()
        prompt_id = json.loads(urllib.request.urlopen(urllib.request.Request(f"http://{host}/prompt", data=body)).read())["prompt_id"]
        frames = 0
        while True:
            out = ws.recv()
            if isinstance(out, bytes):
                frames += 1
            elif (message := json.loads(out))["type"] == "executing" and message["data"] == {"node": None, "prompt_id": prompt_id}:
                return frames
    finally:
        ws.close()


@pytest.mark.parametrize(("version", "previews"), [("0.8.0", 2), ("0.3.64", 0)])
def test_a_prompt_asks_for_previews_from_comfyui_0_5(tmp_path: Path, version: str, previews: int) -> None:
    # ComfyUI 0.5.0+ sets the sampler previews of one prompt from its extra_data.preview_method (the web page sends
    # its setting so); "default" or none given: the server's --preview-method, here none. 0.3.64 ignores the key.
    # Instant timing: the recorded txt2img pace (seconds a run) has nothing to do with which frames are sent.
    with serve(tmp_path, "--comfyui-version", version, "--timing", "instant") as (url, _):
        assert within(30, lambda: binary_frames(url, TXT2IMG, {"preview_method": "auto"})) == previews
        assert within(30, lambda: binary_frames(url, TXT2IMG, {"preview_method": "default"})) == 0
        assert within(30, lambda: binary_frames(url, TXT2IMG, {})) == 0
