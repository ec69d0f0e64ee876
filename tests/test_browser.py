"""The real ComfyUI web page (comfyui-frontend-package 1.27.10) on the replay, in headless Chromium driven by
Playwright: it boots, runs an API-format workflow from the Run button to the image shown in the SaveImage node
and in the queue panel; then, in a new browser context, the returning user gets back the settings the first run
wrote.

Browser, artifacts and skips as tests/browser_support.py says; the frontend is the installed package
(pip install -e '.[frontend]').
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import TIMEOUT_MS, Answer, PageRun, chromium, page_run, unavailable
from comfy_cassettes.comfy.frontend import FRONTEND
from comfy_cassettes.replay.server import ReplayServer
from helpers import module_server

# Every error status a real ComfyUI 0.3.64 gives this page during boot and run, all tolerated by it
# (shared/frontend_endpoints.txt): the user stylesheets and the user folders a new server does not have.
EXPECTED_ERRORS: set[Answer] = {
    ("GET", "/user.css", 404),
    ("GET", "/api/userdata/user.css", 404),
    ("GET", "/api/userdata/comfy.templates.json", 404),
    ("GET", "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true", 404),
    ("GET", "/api/userdata?dir=subgraphs%2F&recurse=true&split=false&full_info=true", 404),
}
RUN_BUTTON = "[data-testid=queue-button] button"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, started once for the module's tests."""
    if FRONTEND.installed() is None:
        unavailable("comfyui-frontend-package is not installed (pip install -e '.[frontend]')")
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    """One replay of the bundled cassette for the module, as `comfy-cassettes serve` runs it."""
    yield from module_server(tmp_path_factory, "browser")


def test_new_user_then_returning_user(browser: Any, server: ReplayServer) -> None:
    """One test, so the returning user always follows the new one on the same server (the suite runs on
    several workers)."""
    with page_run(browser, server.url, "new_user", EXPECTED_ERRORS) as new:
        new_user_boots_runs_and_sees_the_image(new, server)
    with page_run(browser, server.url, "returning_user", EXPECTED_ERRORS) as returning:
        returning_user_gets_the_settings_back(returning)


def new_user_boots_runs_and_sees_the_image(page_run: PageRun, server: ReplayServer) -> None:
    page_run.boot()
    page_run.screenshot("1-boot")
    # A new user gets the template browser over an empty workflow, as on a real ComfyUI.
    assert page_run.page.get_by_text("Get Started with a Template").count()
    page_run.close_dialogs()

    page_run.run_workflow(RUN_BUTTON)
    page_run.screenshot("2-run")
    assert ("POST", "/api/prompt", 200) in page_run.answers
    assert any(method == "GET" and path.startswith("/api/view?filename=browser_test_00001_.png") and status == 200
               for method, path, status in page_run.answers)

    # The queue panel lists the finished job with its image.
    page_run.page.locator(".queue-tab-button").first.click()
    preview = page_run.page.locator(".task-item .task-result-preview img").first
    preview.wait_for(state="visible", timeout=TIMEOUT_MS)
    page_run.screenshot("3-queue")

    assert page_run.unexpected_errors() == []
    settings = json.loads((server.engine.user_folder.user_root / "comfy.settings.json").read_text())
    assert settings == {"Comfy.InstalledVersion": "1.27.10", "Comfy.TutorialCompleted": True}
    # A setting changed from the page, for the returning user to find.
    page_run.page.evaluate("() => window.app.extensionManager.setting.set('Comfy.Sidebar.Location', 'right')")
    assert _settings_file(server).get("Comfy.Sidebar.Location") == "right"


def returning_user_gets_the_settings_back(page_run: PageRun) -> None:
    page_run.boot()
    page_run.screenshot("1-boot")
    location = page_run.page.evaluate("() => window.app.extensionManager.setting.get('Comfy.Sidebar.Location')")
    assert location == "right"
    assert page_run.page.get_by_text("Get Started with a Template").count() == 0  # the tutorial is done
    assert not [a for a in page_run.answers if a[0] == "POST" and a[1].startswith("/api/settings")]
    page_run.run_workflow(RUN_BUTTON)
    page_run.screenshot("2-run")
    assert page_run.unexpected_errors() == []


def _settings_file(server: ReplayServer) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        settings: dict[str, Any] = json.loads((server.engine.user_folder.user_root / "comfy.settings.json").read_text())
        if settings.get("Comfy.Sidebar.Location") or time.monotonic() > deadline:
            return settings
        time.sleep(0.05)
