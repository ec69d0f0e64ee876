"""The user folder behind /users, /settings, /userdata and /v2/userdata: ComfyUI 0.3.64's answers, statuses,
path guards and on-disk formats (captured with curl from the real server), and the admin reset putting the
folder back."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.server import ReplayServer
from helpers import module_server

CRASH = b"500 Internal Server Error\n\nServer got itself in trouble"
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    """One replay of the bundled cassette for the module, as `comfy-cassettes serve` runs it."""
    yield from module_server(tmp_path_factory, "userdata")


@pytest.fixture
def http(server: ReplayServer) -> Iterator[httpx.Client]:
    """A client on a freshly reset server (empty user folder)."""
    with ReplayControl(server.url) as control:
        control.reset()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def user(server: ReplayServer) -> Path:
    return server.engine.user_folder.root


def test_fresh_server_users_and_settings(http: httpx.Client, user: Path) -> None:
    assert list(user.iterdir()) == []
    r = http.get("/api/users")
    assert (r.status_code, r.headers["content-type"], r.text) == (200, JSON, '{"storage": "server", "migrated": false}')
    assert http.get("/api/settings").text == "{}"
    assert (user / "default").is_dir()  # reading the settings creates the user's folder, as ComfyUI does
    assert http.get("/users").text == '{"storage": "server", "migrated": true}'
    r = http.get("/api/settings/Comfy.InstalledVersion")
    assert (r.status_code, r.text) == (200, "null")


def test_settings_written_like_comfyui(http: httpx.Client, user: Path) -> None:
    # The page posts each setting as JSON text with a text/plain content type.
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Comfy-User": ""}
    r = http.post("/api/settings/Comfy.InstalledVersion", content='"1.27.10"', headers=headers)
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")
    assert "content-type" not in r.headers
    http.post("/api/settings/Comfy.TutorialCompleted", content="true", headers=headers)
    assert http.get("/api/settings/Comfy.InstalledVersion").text == '"1.27.10"'
    assert http.get("/api/settings").text == '{"Comfy.InstalledVersion": "1.27.10", "Comfy.TutorialCompleted": true}'
    http.post("/api/settings/Comfy.Obj", content='{"a":[1,2.5,{"b":null}],"é":"ü"}'.encode())
    http.post("/api/settings", content='{"Comfy.Bulk":1,"Comfy.TutorialCompleted":false}')
    assert http.get("/api/settings").text == (
        '{"Comfy.InstalledVersion": "1.27.10", "Comfy.TutorialCompleted": false, '
        '"Comfy.Obj": {"a": [1, 2.5, {"b": null}], "\\u00e9": "\\u00fc"}, "Comfy.Bulk": 1}'
    )
    text = (user / "default" / "comfy.settings.json").read_text()
    assert text == json.dumps(json.loads(text), indent=4) and not text.endswith("\n")
    assert '"\\u00e9": "\\u00fc"' in text


@pytest.mark.parametrize("path, body", [
    ("/api/settings/Comfy.Bad", b"notjson"),
    ("/api/settings/Comfy.Empty", b""),
    ("/api/settings", b"[1,2]"),
])
def test_bad_setting_bodies_are_comfyuis_500(http: httpx.Client, path: str, body: bytes) -> None:
    r = http.post(path, content=body)
    assert (r.status_code, r.content, r.headers["content-type"]) == (500, CRASH, TEXT)


def test_setting_id_is_decoded_from_one_segment(http: httpx.Client) -> None:
    http.post("/api/settings/a%2Fb", content="1")
    assert http.get("/api/settings").json() == {"a/b": 1}
    assert http.get("/api/settings/a%2Fb").text == "1"


def test_corrupt_settings_file_reads_as_empty(http: httpx.Client, user: Path) -> None:
    (user / "default").mkdir()
    (user / "default" / "comfy.settings.json").write_text("{not json")
    assert http.get("/api/settings").json() == {}


def test_userdata_listing_guards(http: httpx.Client) -> None:
    cases = [
        ("/api/userdata", 400, "Directory not provided"),
        ("/api/userdata?dir=", 400, "Directory not provided"),
        ("/api/userdata?dir=..%2F..", 403, "Invalid directory"),
        ("/api/userdata?dir=%2Fetc", 403, "Invalid directory"),
        ("/api/userdata?dir=%252E%252E", 403, "Invalid directory"),  # decoded twice, like ComfyUI
        ("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true", 404, "Directory not found"),
        ("/api/userdata?dir=subgraphs%2F&recurse=true&split=false&full_info=true", 404, "Directory not found"),
    ]
    for url, status, text in cases:
        r = http.get(url)
        assert (r.status_code, r.headers["content-type"], r.text) == (status, TEXT, text), url


def test_userdata_write_list_read(http: httpx.Client, user: Path) -> None:
    r = http.post("/api/userdata/workflows%2Fa.json", content='{"x":1}')
    assert (r.status_code, r.text) == (200, '"workflows/a.json"')
    r = http.post("/api/userdata/workflows%2Fsub%2Fb.json?overwrite=false&full_info=true", content='{"y":2}')
    info = r.json()
    assert list(info) == ["path", "size", "modified", "created"]
    assert (info["path"], info["size"]) == ("workflows/sub/b.json", 7)
    assert isinstance(info["modified"], float)  # float seconds, sub-second digits kept
    r = http.post("/api/userdata/workflows%2Fa.json?overwrite=false", content='{"x":2}')
    assert (r.status_code, r.headers["content-type"], r.text) == (409, TEXT, "File already exists")
    http.post("/api/userdata/workflows%2Fa.json?overwrite=0", content='{"x":3}')  # anything but "false" overwrites
    (user / "default" / "workflows" / ".hidden.json").write_text("{}")
    (user / "default" / "workflows" / "emptydir").mkdir()

    assert sorted(http.get("/api/userdata?dir=workflows").json()) == ["a.json"]
    assert sorted(http.get("/api/userdata?dir=workflows&recurse=true").json()) == ["a.json", "sub/b.json"]
    assert sorted(http.get("/api/userdata?dir=workflows&recurse=1").json()) == ["a.json"]  # only "true" recurses
    split = http.get("/api/userdata?dir=workflows&recurse=true&split=true").json()
    assert sorted(split) == [["a.json", "a.json"], ["sub/b.json", "sub", "b.json"]]
    full = http.get("/api/userdata?dir=workflows%2F&recurse=TRUE&full_info=True&split=true").json()
    assert sorted(f["path"] for f in full) == ["a.json", "sub/b.json"]
    assert http.get("/api/userdata?dir=workflows%2Fa.json").json() == []

    r = http.get("/api/userdata/workflows%2Fa.json")
    assert (r.status_code, r.content) == (200, b'{"x":3}')
    assert r.headers["content-type"] == "application/json" and r.headers["accept-ranges"] == "bytes"
    st = os.stat(user / "default" / "workflows" / "a.json")
    assert r.headers["etag"] == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    assert "last-modified" in r.headers and "cache-control" not in r.headers
    r = http.get("/api/userdata/workflows%2Fa.json", headers={"Range": "bytes=0-2"})
    assert (r.status_code, r.content, r.headers["content-range"]) == (206, b'{"x', "bytes 0-2/7")


def test_userdata_file_misses_and_guards(http: httpx.Client, user: Path) -> None:
    r = http.get("/api/userdata/user.css")  # the <link> in index.html, on every page load
    assert (r.status_code, r.content, r.headers["cache-control"], r.headers["content-length"]) == (404, b"", "no-cache", "0")
    assert http.get("/api/userdata/missing.png").headers["cache-control"] == "public, max-age=3600"
    assert "cache-control" not in http.get("/api/userdata/comfy.templates.json").headers
    for escape in ("..%2F..%2Fx", "..%252F..%252Fx", "%2Fetc%2Fpasswd"):
        assert (http.get(f"/api/userdata/{escape}").status_code, http.delete(f"/api/userdata/{escape}").status_code) == (403, 403)
    assert http.post("/api/userdata/..%2Fother%2Fx.json", content="x").status_code == 403
    http.get("/api/userdata/ghost%2Fdeeper%2Fz.json")
    assert (user / "default" / "ghost" / "deeper").is_dir()  # ComfyUI creates the parent even for a GET
    http.post("/api/userdata/workflows%2Fsub%2Fb.json", content="1")
    r = http.get("/api/userdata/workflows%2Fsub")
    assert (r.status_code, r.content, r.headers["content-type"], r.headers.get("transfer-encoding")) == (
        403, b"", "application/octet-stream", "chunked")
    # An unencoded "/" is not the {file} route: the replay's report of an unknown request.
    r = http.get("/api/userdata/workflows/sub/b.json")
    assert (r.status_code, r.headers["x-comfy-cassettes"]) == (404, "unmatched")


def test_userdata_names_decoded_twice(http: httpx.Client, user: Path) -> None:
    assert http.post("/api/userdata/a%2541.json", content="1").text == '"aA.json"'
    assert http.post("/api/userdata/100%25.json", content="2").text == '"100%.json"'
    assert (user / "default" / "aA.json").read_text() == "1" and (user / "default" / "100%.json").read_text() == "2"


def test_userdata_write_errors(http: httpx.Client) -> None:
    http.post("/api/userdata/workflows%2Fa.json", content="1")
    r = http.post("/api/userdata/workflows%2F", content="1")  # names a folder
    assert (r.status_code, r.content) == (400, b"")
    assert http.post("/api/userdata/bad%00name.json", content="1").content == CRASH


def test_userdata_delete_and_move(http: httpx.Client, user: Path) -> None:
    http.post("/api/userdata/workflows%2Fa.json", content='{"x":1}')
    http.post("/api/userdata/workflows%2FZ.json", content='{"z":1}')
    r = http.post("/api/userdata/workflows%2Fa.json/move/workflows%2Fmoved.json")
    assert (r.status_code, r.text) == (200, '"workflows/moved.json"')
    r = http.post("/api/userdata/workflows%2Fmoved.json/move/workflows%2FZ.json?overwrite=false")
    assert (r.status_code, r.text) == (409, "File already exists")
    r = http.post("/api/userdata/workflows%2Fmoved.json/move/workflows%2Fnew%2Fdeep.json?full_info=true")
    assert r.json()["path"] == "workflows/new/deep.json"
    assert http.post("/api/userdata/workflows%2Fnope.json/move/workflows%2Fx.json").status_code == 404
    # ComfyUI checks the source twice and never the destination: an escaping destination is its 500.
    assert http.post("/api/userdata/workflows%2FZ.json/move/..%2F..%2Fescape.json").content == CRASH
    assert (user / "default" / "workflows" / "Z.json").exists()

    r = http.delete("/api/userdata/workflows%2FZ.json")
    assert (r.status_code, r.content) == (204, b"")
    assert "content-length" not in r.headers
    assert http.delete("/api/userdata/workflows%2FZ.json").status_code == 404
    (user / "default" / "workflows" / "emptydir").mkdir()
    assert http.delete("/api/userdata/workflows%2Femptydir").content == CRASH


def test_userdata_v2_listing(http: httpx.Client) -> None:
    assert http.get("/api/v2/userdata").json() == []  # no user folder yet
    http.post("/api/userdata/workflows%2FZ.json", content="1")
    http.post("/api/userdata/workflows%2Fsub%2Fb.json", content="22")
    listing = http.get("/api/v2/userdata").json()
    assert [(e["type"], e["path"]) for e in listing] == [
        ("directory", "workflows/sub"), ("directory", "workflows"), ("file", "workflows/sub/b.json"), ("file", "workflows/Z.json"),
    ]
    assert listing[2]["size"] == 2
    cases = [("?path=nothere", 404, "Requested path not found"), ("?path=workflows%2FZ.json", 400, "Requested path is not a directory"),
             ("?path=..%2F..", 400, "Invalid path requested")]
    for query, status, text in cases:
        r = http.get("/api/v2/userdata" + query)
        assert (r.status_code, r.text) == (status, text)


def test_add_user_in_single_user_mode(http: httpx.Client, user: Path) -> None:
    r = http.post("/api/users", json={"username": "Alice B!"})
    assert re.fullmatch(r'"Alice-B-_[0-9a-f-]{36}"', r.text)
    r = http.post("/api/users", json={"username": "default"})
    assert (r.status_code, r.text) == (400, '{"error": "Duplicate username."}')
    users = json.loads((user / "users.json").read_text())
    assert list(users.values()) == ["default", "Alice B!"]
    assert http.post("/api/users", json={"username": "  "}).content == CRASH
    assert http.get("/api/users").json()["storage"] == "server"  # still single-user


def test_reset_empties_a_temporary_user_folder(server: ReplayServer, http: httpx.Client, user: Path) -> None:
    http.post("/api/settings/Comfy.X", content="1")
    http.post("/api/userdata/workflows%2Fa.json", content="{}")
    with ReplayControl(server.url) as control:
        control.reset()
    assert list(user.iterdir()) == []
    assert http.get("/api/settings").json() == {}


def test_a_given_user_folder_is_read_and_put_back_by_reset(tmp_path: Path) -> None:
    """A returning user: the folder's settings and workflows are served; a reset restores what it held."""
    seeded = tmp_path / "user" / "default"
    (seeded / "workflows").mkdir(parents=True)
    (seeded / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}, indent=4))
    (seeded / "workflows" / "mine.json").write_text('{"nodes": []}')
    config = ReplayConfig(port=0, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "temp", user_dir=tmp_path / "user")
    with ReplayServer(config) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/api/settings").json() == {"Comfy.TutorialCompleted": True}
        assert http.get("/api/userdata?dir=workflows").json() == ["mine.json"]
        http.post("/api/settings/Comfy.X", content="2")
        http.delete("/api/userdata/workflows%2Fmine.json")
        http.post("/api/userdata/workflows%2Fnew.json", content="{}")
        with ReplayControl(server.url) as control:
            control.reset()
        assert http.get("/api/settings").json() == {"Comfy.TutorialCompleted": True}
        assert http.get("/api/userdata?dir=workflows").json() == ["mine.json"]
    assert (seeded / "workflows" / "mine.json").read_text() == '{"nodes": []}'  # stopping leaves a given folder


def test_the_pytest_fixture_gives_each_test_an_empty_user_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import httpx

        def test_writes(comfy):
            httpx.post(comfy.url + "/api/settings/Comfy.X", content="1")
            assert (comfy.user_dir / "default" / "comfy.settings.json").exists()

        def test_starts_fresh(comfy):
            assert httpx.get(comfy.url + "/api/settings").json() == {}
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
