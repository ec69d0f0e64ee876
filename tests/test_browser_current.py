"""The current ComfyUI web page (CURRENT_FRONTEND, the newest comfyui-frontend-package) on `serve --comfyui-version
0.38`, in headless Chromium: it boots with every request answered as ComfyUI 0.38 answers it, runs an API-format
workflow from the Run button to the image in the SaveImage node, and its Job Queue panel lists the job it read
from /api/jobs.

The build is ``$COMFY_CASSETTES_CURRENT_FRONTEND``, else the user cache, fetched there from the package index on
first use (tests/browser_support.py); browser, artifacts and skips as that module says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_support import IMAGE_NAME, TIMEOUT_MS, Answer, PageRun, chromium, current_frontend_build, page_run, path_of
from comfy_cassettes.comfy.frontend import CURRENT_FRONTEND
from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.server import ReplayServer

# Every error status a real ComfyUI 0.38 gives this page during boot and run: the user stylesheets and user
# folders a new server does not have (app/user_manager.py listuserdata's 404 "Directory not found"), and the
# templates' logo index, which the installed comfyui-workflow-templates (0.1.95) does not ship (ComfyUI serves
# packages older than 0.3.0 as a static folder, server.py add_routes: its plain 404).
EXPECTED_ERRORS: set[Answer] = {
    ("GET", "/user.css", 404),
    ("GET", "/api/userdata/user.css", 404),
    ("GET", "/api/userdata/comfy.templates.json", 404),
    ("GET", "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true", 404),
    ("GET", "/api/userdata?dir=subgraphs&recurse=true&split=false&full_info=true", 404),
    ("GET", "/templates/index_logo.json", 404),
}
RUN_BUTTON = "[data-testid=queue-button]"
DIALOG = "[data-slot=dialog-overlay]"  # reka-ui's modal layer, the template browser's
QUEUE_TOGGLE = "[data-testid=queue-overlay-toggle]"  # "N active": opens the Job Queue panel
QUEUE_PANEL = "[data-testid=queue-progress-overlay]"
JOB_LIST = "[data-testid=job-assets-list]"
ERROR_OVERLAY = "[data-testid=error-overlay]"  # "N issues found": missing nodes or models of the open workflow


@pytest.fixture(scope="module")
def build() -> Path:
    """The current frontend's static folder."""
    return current_frontend_build()


@pytest.fixture(scope="module")
def browser(build: Path) -> Iterator[Any]:
    """Debian's headless Chromium, started once for the module's tests."""
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    """`comfy-cassettes serve --comfyui-version 0.38 --front-end-root BUILD` on the bundled cassette."""
    root = tmp_path_factory.mktemp("browser_current")
    config = ReplayConfig(port=0, comfyui_version="0.38", front_end_root=build, output_dir=root / "out",
                          input_dir=root / "in", temp_dir=root / "temp", user_dir=root / "user")
    with ReplayServer(config) as started:
        yield started


def test_current_frontend_runs_a_job_and_lists_it_from_the_jobs_api(browser: Any, server: ReplayServer) -> None:
    """One test, so the returning user always follows the new one on the same server (the suite runs on
    several workers)."""
    with page_run(browser, server.url, "current", EXPECTED_ERRORS) as new:
        prompt_id = new_user_runs_the_workflow_and_sees_the_job(new, server)
    with page_run(browser, server.url, "current_returning", EXPECTED_ERRORS) as returning:
        returning_user_finds_the_job_in_the_queue_panel(returning, prompt_id)


def new_user_runs_the_workflow_and_sees_the_job(run: PageRun, server: ReplayServer) -> str:
    jobs_answers: list[Any] = []
    run.page.on("response", lambda r: jobs_answers.append(r) if path_of(r.url).startswith("/api/jobs?") else None)
    run.boot()
    # A new user gets the template browser over the default workflow, as on a real ComfyUI.
    run.page.locator(DIALOG).wait_for(state="visible", timeout=TIMEOUT_MS)
    run.screenshot("1-boot")
    run.close_dialogs(DIALOG)

    prompt_id = str(run.run_workflow(RUN_BUTTON)["prompt_id"])
    run.screenshot("2-run")
    assert not run.page.locator(ERROR_OVERLAY).count()  # no missing node or model in our graph
    assert any(method == "GET" and path.startswith(f"/api/view?filename={IMAGE_NAME}") and status == 200
               for method, path, status in run.answers)

    # The Job Queue panel lists the finished job, from the jobs API.
    job = open_job_queue(run, prompt_id)
    assert IMAGE_NAME in job.inner_text()
    run.screenshot("3-queue")
    run.screenshot("4-queue-panel", QUEUE_PANEL)
    listed = [j for r in jobs_answers if r.status == 200 for j in r.json()["jobs"]]
    done = [j for j in listed if j["id"] == prompt_id and j["status"] == "completed"]
    assert done and done[-1]["preview_output"]["filename"] == IMAGE_NAME
    assert not [a for a in run.answers if a[1].startswith("/api/history")]  # the panel reads only /api/jobs

    assert run.unexpected_errors() == []
    assert run.unexpected_console_errors() == []
    assert run.errors == []
    settings = json.loads((server.engine.user_folder.user_root / "comfy.settings.json").read_text())
    assert settings["Comfy.InstalledVersion"] == CURRENT_FRONTEND.version  # the build served is the one meant
    return prompt_id


def returning_user_finds_the_job_in_the_queue_panel(run: PageRun, prompt_id: str) -> None:
    """A new page knows the job only from the server: the panel lists it from /api/jobs."""
    run.boot()
    assert not run.page.locator(DIALOG).count()  # the tutorial is done: no template browser
    # The default workflow names models the replay does not have: the page asks where models go, as on ComfyUI.
    run.page.locator(ERROR_OVERLAY).wait_for(state="visible", timeout=TIMEOUT_MS)
    assert ("GET", "/internal/folder_paths", 200) in run.answers
    open_job_queue(run, prompt_id)
    run.screenshot("1-queue-panel", QUEUE_PANEL)
    assert ("GET", "/api/jobs?status=completed,failed,cancelled&limit=64&offset=0", 200) in run.answers
    assert run.unexpected_errors() == []
    assert run.unexpected_console_errors() == []
    assert run.errors == []


def open_job_queue(run: PageRun, prompt_id: str) -> Any:
    """Open the Job Queue panel and wait for the job's row with its image; the row."""
    if not run.page.locator(JOB_LIST).count():
        run.page.locator(QUEUE_TOGGLE).click()
    job = run.page.locator(f'{JOB_LIST} [data-job-id="{prompt_id}"]')
    job.wait_for(state="visible", timeout=TIMEOUT_MS)
    job.locator("img").wait_for(state="visible", timeout=TIMEOUT_MS)
    return job
