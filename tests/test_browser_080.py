"""The editor of ComfyUI 0.8.0 on `comfy-cassettes serve --comfyui-version 0.8.0`, in headless Chromium: serve
serves the frontend 0.8.0 requires (1.35.9, fetched once into the user cache), which boots with every request
answered as 0.8.0 answers it, runs an API-format workflow from the Run button and shows the image in the
SaveImage node. That browser session, saved as a HAR and imported, is a cassette that recorded the page: served
offline with only 1.27.10 installed, it boots the 1.35.9 page it recorded and runs the workflow.

Browser, artifacts and skips as tests/browser_support.py says; the build is fetched as `serve` fetches it (a
test without the network and without the cached build is skipped, outside CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_support import IMAGE_NAME, TIMEOUT_MS, Answer, PageRun, chromium, frontend_build, page_run
from serve_process import offline_env, serve

FRONTEND_080 = "1.35.9"  # ComfyUI 0.8.0's requirements.txt (real-sessions-0.8/snapshots: required_frontend_version)
# Every error status a real ComfyUI 0.8.0 gives this page during boot and run: the user stylesheets and the user
# folders a new server does not have (app/user_manager.py: 404 "Directory not found" / file not found).
EXPECTED_ERRORS: set[Answer] = {
    ("GET", "/user.css", 404),
    ("GET", "/api/userdata/user.css", 404),
    ("GET", "/api/userdata/comfy.templates.json", 404),
    ("GET", "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true", 404),
    ("GET", "/api/userdata?dir=subgraphs&recurse=true&split=false&full_info=true", 404),
}
RUN_BUTTON = "[data-testid=queue-button]"
DIALOG = ".p-dialog"  # 1.35.9's template browser, a PrimeVue dialog; Escape does not close it, its x button does
DIALOG_CLOSE = ".p-dialog button:has(i.pi-times)"


@pytest.fixture(scope="module")
def build() -> Path:
    """1.35.9's static folder in the user cache, where `serve` looks for it (fetched now if missing)."""
    return frontend_build(FRONTEND_080)


@pytest.fixture(scope="module")
def browser(build: Path) -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def served(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str], Path]]:
    """`comfy-cassettes serve --comfyui-version 0.8.0` on the bundled cassette: URL, banner, user folder."""
    root = tmp_path_factory.mktemp("browser_080")
    with serve(root, "--comfyui-version", "0.8.0") as (url, banner):
        assert httpx.get(url + "/api/system_stats", timeout=10).json()["system"]["comfyui_version"] == "0.8.0"
        yield url, banner, root / "user"


def test_the_0_8_0_editor_then_its_recorded_page(browser: Any, served: tuple[str, list[str], Path], build: Path,
                                                tmp_path: Path) -> None:
    """One test: the browser session on the 0.8.0 editor is saved as a HAR, and that HAR, imported, is the
    recorded-page cassette of the second part (the suite runs on several workers)."""
    url, banner, user = served
    assert f"web frontend: comfyui-frontend-package {FRONTEND_080} (from {build.resolve()})" in banner
    har = tmp_path / "session.har"
    with page_run(browser, url, "frontend_080", EXPECTED_ERRORS, har=har) as run:
        new_user_boots_runs_and_sees_the_image(run)
        # What 1.35.9 reads from 0.8.0 that 0.3.64 does not answer: the global subgraphs (none without custom nodes).
        assert ("GET", "/api/global_subgraphs", 200) in run.answers
    settings = json.loads((user / "default" / "comfy.settings.json").read_text())
    assert settings["Comfy.InstalledVersion"] == FRONTEND_080  # the build served is the one 0.8.0 requires
    the_recorded_page_boots_from_its_cassette_offline(browser, har, tmp_path)


def new_user_boots_runs_and_sees_the_image(run: PageRun) -> None:
    run.boot()
    # A new user gets the template browser, as on a real ComfyUI 0.8.0.
    run.page.locator(DIALOG).first.wait_for(state="visible", timeout=TIMEOUT_MS)
    run.screenshot("1-boot")
    run.page.locator(DIALOG_CLOSE).first.click()
    run.page.locator(DIALOG).first.wait_for(state="detached", timeout=TIMEOUT_MS)
    answer = run.run_workflow(RUN_BUTTON)
    run.screenshot("2-run")
    assert sorted(answer) == ["node_errors", "number", "prompt_id"]
    assert any(method == "GET" and path.startswith(f"/api/view?filename={IMAGE_NAME}") and status == 200
               for method, path, status in run.answers)
    assert run.unexpected_errors() == []
    assert run.unexpected_console_errors() == []
    assert run.errors == []


def the_recorded_page_boots_from_its_cassette_offline(browser: Any, har: Path, root: Path) -> None:
    """The imported session serves the page it recorded: 1.35.9 boots and runs although the only frontend at
    hand is the installed 1.27.10 (offline, empty cache)."""
    cassette = root / "recorded" / "page.yaml"
    subprocess.run([sys.executable, "-m", "comfy_cassettes", "import", str(har), "-o", str(cassette)],
                   check=True, capture_output=True)
    (root / "empty").mkdir()
    replay = root / "replay"
    replay.mkdir()
    # Instant timing: what this part checks is the page served, not pacing (the recording's pace, taken under a
    # loaded suite, made the run outlast the browser's wait once).
    with serve(replay, str(cassette), "--timing", "instant", env=offline_env(root / "cache", root / "empty")) as (url, banner):
        assert "web page: the page the cassette recorded (GET / and the files it recorded)" in banner
        with page_run(browser, url, "recorded_page_080", EXPECTED_ERRORS) as run:
            new_user_boots_runs_and_sees_the_image(run)
            assert not [a for a in run.answers if a[1].startswith("/assets/") and a[2] != 200]
    settings = json.loads((replay / "user" / "default" / "comfy.settings.json").read_text())
    assert settings["Comfy.InstalledVersion"] == FRONTEND_080
