"""Hostile and heavy use of a real server (issue 21): shutdown under load, clients that stop reading, alias
bombs, odd names, full disks, size limits, the admin API's Host/Origin rule. Every test bounds its time and the
server's memory."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from comfy_cassettes.cassette import load as cassette_io
from helpers import bundled
from serve_process import CLI, start_serve

MEMORY_CAP = 2 << 30  # bytes of address space a served subprocess may take


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def serve(tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`serve` in a subprocess with its own TMPDIR (its temporary folders are created there) and capped memory."""
    tmp.mkdir(parents=True, exist_ok=True)
    return start_serve(*args, env={**os.environ, "TMPDIR": str(tmp), **(env or {})}, preexec_fn=_cap_memory)


@functools.lru_cache(maxsize=1)
def workflow() -> dict[str, Any]:
    """The bundled txt2img prompt: 120 kB of /ws frames (previews) each time it runs uncached."""
    return dict(cassette_io.load(bundled("txt2img")).jobs[0].workflow)


def flood(http: httpx.Client, client_id: str, jobs: int) -> None:
    """Queue ``jobs`` uncached runs of txt2img for ``client_id`` (POST /free drops the cache between them)."""
    for _ in range(jobs):
        assert http.post("/free", json={"free_memory": True}).status_code == 200
        assert http.post("/prompt", json={"prompt": workflow(), "client_id": client_id}).status_code == 200


def connection_ends(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (what it sent meanwhile is read and dropped)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(1 << 20) == b"":
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
    return False


def stalled_socket(url: str, client_id: str) -> socket.socket:
    """A /ws client that completes the handshake and then never reads again, with a tiny receive buffer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in sock.recv(4096)
    return sock


# ---------------------------------------------------------------- 3: SIGTERM under load


def test_sigterm_under_load_stops_quickly_and_removes_the_folders(tmp_path: Path) -> None:
    process, url = serve(tmp_path / "tmp", "--timing", "recorded")
    sockets = []
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            for i in range(32):
                sockets.append(stalled_socket(url, f"stalled-{i}"))
                flood(http, f"stalled-{i}", 2)
        assert any((tmp_path / "tmp").iterdir())  # the server's output/input/temp/user folders
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
        took = time.monotonic() - started
    finally:
        for sock in sockets:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert took < 6, f"SIGTERM took {took:.1f} s"
    assert not list((tmp_path / "tmp").iterdir()), "the server's folders were left behind"


# ---------------------------------------------------------------- 4: a client that stops reading


def test_a_client_that_stops_reading_delays_nobody_and_is_cut(tmp_path: Path) -> None:
    # Zero latency: 61 txt2img runs at their recorded 8 s each would take minutes.
    process, url = serve(tmp_path / "tmp", "--timing", "instant", env={"COMFY_CASSETTES_WS_SEND_TIMEOUT": "1.5"})
    stalled = None
    try:
        stalled = stalled_socket(url, "stuck")
        with httpx.Client(base_url=url, timeout=5) as http, connect(url.replace("http", "ws") + "/ws?clientId=reader") as reader:
            flood(http, "stuck", 40)  # 5 MB of frames: more than the stuck socket's buffers hold
            deadline = time.monotonic() + 10
            while len(http.get("/history").json()) < 40 and time.monotonic() < deadline:
                time.sleep(0.02)  # the stuck client's jobs are done: only their frames wait
            started = time.monotonic()
            prompt_id = http.post("/prompt", json={"prompt": workflow(), "client_id": "reader"}).json()["prompt_id"]
            while True:
                message = reader.recv(timeout=3)
                if isinstance(message, str):
                    event = json.loads(message)
                    if event["type"] == "executing" and event["data"].get("node") is None and event["data"].get("prompt_id") == prompt_id:
                        break
            took = time.monotonic() - started
        time.sleep(2.0)  # past the send timeout (reading sooner would unstall it)
        ended = connection_ends(stalled, 3)  # cut, not kept open silently
    finally:
        if stalled is not None:
            stalled.close()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert took < 1.0, f"the reading client's job took {took:.2f} s"
    assert ended, "the stalled client's socket was left open"


# ---------------------------------------------------------------- 5: YAML alias bombs


def alias_bomb(path: Path, *, levels: int = 9, pad: int = 0) -> Path:
    """Ten values, then ``levels`` lists of ten aliases of the one before (10**levels values), one bad placeholder."""
    lines = ["l0: &l0 [" + ", ".join(['"lol"'] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    lines += ["version: 1", "interactions: []", f"metadata: {{bomb: *l{levels - 1}, bad: '{{{{not a placeholder'}}"]
    path.write_text("\n".join(lines) + "\n" + ("# " + "x" * pad + "\n" if pad else ""))
    return path


@pytest.mark.parametrize("pad", [0, 2 << 20], ids=["small", "over-1MiB-cached-size"])
def test_an_alias_bomb_is_refused_at_once_with_a_clear_error(tmp_path: Path, pad: int) -> None:
    bomb = alias_bomb(tmp_path / "bomb.yaml", pad=pad)
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COMFY_CASSETTES_CACHE": "1"}
    commands = [["inspect", str(bomb)]] + ([["serve", str(bomb), "--port", "0"]] if not pad else [])
    for command in commands:
        result = subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=20, env=env, preexec_fn=_cap_memory)
        assert result.returncode != 0
        assert f"{bomb}: its YAML aliases expand to over" in result.stderr + result.stdout
    assert not cache.exists() or not any(cache.rglob("*.json")), "the bomb was expanded into the parsed-cassette cache"


def test_a_recursive_alias_is_refused_and_a_few_aliases_are_fine(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("version: 1\ninteractions: []\nmetadata: &m {self: *m}\n")
    with pytest.raises(Exception, match="into themselves"):
        cassette_io.load(recursive)
    shared = tmp_path / "shared.yaml"
    shared.write_text("version: 1\ninteractions: []\nmetadata: {a: &h {x: [1, 2]}, b: *h, c: *h}\n")
    assert cassette_io.load(shared).metadata == {"a": {"x": [1, 2]}, "b": {"x": [1, 2]}, "c": {"x": [1, 2]}}


# ---------------------------------------------------------------- 6: names beyond latin-1


def test_a_non_latin1_name_is_viewed_with_comfyuis_utf8_header(tmp_path: Path) -> None:
    from comfy_cassettes.replay.config import ReplayConfig
    from comfy_cassettes.replay.server import ReplayServer

    config = ReplayConfig(port=0, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "temp", user_dir=tmp_path / "user")
    png = (bundled("txt2img").parent / "blobs").glob("*.png").__next__().read_bytes()
    with ReplayServer(config) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        uploaded = http.post("/upload/image", files={"image": ("猫.png", png, "image/png")})
        assert uploaded.status_code == 200 and uploaded.json()["name"] == "猫.png"
        viewed = http.get("/view", params={"filename": "猫.png", "type": "input"})
        assert viewed.status_code == 200 and viewed.content == png
        # aiohttp writes ComfyUI's filename="..." header as UTF-8 bytes.
        assert (b"content-disposition", 'filename="猫.png"'.encode()) in [(k.lower(), v) for k, v in viewed.headers.raw]
        assert server.engine.journal.problems()["errors"] == []


# ---------------------------------------------------------------- 7: a full disk in dynamic mode


def _full_disk() -> None:
    """The served process may write no file past 200 bytes (EFBIG, like a full disk, instead of SIGXFSZ)."""
    import resource

    _cap_memory()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_a_full_disk_leaves_no_partial_output_and_view_serves_none(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen([*CLI, "serve", "--port", "0", "--timing", "instant", "--disable-static-return", "--output-dir", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path)}, preexec_fn=_full_disk)
    try:
        assert process.stdout is not None
        url = next(m.group(1) for line in process.stdout if (m := re.search(r"listening on (http://\S+)", line)))
        with httpx.Client(base_url=url, timeout=5) as http:
            prompt_id = http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"]
            deadline = time.monotonic() + 5
            while prompt_id not in (history := http.get(f"/history/{prompt_id}").json()) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert history[prompt_id]["status"]["status_str"] == "error"
            messages = history[prompt_id]["status"]["messages"]
            assert any(kind == "execution_error" for kind, _ in messages)
            assert [p.name for p in out.rglob("*") if p.is_file()] == []  # no empty, cut-off or hidden partial file
            assert http.get("/view", params={"filename": "txt2img_00001_.png", "type": "output"}).status_code == 404
            assert http.get("/system_stats").status_code == 200  # still serving
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


# ---------------------------------------------------------------- a served subprocess for the risks below


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Zero latency: these hostile clients poll for jobs they expect over at once, not txt2img's recorded 8 s.
    process, url = serve(tmp_path_factory.mktemp("served"), "--timing", "instant")
    yield url
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=10)


# ---------------------------------------------------------------- 8: links out of a cassette folder


def test_blobs_linked_from_outside_the_cassette_folder_are_refused(tmp_path: Path) -> None:
    source = bundled("basic_save")
    refs = {f"blobs/{p.name}" for p in (source.parent / "blobs").iterdir()} & set(re.findall(r"blobs/[0-9a-f]{64}\.\w+", source.read_text()))
    assert refs
    linked_folder = tmp_path / "a"
    linked_folder.mkdir()
    (linked_folder / "c.yaml").write_text(source.read_text())
    (linked_folder / "blobs").symlink_to(source.parent / "blobs")  # the whole folder
    linked_files = tmp_path / "b"
    (linked_files / "blobs").mkdir(parents=True)
    (linked_files / "c.yaml").write_text(source.read_text())
    for ref in refs:  # every file
        (linked_files / ref).symlink_to(source.parent / ref)
    result = subprocess.run([*CLI, "inspect", str(linked_folder / "c.yaml")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "leads outside the cassette folder" in result.stderr and str(linked_folder / "c.yaml") in result.stderr
    with pytest.raises(Exception, match="leads outside the cassette folder"):
        cassette_io.load(linked_files / "c.yaml")


# ---------------------------------------------------------------- 9: uploads make no folders outside


def test_an_upload_creates_no_folder_outside_the_input_folder(tmp_path: Path) -> None:
    from comfy_cassettes.replay.config import ReplayConfig
    from comfy_cassettes.replay.server import ReplayServer

    config = ReplayConfig(port=0, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "temp", user_dir=tmp_path / "user")
    outside = tmp_path / "x" / "y"
    with ReplayServer(config) as server, httpx.Client(base_url=server.url, timeout=5) as http:
        answer = http.post("/upload/image", data={"subfolder": str(outside)}, files={"image": ("../../in/a.png", b"png", "image/png")})
        assert answer.status_code in (200, 400, 500)
        assert http.post("/upload/image", data={"subfolder": "inside/deeper"}, files={"image": ("b.png", b"png", "image/png")}).status_code == 200
    assert not (tmp_path / "x").exists()
    assert (tmp_path / "in" / "inside" / "deeper" / "b.png").read_bytes() == b"png"


# ---------------------------------------------------------------- 10: the admin API and DNS rebinding


def test_the_admin_api_refuses_foreign_hosts_and_origins(served: str) -> None:
    port = served.rsplit(":", 1)[1]
    problems = served + "/__cassettes__/problems"
    refused = [{"Host": f"rebound.example:{port}"}, {"Origin": "null"}, {"Origin": f"http://rebound.example:{port}"},
               {"Host": f"attacker.test:{port}", "Origin": f"http://attacker.test:{port}"}]
    for headers in refused:
        answer = httpx.get(problems, headers=headers, timeout=5)
        assert answer.status_code == 403, headers  # ComfyUI's own empty 403 when Host is loopback, else ours
        assert answer.content == b"" or "admin API" in answer.json()["error"]
    allowed = [{}, {"Host": f"localhost:{port}"}, {"Host": f"[::1]:{port}"}, {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
               {"Origin": f"http://127.0.0.1:{port}"}]
    for headers in allowed:
        assert httpx.get(problems, headers=headers, timeout=5).status_code == 200, headers
    # ComfyUI's own routes keep ComfyUI's rule (its origin check), not this one.
    assert httpx.get(served + "/system_stats", headers={"Host": f"rebound.example:{port}"}, timeout=5).status_code == 200


# ---------------------------------------------------------------- 11: size limits


def _raw(url: str, payload: bytes | list[bytes], *, timeout: float = 5) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            for part in payload if isinstance(payload, list) else [payload]:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the rest was sent
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            if length and len(body) >= int(length.group(1)):
                break
        return answer


def test_bodies_over_100_mib_get_413_and_headers_are_capped(served: str) -> None:
    host = served.removeprefix("http://")
    declared = _raw(served, f"POST /prompt HTTP/1.1\r\nHost: {host}\r\nContent-Length: {150 << 20}\r\n\r\n".encode())
    assert declared.startswith(b"HTTP/1.1 413 ")
    assert declared.endswith(f"Maximum request body size {100 << 20} exceeded, actual body size {150 << 20}".encode())
    chunk = b"x" * (1 << 20)
    chunked = [f"POST /prompt HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()]
    chunked += [b"100000\r\n" + chunk + b"\r\n"] * 101 + [b"0\r\n\r\n"]
    assert _raw(served, chunked).startswith(b"HTTP/1.1 413 ")
    huge_header = _raw(served, [f"GET /system_stats HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode()] + [b"a" * (1 << 20)] * 4 + [b"\r\n\r\n"])
    assert huge_header.startswith(b"HTTP/1.1 400 ")
    assert httpx.get(served + "/system_stats", timeout=5).status_code == 200  # and it goes on serving


# ---------------------------------------------------------------- 12: ComfyUI's keep-alive


def test_keep_alive_is_aiohttps() -> None:
    from comfy_cassettes.replay.config import ReplayConfig
    from comfy_cassettes.replay.server import ReplayServer

    server = ReplayServer(ReplayConfig(port=0))
    try:
        config = server._server.config
        # No server pings (aiohttp under ComfyUI sends none; uvicorn's cut clients that answered late) and
        # aiohttp's 75 s idle keep-alive.
        assert (config.ws_ping_interval, config.ws_ping_timeout, config.timeout_keep_alive) == (None, None, 75)
    finally:
        server.stop()


# ---------------------------------------------------------------- 13: record --proxy when the cassette cannot be written


def test_the_proxy_saves_the_session_elsewhere_when_the_cassette_cannot_be_written(served: str, tmp_path: Path) -> None:
    blocked = tmp_path / "blocker"
    blocked.write_text("a file where the cassette folder should be")  # writing under it fails like a full disk
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    proxy = subprocess.Popen([*CLI, "record", "--proxy", "--target", served, "--port", "0", "-o", str(blocked / "c.yaml")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(rescue)})
    try:
        assert proxy.stdout is not None
        url = next(m.group(1) for line in proxy.stdout if (m := re.search(r"listening on (http://\S+)", line)))
        assert httpx.get(url + "/system_stats", timeout=10).status_code == 200
    finally:
        proxy.send_signal(signal.SIGINT)
        _, stderr = proxy.communicate(timeout=15)
    assert proxy.returncode == 1
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    saved = Path(re.search(r"saved to (\S+) instead", stderr).group(1))  # type: ignore[union-attr]
    assert saved.parent.parent == rescue and f"could not write {blocked / 'c.yaml'}" in stderr
    assert [i.uri for i in cassette_io.load(saved).interactions][-1].endswith("/system_stats")


# ---------------------------------------------------------------- 14: ids across resets, jobs in flight


def test_prompt_ids_never_repeat_across_resets_and_a_job_in_flight_hears_its_end(served: str) -> None:
    from comfy_cassettes.control import ReplayControl

    ids: list[str] = []
    with ReplayControl(served) as control, httpx.Client(base_url=served, timeout=5) as http, connect(served.replace("http", "ws") + "/ws?clientId=watcher") as ws:
        for _ in range(3):
            control.reset()
            ids += [http.post("/prompt", json={"prompt": workflow()}).json()["prompt_id"] for _ in range(3)]
        control.reset()
        control.hold("node:3")
        held = http.post("/prompt", json={"prompt": workflow(), "client_id": "watcher"}).json()["prompt_id"]
        control.wait_held(held)
        control.reset()
        ends = []
        deadline = time.monotonic() + 3
        while not ends and time.monotonic() < deadline:
            message = ws.recv(timeout=3)
            if isinstance(message, str) and json.loads(message)["type"] == "execution_interrupted":
                ends.append(json.loads(message)["data"])
    assert len(set(ids)) == len(ids) == 9
    assert ends and ends[0]["prompt_id"] == held


# ---------------------------------------------------------------- 15: problems, bounded


def test_problems_are_bounded_and_a_deep_settings_body_is_comfyuis_500_not_an_engine_error(served: str) -> None:
    from comfy_cassettes.control import ReplayControl

    with ReplayControl(served) as control, httpx.Client(base_url=served, timeout=5) as http:
        control.reset()
        for i in range(130):
            assert http.get(f"/no/such/route/{i}").status_code == 404
        deep = "[" * 30_000 + "]" * 30_000  # short enough for the journal to keep
        assert http.post("/settings", content=deep).status_code == 500
        assert http.post("/settings/Comfy.X", content=deep).status_code == 500
        assert control.find(path="/settings", body_json={"x": 1}) == []  # matching over it is no crash either
        problems = control.problems()
        assert problems["errors"] == []
        assert len(problems["unmatched"]) == 100 and problems["dropped"] == 30
        with pytest.raises(Exception, match="30 more problem"):
            control.check()
        control.reset()
