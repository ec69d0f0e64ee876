"""What the browser tests share: Debian's headless Chromium driven by Playwright, one browser context on a replay
(every same-origin answer, page and console errors, timings, screenshots), the API-format workflow they run, and
frontend builds of other versions fetched into the user cache.

Chromium comes from the distribution (``apt-get install -y chromium``; ``$COMFY_CASSETTES_CHROMIUM`` names
another), never from Playwright's own download. Outside CI a missing browser, Playwright or frontend skips the
test; in CI (``$CI`` set) it fails. Screenshots and timings go to ``test-artifacts/browser/``
(``$COMFY_CASSETTES_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest

from comfy_cassettes.comfy.frontend import CURRENT_FRONTEND
from comfy_cassettes.replay.sim.frontend_builds import FrontendFetchError, fetch_build, fetch_hint

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("COMFY_CASSETTES_ARTIFACTS") or ROOT / "test-artifacts") / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # generous: CI shares two cores with the browser

# The page is ready: app and graph set, the app's socket open, the workflow's node types registered, the canvas
# sized, no spinner and no error dialog.
READY_JS = """() => {
  const api = window.comfyAPI && window.comfyAPI.api && window.comfyAPI.api.api;
  const types = window.LiteGraph && window.LiteGraph.registered_node_types;
  const canvas = document.querySelector('canvas#graph-canvas');
  const errorDialog = [...document.querySelectorAll('.p-dialog')].some(d => /error/i.test(d.textContent || ''));
  return !!(window.app && window.graph && api && api.socket && api.socket.readyState === 1
    && types && types.EmptyImage && types.SaveImage
    && canvas && canvas.width > 0 && canvas.height > 0 && canvas.getBoundingClientRect().width > 0
    && !document.querySelector('.p-progressspinner') && !errorDialog);
}"""

# The SaveImage node shows the job's image once it has loaded from /api/view.
IMAGE_JS = """() => {
  const node = window.app.graph.getNodeById(2);
  const img = node && node.imgs && node.imgs[0];
  return !!(img && img.complete && img.naturalWidth === 64 && img.src.includes('/api/view?'));
}"""

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744192}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "browser_test"}},
}
IMAGE_NAME = "browser_test_00001_.png"  # the SaveImage output of WORKFLOW's first run

Answer = tuple[str, str, int]  # method, path with query, status


def unavailable(reason: str) -> NoReturn:
    """Skip (fail in CI): the environment cannot run a browser test."""
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    named = os.environ.get("COMFY_CASSETTES_CHROMIUM")
    if named:
        return named
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright, closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    executable = find_chromium()
    if executable is None:
        unavailable("no Chromium found: apt-get install -y chromium (or set COMFY_CASSETTES_CHROMIUM)")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as exc:  # noqa: BLE001 - a broken browser install is an environment problem, said plainly
        playwright.stop()
        unavailable(f"Chromium at {executable} did not start: {exc}")
    try:
        yield launched
    finally:
        launched.close()
        playwright.stop()


# ---------------------------------------------------------------- frontend builds of other versions

CURRENT_FRONTEND_ENV = "COMFY_CASSETTES_CURRENT_FRONTEND"


def frontend_build(version: str) -> Path:
    """The static folder of a frontend version: the user cache, fetched there from the package index when missing
    (what `serve` does for the version its ComfyUI requires)."""
    try:
        return fetch_build(version)
    except FrontendFetchError as exc:
        unavailable(f"{exc}; fetch it by hand: {fetch_hint(version)}")


def current_frontend_build() -> Path:
    """The static folder of CURRENT_FRONTEND: ``$COMFY_CASSETTES_CURRENT_FRONTEND``, else the user cache."""
    named = os.environ.get(CURRENT_FRONTEND_ENV)
    if named:
        if not (Path(named) / "index.html").is_file():
            unavailable(f"${CURRENT_FRONTEND_ENV}={named} holds no index.html: {fetch_hint(CURRENT_FRONTEND.version)}")
        return Path(named)
    return frontend_build(CURRENT_FRONTEND.version)


# ---------------------------------------------------------------- one browser context on a replay

class PageRun:
    """One browser context on the replay: every same-origin answer, page and console errors, timings, screenshots.

    ``expected_errors`` are the error answers a real ComfyUI gives the page too (missing user files); ``har``: save
    the context's traffic there as a HAR (bodies embedded), as Playwright records a browser session."""

    def __init__(self, browser: Any, base: str, name: str, expected_errors: set[Answer], har: Path | None = None) -> None:
        self.base = base
        self.name = name
        self.expected_errors = expected_errors
        for old in [*ARTIFACTS.glob(f"{name}-*.png"), ARTIFACTS / f"{name}.json"]:  # this run's artifacts only
            old.unlink(missing_ok=True)
        recording = {"record_har_path": str(har), "record_har_content": "embed"} if har is not None else {}
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, **recording)
        # Offline like CI: the release-notes call to api.comfy.org fails on the real server here too.
        self.context.route(lambda url: not url.startswith(base), lambda route: route.abort("internetdisconnected"))
        self.page = self.context.new_page()
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("response", self._on_response)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda message: self.console_errors.append(message.text) if message.type == "error" else None)
        self.timings: dict[str, float] = {}

    def _on_response(self, response: Any) -> None:
        if response.url.startswith(self.base):
            self.answers.append((response.request.method, path_of(response.url), response.status))

    def boot(self) -> None:
        start = time.perf_counter()
        self.page.goto(self.base + "/")
        self.page.wait_for_function(READY_JS, polling=50, timeout=TIMEOUT_MS)
        self.timings["boot_s"] = round(time.perf_counter() - start, 3)
        self.page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)

    def close_dialogs(self, dialog: str = ".p-dialog") -> None:
        """Escape whatever ``dialog`` matches (PrimeVue's dialogs in 1.27.10)."""
        for _ in range(5):
            if not self.page.locator(dialog).count():
                return
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(200)

    def run_workflow(self, run_button: str) -> dict[str, Any]:
        """Load WORKFLOW, click the Run button, wait for the image in the SaveImage node; POST /api/prompt's answer."""
        self.page.evaluate("(w) => window.app.loadApiJson(w, 'browser_test.json')", WORKFLOW)
        start = time.perf_counter()
        with self.page.expect_response(lambda r: r.request.method == "POST" and path_of(r.url) == "/api/prompt") as queued:
            self.page.locator(run_button).first.click()
        self.page.wait_for_function(IMAGE_JS, polling=20, timeout=TIMEOUT_MS)
        self.timings["run_s"] = round(time.perf_counter() - start, 3)
        answer: dict[str, Any] = queued.value.json()
        return answer

    def screenshot(self, label: str, element: str | None = None) -> Path:
        """The page, or only what the ``element`` selector matches, as ``<name>-<label>.png``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        (self.page.locator(element).first if element else self.page).screenshot(path=str(path))
        return path

    def unexpected_errors(self) -> list[Answer]:
        return [a for a in self.answers if a[2] >= 400 and a not in self.expected_errors]

    def unexpected_console_errors(self) -> list[str]:
        """Console errors other than the browser's own line for a failed request (those are in ``answers``,
        checked by ``unexpected_errors``, or are the aborted calls to other sites)."""
        return [e for e in self.console_errors if not e.startswith("Failed to load resource")]

    def close(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{self.name}.json").write_text(json.dumps(
            {"timings": self.timings, "page_errors": self.errors, "console_errors": self.console_errors,
             "answers": self.answers}, indent=1))
        self.context.close()


@contextmanager
def page_run(browser: Any, base: str, name: str, expected_errors: set[Answer], har: Path | None = None) -> Iterator[PageRun]:
    run = PageRun(browser, base, name, expected_errors, har)
    try:
        yield run
    finally:
        run.close()


def path_of(url: str) -> str:
    """The path and query of a URL: ``/api/jobs?limit=64``."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
