"""The web frontend's files and informational routes on the replay, as ComfyUI 0.3.64's aiohttp serves them:
content types, Cache-Control, ETag/Last-Modified, 304/206, static misses and refusals, path guards; recorded
answers winning; the one-line hint when no frontend is installed."""

from __future__ import annotations

from http.client import HTTPConnection
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from comfy_cassettes.comfy import frontend as facts
from comfy_cassettes.errors import ConfigError
from comfy_cassettes.replay.http import frontend as replay_frontend
from comfy_cassettes.replay.config import BUNDLED_DIR, ReplayConfig
from comfy_cassettes.replay.server import ReplayServer
from comfy_cassettes.replay.sim import frontend_builds
from serve_process import offline_env

DATA = Path(__file__).parent / "data" / "frontend"
INDEX = b"<!doctype html><html><head><title>ComfyUI</title></head></html>"


def make_build(root: Path) -> Path:
    """A small frontend build with one file of each kind the real package holds."""
    files = {
        "index.html": INDEX, "assets/app.js": b"export {};", "assets/lib/mod.mjs": b"export const x = 1;",
        "assets/style.css": b"body{}", "assets/img.png": b"\x89PNG\r\n\x1a\n", "assets/font.woff2": b"wOF2",
        "assets/data.json": b"{}", "assets/index-map.json": b"{}", "assets/logo.svg": b"<svg/>", "assets/favicon.ico": b"\0",
        "assets/app.js.map": b"{}", "extensions/core/a.js": b"// a", "extensions/core/sub/b.js": b"// b",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def start(root: Path, *cassettes: Path, **options: object) -> ReplayServer:
    config = ReplayConfig(cassettes=cassettes or ReplayConfig().cassettes, port=0, output_dir=root / "out", input_dir=root / "in",
                          temp_dir=root / "temp", user_dir=root / "user", **options)  # type: ignore[arg-type]
    return ReplayServer(config).start()


def raw_get(server: ReplayServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A request whose path is sent exactly as written (no client-side normalisation of ``..``)."""
    connection = HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_build(tmp_path_factory.mktemp("frontend-build"))


@pytest.fixture(scope="module")
def server(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    started = start(tmp_path_factory.mktemp("frontend-server"), BUNDLED_DIR / "basic_save.yaml", front_end_root=build)
    yield started
    started.stop()


@pytest.fixture
def http(server: ReplayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_the_page_is_never_cached(http: httpx.Client, build: Path) -> None:
    r = http.get("/")
    assert (r.status_code, r.content) == (200, INDEX)
    st = os.stat(build / "index.html")
    assert {k: r.headers[k] for k in ("cache-control", "pragma", "expires", "content-type", "etag", "content-length", "accept-ranges")} == {
        "cache-control": "no-cache", "pragma": "no-cache", "expires": "0", "content-type": "text/html",
        "etag": f'"{st.st_mtime_ns:x}-{st.st_size:x}"', "content-length": str(len(INDEX)), "accept-ranges": "bytes",
    }
    assert r.headers["last-modified"] == facts.last_modified(st)
    head = http.head("/")
    assert head.content == b"" and head.headers["etag"] == r.headers["etag"]
    assert "cache-control" not in http.get("/index.html").headers  # the static route, not the "/" handler


@pytest.mark.parametrize("path, content_type, cache_control", [
    ("/assets/app.js", "application/javascript", "no-cache"),
    ("/assets/lib/mod.mjs", "application/javascript", None),  # .mjs is not .js for the cache middleware
    ("/assets/style.css", "text/css", "no-cache"),
    ("/assets/img.png", "image/png", "public, max-age=86400"),
    ("/assets/font.woff2", "application/octet-stream", None),
    ("/assets/data.json", "application/json", None),
    ("/assets/index-map.json", "application/json", "no-cache"),
    ("/assets/logo.svg", "image/svg+xml", None),
    ("/assets/favicon.ico", "image/vnd.microsoft.icon", None),
    ("/assets/app.js.map", "application/octet-stream", None),
    ("/extensions/core/sub/b.js", "application/javascript", "no-cache"),
])
def test_content_types_and_caching(http: httpx.Client, path: str, content_type: str, cache_control: str | None) -> None:
    r = http.get(path)
    assert r.status_code == 200
    assert (r.headers["content-type"], r.headers.get("cache-control")) == (content_type, cache_control)


@pytest.mark.parametrize("path, cache_control", [
    ("/user.css", "no-cache"), ("/assets/nope.js", "no-cache"), ("/index.json", "no-cache"),
    ("/assets/nope.png", "public, max-age=86400"),  # ComfyUI's middleware sees the file answer still at 200
    ("/favicon.ico", None), ("/extensions/nope/x.js", "no-cache"), ("/assets/nope", None),
])
def test_static_misses_are_aiohttps_empty_404(http: httpx.Client, path: str, cache_control: str | None) -> None:
    r = http.get(path)
    assert (r.status_code, r.content, r.headers["content-type"]) == (404, b"", "application/octet-stream")
    assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
    assert r.headers.get("cache-control") == cache_control
    assert "x-comfy-cassettes" not in r.headers


def test_folders_methods_and_unknown_api_paths(http: httpx.Client) -> None:
    for path in ("/assets", "/assets/", "/extensions/core/"):
        r = http.get(path)
        assert (r.status_code, r.text, r.headers["content-type"]) == (403, "403: Forbidden", "text/plain; charset=utf-8")
    r = http.post("/")
    assert (r.status_code, r.text, r.headers["allow"]) == (405, "405: Method Not Allowed", "GET,HEAD")
    # ComfyUI answers any unknown path with a static 404; the replay keeps its report of the closest recordings
    # for what is not one of the page's files (an API typo must still fail a test).
    for path in ("/api/nope", "/system_stat", "/no/such/route"):
        r = http.get(path)
        assert (r.status_code, r.headers["x-comfy-cassettes"]) == (404, "unmatched"), path


def test_validators_and_ranges(http: httpx.Client) -> None:
    first = http.get("/assets/app.js")
    r = http.get("/assets/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert (r.status_code, r.content, r.headers["cache-control"]) == (304, b"", "no-cache")
    assert r.headers["etag"] == first.headers["etag"] and "content-type" not in r.headers
    img = http.get("/assets/img.png")
    r = http.get("/assets/img.png", headers={"If-Modified-Since": img.headers["last-modified"]})
    assert (r.status_code, r.headers["cache-control"]) == (304, "public, max-age=86400")
    r = http.get("/assets/app.js", headers={"Range": "bytes=0-5"})
    assert (r.status_code, r.content, r.headers["content-range"]) == (206, b"export", "bytes 0-5/10")


def test_dot_segments_like_aiohttp(server: ReplayServer) -> None:
    assert raw_get(server, "/assets/../index.html")[::2] == (200, INDEX)  # yarl resolves literal dots first
    assert raw_get(server, "/assets/%2e%2e/index.html")[::2] == (200, INDEX)  # still inside the web root
    status, headers, body = raw_get(server, "/assets/%2e%2e/%2e%2e/x")
    assert (status, body, headers["content-type"]) == (404, b"404: Not Found", "text/plain; charset=utf-8")


def test_extension_scripts_of_a_build(build: Path) -> None:
    assert sorted(replay_frontend.extension_scripts(build)) == ["/extensions/core/a.js", "/extensions/core/sub/b.js"]


def test_informational_routes_without_recordings(http: httpx.Client) -> None:
    assert http.get("/extensions").json() == http.get("/api/extensions").json()
    assert http.get("/api/i18n").text == "{}"
    assert http.get("/api/workflow_templates").text == "{}"
    folders = http.get("/api/experiment/models").json()
    assert [f["name"] for f in folders][:3] == ["checkpoints", "loras", "vae"] and len(folders) == 18
    assert http.get("/api/experiment/models/checkpoints").json() == []
    assert http.get("/api/experiment/models/nope").status_code == 404


def test_recorded_answers_win(tmp_path: Path, build: Path) -> None:
    server = start(tmp_path, DATA / "recorded_frontend.yaml", front_end_root=build)
    try:
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/api/i18n").json() == {"en": {"nodeDefs": {"MyNode": {"display_name": "My Node"}}}}
            assert http.get("/api/workflow_templates").json() == {"my_node": ["demo"]}
            assert http.get("/api/extensions").json() == ["/extensions/core/clipspace.js", "/extensions/my_node/widget.js"]
            # A custom node's script the build does not have is answered from the recording...
            r = http.get("/extensions/my_node/widget.js")
            assert (r.status_code, r.text, r.headers["content-type"]) == (200, 'console.log("my_node widget");', "application/javascript")
            # ...while a file the build has is served from it.
            assert http.get("/extensions/core/a.js").text == "// a"
    finally:
        server.stop()


def test_without_a_frontend_the_root_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = facts.WebPackage("absent", "no_such_frontend_package", "static", "/", "0")
    monkeypatch.setattr(replay_frontend, "FRONTEND", absent)
    monkeypatch.setattr(frontend_builds, "FRONTEND", absent)
    monkeypatch.setattr(frontend_builds, "_served", {})
    (tmp_path / "empty").mkdir()
    for name, value in offline_env(tmp_path / "cache", tmp_path / "empty").items():
        monkeypatch.setenv(name, value)
    server = start(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:  # the first page request tries pip first
            r = http.get("/")
            assert r.status_code == 404 and r.text.count("\n") == 1
            assert "pip install 'comfy-cassettes[frontend]'" in r.text and "--front-end-root" in r.text
            assert http.get("/user.css").headers["x-comfy-cassettes"] == "unmatched"
    finally:
        server.stop()


def test_front_end_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--front-end-root .*: no such folder"):
        ReplayConfig(front_end_root=tmp_path / "missing").validated()


installed = pytest.mark.skipif(facts.FRONTEND.installed() is None, reason="comfyui-frontend-package is not installed "
                               "(pip install 'comfy-cassettes[frontend]')")


@installed
def test_installed_packages_are_served(tmp_path: Path) -> None:
    server = start(tmp_path)  # the bundled cassette, as `serve` runs
    static = facts.FRONTEND.installed()
    assert static is not None
    try:
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/").content == (static / "index.html").read_bytes()
            # The bundled cassette's recorded /extensions is the installed package's list.
            listed = set(http.get("/api/extensions").json())
            assert listed == {"/" + p.relative_to(static).as_posix() for p in (static / "extensions").rglob("*.js")}
            r = http.get("/extensions/core/clipspace.js")
            assert (r.status_code, r.headers["cache-control"], r.headers["content-type"]) == (200, "no-cache", "application/javascript")
            if facts.TEMPLATES.installed() is not None:
                r = http.get("/templates/index.json")
                assert (r.headers["content-type"], r.headers["cache-control"]) == ("application/json", "no-cache")
                r = http.get("/templates/default-1.webp")
                assert (r.headers["content-type"], r.headers["cache-control"]) == ("application/octet-stream", "public, max-age=86400")
                assert http.get("/templates/").status_code == 403
            if facts.DOCS.installed() is not None:
                r = http.get("/docs/ImageBlur/ko.md")
                assert (r.status_code, r.headers["content-type"]) == (200, "application/octet-stream")
    finally:
        server.stop()
