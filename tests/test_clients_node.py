"""Public ComfyUI clients from npm (tests/clients_node: @saintno/comfyui-sdk, @stable-canvas/comfyui-client,
comfy-ui-client) against `comfy-cassettes serve` at its default settings, each as its README shows: they get their
images from the bundled default cassette and from an imported session cassette, as they do from ComfyUI 0.8.0.
Outside CI a missing Node or node_modules skips with the command that installs it; in CI (``.ci/run`` installs
them) it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import har_path
from serve_process import serve, serve_imported

CLIENTS = Path(__file__).resolve().parent / "clients_node"

SAVE = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}}}
# batch_3's first prompt: three images.
BATCH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 3, "color": 8388863}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "batch"}}}


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, once the clients are installed."""
    found = shutil.which("node")
    missing = None if found else "Node.js is not installed (apt-get install nodejs npm)"
    if found and not (CLIENTS / "node_modules" / "@saintno" / "comfyui-sdk").exists():
        missing = "tests/clients_node has no node_modules (cd tests/clients_node && npm ci)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: .ci/run should have installed it", pytrace=False)
        pytest.skip(missing)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def default_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("default")) as (url, _):
        yield url


@pytest.fixture(scope="module")
def session_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`serve` on a cassette imported from a real session's HAR (batch_3)."""
    with serve_imported(tmp_path_factory.mktemp("session"), har_path("batch_3")) as url:
        yield url


def run(node: str, script: str, url: str, workflow: dict[str, object], tmp_path: Path, *args: str) -> list[list[list[int]]]:
    """The image sizes each run of a client script printed (one ``{"sizes": ...}`` line per run)."""
    file = tmp_path / "workflow.json"
    file.write_text(json.dumps(workflow))
    done = subprocess.run([node, script, url, str(file), *args], cwd=CLIENTS, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return [json.loads(line)["sizes"] for line in done.stdout.splitlines() if line.startswith('{"sizes"')]


def test_saintno_comfyui_sdk(node: str, default_url: str, session_url: str, tmp_path: Path) -> None:
    assert run(node, "saintno.mjs", default_url, SAVE, tmp_path) == [[[64, 64]]]
    assert run(node, "saintno.mjs", session_url, BATCH, tmp_path) == [[[64, 64]] * 3]


def test_stable_canvas_comfyui_client_over_ws_and_by_polling(node: str, default_url: str, session_url: str, tmp_path: Path) -> None:
    for mode in ("ws", "poll"):
        assert run(node, "stable_canvas.mjs", default_url, SAVE, tmp_path, mode) == [[[64, 64]]]
    assert run(node, "stable_canvas.mjs", session_url, BATCH, tmp_path, "ws") == [[[64, 64]] * 3]


def test_comfy_ui_client_hears_each_job_end_after_its_answer(node: str, default_url: str, session_url: str, tmp_path: Path) -> None:
    # It starts listening for the job's `executing` null only once POST /prompt has answered: five runs in a row on
    # one socket, the later ones all cached, each must still be heard.
    assert run(node, "comfy_ui_client.mjs", default_url, SAVE, tmp_path, "5") == [[[64, 64]]] * 5
    assert run(node, "comfy_ui_client.mjs", session_url, BATCH, tmp_path, "1") == [[[64, 64]] * 3]
