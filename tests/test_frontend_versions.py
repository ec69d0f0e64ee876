"""The editor of the cassette's version, through `comfy-cassettes serve`: a cassette that recorded the web page
serves the page it recorded; otherwise the frontend version the ComfyUI version requires, from the installed
package or the user cache, and, when that version cannot be had, one line naming the version served instead."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from comfy_cassettes.comfy import frontend as facts
from comfy_cassettes.comfy.profiles import profile
from comfy_cassettes.replay.http import frontend as replay_frontend
from comfy_cassettes.replay.sim import frontend_builds
from serve_process import offline_env, serve

installed = pytest.mark.skipif(facts.FRONTEND.installed_version() != "1.27.10", reason="comfyui-frontend-package "
                               "1.27.10 is not installed (pip install 'comfy-cassettes[frontend]')")

DATA = Path(__file__).parent / "data" / "frontend"
RECORDED_INDEX = b'<!doctype html><html><head><script type="module" src="/assets/index-Rec0rd3d.js"></script></head></html>'
RECORDED_SCRIPT = b'console.log("the recorded page");'
RECORDED_FONT = b"wOF2\x00\x01{{\xd8\xff\xfe}}"  # binary, with braces a text body would take for a placeholder


def write_page_har(path: Path) -> None:
    """A browser session's HAR (as Playwright saves one) that loaded the page: GET /, a script, a font."""

    def entry(url: str, content_type: str, body: bytes) -> dict[str, object]:
        return {"startedDateTime": "2026-01-08T10:00:00.000Z", "time": 3,
                "request": {"method": "GET", "url": f"http://127.0.0.1:8193{url}", "headers": [], "queryString": []},
                "response": {"status": 200, "statusText": "OK", "headers": [{"name": "Content-Type", "value": content_type}],
                             "content": {"size": len(body), "mimeType": content_type,
                                         "text": base64.b64encode(body).decode(), "encoding": "base64"}}}

    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "Playwright", "version": "1.57"}, "entries": [
        entry("/", "text/html", RECORDED_INDEX),
        entry("/assets/index-Rec0rd3d.js", "application/javascript", RECORDED_SCRIPT),
        entry("/fonts/inter-latin-normal.woff2", "application/octet-stream", RECORDED_FONT),
    ]}}))


@installed
def test_a_cassette_that_recorded_the_page_serves_the_page_it_recorded(tmp_path: Path) -> None:
    write_page_har(tmp_path / "session.har")
    cassette = tmp_path / "page.yaml"
    subprocess.run([sys.executable, "-m", "comfy_cassettes", "import", str(tmp_path / "session.har"), "-o", str(cassette),
                    "--comfyui-version", "0.8.0"], check=True, capture_output=True)
    # Offline with an empty cache: the recorded page needs no build.
    env = offline_env(tmp_path / "cache", tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with serve(tmp_path, str(cassette), env=env) as (url, banner), httpx.Client(base_url=url, timeout=10) as http:
        assert "web page: the page the cassette recorded (GET / and the files it recorded)" in banner
        page = http.get("/")
        assert (page.status_code, page.content, page.headers["content-type"]) == (200, RECORDED_INDEX, "text/html")
        script = http.get("/assets/index-Rec0rd3d.js")
        assert (script.status_code, script.content) == (200, RECORDED_SCRIPT)
        font = http.get("/fonts/inter-latin-normal.woff2", headers={"Origin": url})
        assert (font.status_code, font.content) == (200, RECORDED_FONT)
        # A file the recording lacks still comes from a build (the installed one here, the only one offline).
        assert http.get("/materialdesignicons.min.css").status_code == 200
        assert http.get("/assets/not-recorded-nor-built.js").status_code == 404


@installed
def cached_build(cache: Path, version: str, files: dict[str, bytes]) -> Path:
    """A frontend build in a user cache, where `serve` keeps the builds it fetched."""
    build = cache / "comfy-cassettes" / "frontend" / version / "static"
    for name, data in files.items():
        (build / name).parent.mkdir(parents=True, exist_ok=True)
        (build / name).write_bytes(data)
    assert frontend_builds.cache_folder(version).relative_to(frontend_builds.cache_folder(version).parents[3]) == build.relative_to(cache)
    return build


def test_the_version_the_comfyui_requires_is_served_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build = cached_build(cache, "1.35.9", {"index.html": b"<!doctype html><title>1.35.9</title>", "extensions/core/new.js": b""})
    (tmp_path / "empty").mkdir()
    env = offline_env(cache, tmp_path / "empty")
    cassette = DATA / "recorded_frontend.yaml"  # 0.3.64 with a custom node: its /extensions lists its widget script
    with serve(tmp_path, str(cassette), "--comfyui-version", "0.8.0", env=env) as (url, banner), httpx.Client(base_url=url, timeout=10) as http:
        assert f"web frontend: comfyui-frontend-package 1.35.9 (from {build})" in banner
        assert http.get("/").content == b"<!doctype html><title>1.35.9</title>"
        # The build's own scripts are those of the build served, the custom node's as recorded (server.py
        # get_extensions: the web root's extensions/**/*.js, then each custom node's web folder).
        assert http.get("/api/extensions").json() == ["/extensions/core/new.js", "/extensions/my_node/widget.js"]


def test_offline_without_a_frontend_the_banner_says_both_on_web_frontend_lines(tmp_path: Path) -> None:
    # A user who installed no [frontend] extra, offline: the fetch failure is a `web frontend:` line like every other
    # word about the page, then how to get one. A package of that name with no build folder hides an installed one.
    (tmp_path / "empty").mkdir()
    (tmp_path / "hidden" / facts.FRONTEND.module).mkdir(parents=True)
    (tmp_path / "hidden" / facts.FRONTEND.module / "__init__.py").write_text("")
    env = {**offline_env(tmp_path / "cache", tmp_path / "empty"), "PYTHONPATH": str(tmp_path / "hidden")}
    with serve(tmp_path, env=env) as (url, banner):
        said = [line for line in banner if "frontend" in line]
        assert said[0].startswith("web frontend: could not fetch comfyui-frontend-package==1.27.10: ")
        assert said[0].endswith("; no frontend installed to serve instead")
        assert said[1:] == [facts.INSTALL_HINT]
        assert "comfy-cassettes[frontend]" in httpx.get(url + "/", timeout=10).text  # so does GET /


@installed
def test_offline_it_says_so_in_one_line_and_names_the_version_served(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = offline_env(tmp_path / "cache", tmp_path / "empty")
    with serve(tmp_path, "--comfyui-version", "0.8.0", env=env) as (url, banner), httpx.Client(base_url=url, timeout=10) as http:
        said = [line for line in banner if line.startswith("web")]
        assert len(said) == 1 and said[0].startswith("web frontend: could not fetch comfyui-frontend-package==1.35.9: ")
        assert said[0].endswith("; serving the installed 1.27.10 instead")
        print(said[0])
        installed_index = facts.FRONTEND.installed()
        assert installed_index is not None
        assert http.get("/").content == (installed_index / "index.html").read_bytes()
    assert not (tmp_path / "cache" / "comfy-cassettes" / "frontend" / "1.35.9" / "static").exists()  # nothing half-fetched kept


@installed
def test_the_bundled_cassettes_version_is_the_installed_one_and_never_fetches(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = offline_env(tmp_path / "cache", tmp_path / "empty")
    with serve(tmp_path, env=env) as (url, banner):
        assert [line for line in banner if line.startswith("web")] == ["web frontend: comfyui-frontend-package 1.27.10 (installed)"]
    assert not (tmp_path / "cache" / "comfy-cassettes" / "frontend").exists()  # (the parsed cassettes are kept there)


def test_the_version_served_is_the_one_the_comfyui_version_requires() -> None:
    """The required frontend is a row of the table of differences: a version between two known ones requires
    what the older one required."""
    assert [profile(v).frontend_version for v in ("0.3.64", "0.5.0", "0.8.0", "0.8.2", "0.38.1")] == [
        "1.27.10", "1.27.10", "1.35.9", "1.35.9", "1.53.6"]


def test_a_custom_build_wins_over_a_recorded_page(tmp_path: Path) -> None:
    roots = replay_frontend.WebRoots(wanted="1.35.9", front_end_root=tmp_path, recorded_page=True)
    assert not roots.recorded_page and roots.web_root() == tmp_path.resolve()
    assert roots.describe() == f"web frontend: {tmp_path.resolve()}"
