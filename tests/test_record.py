"""Tests for ``comfy-cassettes record``: workflow and proxy recording against our own replay server, round trips,
record modes, scrubbing, atomic saves under SIGKILL, and an opt-in recording from a real ComfyUI."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner
from websockets.sync.client import connect as ws_connect

from comfy_cassettes.cassette.load import load
from comfy_cassettes.cli import app
from comfy_cassettes.errors import ImportFormatError
from comfy_cassettes.record.live import load_workflow
from comfy_cassettes.record.writer import write_session
from comfy_cassettes.record.modes import RecordMode, combine
from comfy_cassettes.record.scrub import SCRUBBED, Scrubber
from comfy_cassettes.record.session import HttpExchange, RawSession, WsConnection, WsFrame
from comfy_cassettes.replay.server import ReplayServer
from comfy_cassettes.drift import shape
from helpers import job_messages

BASIC = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
}
BATCH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 3, "color": 255}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "batch"}},
}
TRANSFORM = {
    "10": {"class_type": "LoadImage", "inputs": {"image": "test_input.png"}},
    "11": {"class_type": "ImageScale", "inputs": {"image": ["10", 0], "upscale_method": "bilinear", "width": 128, "height": 96, "crop": "disabled"}},
    "12": {"class_type": "ImageInvert", "inputs": {"image": ["11", 0]}},
    "13": {"class_type": "ImageBlur", "inputs": {"image": ["12", 0], "blur_radius": 2, "sigma": 1.0}},
    "14": {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": "transformed"}},
}
WEBSOCKET_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 2, "color": 16711680}},
    "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
}
SECRETS = ("Bearer-TOKEN-0123456789", "session-cookie-abcdef987", "comfyui-key-5f3c2a1b9e", "team-token-777888999")

runner = CliRunner()
StartServer = Callable[..., ReplayServer]


def png_bytes(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def cli(*args: str) -> Any:
    result = runner.invoke(app, [str(a) for a in args])
    return result


# ---------------------------------------------------------------- a real client


def drive(
    url: str, workflow: dict[str, Any], *, runs: int = 2, upload: bytes | None = None, feature_flags: bool = False,
    headers: dict[str, str] | None = None, extra_data: dict[str, Any] | None = None, client_binary: bool = False,
) -> list[dict[str, Any]]:
    """Run ``workflow`` like an API client (httpx + websockets) and keep the structure of everything it saw."""
    cid = uuid.uuid4().hex
    results: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, trust_env=False, headers=headers or {}, timeout=20) as http, \
            ws_connect(f"ws{url[4:]}/ws?clientId={cid}", proxy=None, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "status"
        if feature_flags:
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            assert json.loads(ws.recv(timeout=10))["type"] == "feature_flags"
        if client_binary:
            ws.send(b"\x00\x00\x00\x09client-binary")  # ComfyUI ignores it; the proxy must still pass it on
        if upload is not None:
            r = http.post("/upload/image", files={"image": ("test_input.png", upload, "image/png")}, data={"overwrite": "true"})
            assert r.status_code == 200, r.text
        for _ in range(runs):
            body: dict[str, Any] = {"prompt": workflow, "client_id": cid}
            if extra_data:
                body["extra_data"] = extra_data
            answer = http.post("/prompt", json=body)
            assert answer.status_code == 200, answer.text
            pid = answer.json()["prompt_id"]
            events = []
            for message in job_messages(ws, pid, timeout=10):
                if isinstance(message, bytes):
                    events.append(f"<binary type {int.from_bytes(message[:4], 'big')}>")
                    continue
                data = message.get("data") or {}
                # status broadcasts race the HTTP answer in ComfyUI too (real-sessions README): order not compared.
                if message["type"] == "status" or data.get("prompt_id") not in (None, pid):
                    continue
                events.append(message["type"])
            entry = http.get(f"/history/{pid}").json()[pid]
            views = []
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    r = http.get("/view", params={k: image[k] for k in ("filename", "subfolder", "type")})
                    views.append((r.status_code, r.headers.get("content-type")))
            results.append({
                "prompt": shape(answer.json()), "ws": events, "history": shape(entry),
                "queue": shape(http.get("/queue").json()), "views": views,
            })
    return results


# ---------------------------------------------------------------- the proxy as a process


class ProxyProcess:
    """``comfy-cassettes record --proxy`` in a subprocess, its URL read from what it prints."""

    def __init__(self, target: str, output: Path, *extra: str) -> None:
        command = [sys.executable, "-c", "from comfy_cassettes.cli import main; main()", "record", "--proxy",
                   "--target", target, "--port", "0", "-o", str(output), *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        found = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                if "listening on" in line:
                    found.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(20):
            self.process.kill()
            raise AssertionError(f"proxy did not start: {self.lines} {self.process.stderr.read() if self.process.stderr else ''}")
        self.url = next(line for line in self.lines if "listening on" in line).split()[4]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.process.send_signal(sig)
        code = self.process.wait(20)
        self.reader.join(5)
        stderr = self.process.stderr.read() if self.process.stderr else ""
        if self.process.stderr:
            self.process.stderr.close()
        return code, "".join(self.lines), stderr


@pytest.fixture
def proxies() -> Iterator[Callable[..., ProxyProcess]]:
    started: list[ProxyProcess] = []

    def start(target: str, output: Path, *extra: str) -> ProxyProcess:
        proxy = ProxyProcess(target, output, *extra)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait(10)
        for stream in (proxy.process.stdout, proxy.process.stderr):
            if stream is not None:
                stream.close()


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- workflow recording


def test_workflow_recording_round_trip_reproduces_the_original_structure(start_server: StartServer, tmp_path: Path) -> None:
    upstream = start_server()  # the bundled comfyui.yaml: /object_info validation, /system_stats
    image = tmp_path / "test_input.png"
    image.write_bytes(png_bytes())
    basic = tmp_path / "cassettes" / "basic.yaml"
    transform = tmp_path / "cassettes" / "transform.yaml"
    result = cli("record", write_json(tmp_path / "basic.json", BASIC), "--server", upstream.url, "-o", basic, "--repeat", "2", "--with-object-info")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "2 job(s) (success, success)" in result.output
    result = cli("record", write_json(tmp_path / "transform.json", TRANSFORM), "--server", upstream.url, "-o", transform, "--upload", image)
    assert result.exit_code == 0, result.output

    cassette = load(basic)
    assert cassette.recorded["comfyui_version"] == "0.3.64"
    assert [j.status for j in cassette.jobs] == ["success", "success"]
    assert cassette.jobs[1].cached == ("1", "2")  # --repeat recorded the cached re-run
    paths = [i.uri.split("/", 3)[3] for i in cassette.interactions]
    assert paths[:2] == ["system_stats", "object_info"] and paths[-1] == "queue"
    assert "view?filename={{out.2.0.filename}}&subfolder={{out.2.0.subfolder}}&type=output" in paths
    uploads = [i for i in load(transform).interactions if i.uri.endswith("/upload/image")]
    assert len(uploads) == 1 and json.loads(uploads[0].body)["name"] == "test_input.png"

    original = start_server()
    replayed = start_server(basic, transform)
    assert drive(replayed.url, BASIC) == drive(original.url, BASIC)
    assert drive(replayed.url, TRANSFORM, upload=png_bytes(), runs=1) == drive(original.url, TRANSFORM, upload=png_bytes(), runs=1)


def test_batch_recording_keeps_every_output(start_server: StartServer, tmp_path: Path) -> None:
    upstream = start_server()
    out = tmp_path / "batch.yaml"
    assert cli("record", write_json(tmp_path / "b.json", BATCH), "--server", upstream.url, "-o", out).exit_code == 0
    job = load(out).jobs[0]
    assert [(o.node, o.index) for o in job.outputs] == [("2", 0), ("2", 1), ("2", 2)] and all(o.width > 0 for o in job.outputs)
    assert all(o.file and (tmp_path / o.file).is_file() for o in job.outputs)
    assert drive(start_server(out).url, BATCH, runs=1) == drive(start_server().url, BATCH, runs=1)


def test_several_workflows_show_cached_reruns_and_counter_progression(start_server: StartServer, tmp_path: Path) -> None:
    other = json.loads(json.dumps(BASIC))
    other["1"]["inputs"]["color"] = 33023
    out = tmp_path / "two.yaml"
    first, second = write_json(tmp_path / "a.json", BASIC), write_json(tmp_path / "b.json", other)
    result = cli("record", first, second, "--server", start_server().url, "-o", out, "--repeat", "2")
    assert result.exit_code == 0 and "4 job(s) (success, success, success, success)" in result.output
    jobs = load(out).jobs
    assert [j.workflow["1"]["inputs"]["color"] for j in jobs] == [16744448, 16744448, 33023, 33023]
    assert [j.cached for j in jobs] == [(), ("1", "2"), (), ("1", "2")]
    files = [o.file for j in jobs for o in j.outputs]
    assert files[0] == files[1] != files[2] == files[3]  # a cached re-run reports the first run's image again
    with httpx.Client(base_url=start_server(out).url, trust_env=False) as http:
        names = []
        for workflow in (BASIC, BASIC, other, other):
            pid = http.post("/prompt", json={"prompt": workflow}).json()["prompt_id"]
            for _ in range(500):
                entry = http.get(f"/history/{pid}").json().get(pid)
                if entry:
                    names.append(entry["outputs"]["2"]["images"][0]["filename"])
                    break
                time.sleep(0.01)
    assert names == ["ComfyUI_00001_.png"] * 2 + ["ComfyUI_00002_.png"] * 2


def test_workflow_files_in_other_forms(tmp_path: Path) -> None:
    assert load_workflow(write_json(tmp_path / "body.json", {"prompt": BASIC, "client_id": "x"})) == BASIC
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(BASIC))
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    png = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (4, 4)).save(png, pnginfo=info)
    assert load_workflow(png) == BASIC

    ui = write_json(tmp_path / "ui.json", {"last_node_id": 2, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4})
    with pytest.raises(ImportFormatError, match=r"Export \(API\)"):
        load_workflow(ui)
    result = cli("record", ui, "--server", "http://127.0.0.1:9", "-o", tmp_path / "x.yaml")
    assert result.exit_code == 1 and "Export (API)" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_unreachable_server_and_rejected_workflow_are_clear_errors(start_server: StartServer, tmp_path: Path) -> None:
    wf = write_json(tmp_path / "wf.json", BASIC)
    result = cli("record", wf, "--server", "http://127.0.0.1:9", "-o", tmp_path / "a.yaml")
    assert result.exit_code == 1 and "is ComfyUI running there?" in result.output
    bad = write_json(tmp_path / "bad.json", {"1": {"class_type": "NoSuchNode", "inputs": {}}})
    result = cli("record", bad, "--server", start_server().url, "-o", tmp_path / "b.yaml")
    assert result.exit_code == 1 and "rejected the workflow (HTTP 400)" in result.output and "NoSuchNode" in result.output
    assert not (tmp_path / "a.yaml").exists() and not (tmp_path / "b.yaml").exists()


# ---------------------------------------------------------------- record modes


def test_record_modes_on_an_existing_cassette(start_server: StartServer, tmp_path: Path) -> None:
    url = start_server().url
    basic, batch = write_json(tmp_path / "basic.json", BASIC), write_json(tmp_path / "batch.json", BATCH)
    out = tmp_path / "c" / "modes.yaml"

    result = cli("record", basic, "--server", url, "-o", out, "--record-mode", "none")
    assert result.exit_code == 1 and "none never records" in result.output and not out.exists()
    assert cli("record", basic, "--server", url, "-o", out).exit_code == 0
    first = out.read_bytes()
    old = yaml.safe_load(first)

    result = cli("record", basic, "--server", url, "-o", out)  # once, already recorded: nothing to do
    assert result.exit_code == 0 and "nothing recorded" in result.output and out.read_bytes() == first
    result = cli("record", batch, "--server", url, "-o", out)  # once, new workflow: refused
    assert result.exit_code == 1 and "new_episodes" in result.output and out.read_bytes() == first
    assert cli("record", batch, "--server", url, "-o", out, "--record-mode", "none").exit_code == 1
    assert cli("record", basic, "--server", url, "-o", out, "--record-mode", "none").exit_code == 0
    result = cli("record", basic, "--server", url, "-o", out, "--record-mode", "new_episodes")
    assert "nothing recorded" in result.output and out.read_bytes() == first

    assert cli("record", batch, "--server", url, "-o", out, "--record-mode", "new_episodes").exit_code == 0
    grown = yaml.safe_load(out.read_text())
    assert grown["comfy"]["jobs"][0] == old["comfy"]["jobs"][0]  # what it had comes first, unchanged
    assert [j["workflow"] for j in grown["comfy"]["jobs"]] == [BASIC, BATCH]
    assert all(item in grown["interactions"] for item in old["interactions"])
    assert sum(1 for i in grown["interactions"] if i["request"]["uri"].endswith("/system_stats")) == 1  # known request kept once

    assert cli("record", basic, "--server", url, "-o", out, "--record-mode", "all").exit_code == 0
    again = yaml.safe_load(out.read_text())
    assert [j["workflow"] for j in again["comfy"]["jobs"]] == [BASIC, BASIC, BATCH]  # fresh recording first: replay picks it
    requests = [(i["request"]["method"], i["request"]["uri"], i["response"]["body"]) for i in again["interactions"]]
    assert all((i["request"]["method"], i["request"]["uri"], i["response"]["body"]) in requests for i in grown["interactions"])
    assert len(load(out).jobs) == 3
    assert drive(start_server(out).url, BATCH, runs=1) == drive(start_server().url, BATCH, runs=1)


def test_combine_shifts_job_placeholders() -> None:
    def doc(name: str) -> dict[str, Any]:
        item = {"request": {"method": "GET", "uri": f"http://x/history/{{{{job.0.prompt_id}}}}?n={name}", "body": None},
                "response": {"status": {"code": 200}, "body": {"string": "{}"}}, "job": 0}
        job = {"name": name, "workflow": BASIC, "status": "success"}
        return {"version": 1, "interactions": [item], "comfy": {"format": 1, "recorded": {"source": name}, "jobs": [job]}}

    merged = combine(RecordMode.NEW_EPISODES, doc("old"), doc("new"))
    assert [j["name"] for j in merged["comfy"]["jobs"]] == ["old", "new"]
    assert merged["interactions"][1]["request"]["uri"] == "http://x/history/{{job.1.prompt_id}}?n=new"
    merged = combine(RecordMode.ALL, doc("old"), doc("new"))
    assert [j["name"] for j in merged["comfy"]["jobs"]] == ["new", "old"]
    assert [i["job"] for i in merged["interactions"]] == [1, 0]  # old requests first; the newest recording wins on replay
    assert combine(RecordMode.ONCE, None, doc("new")) == doc("new")
    with pytest.raises(ValueError):
        RecordMode("sometimes")


# ---------------------------------------------------------------- scrubbing


def test_scrubber_blanks_keys_drops_headers_and_shortens_home_paths() -> None:
    stats = {"system": {"argv": ["/home/alice/ComfyUI/main.py", "--output-directory", "C:\\Users\\Bob\\out"], "os": "posix"}}
    body = {"prompt": BASIC, "extra_data": {"api_key_comfy_org": "comfyui-key-5f3c2a1b9e", "auth_token_comfy_org": "tok-123456789"}}
    session = RawSession(exchanges=[
        HttpExchange(0, "GET", "http://c/system_stats", [("Authorization", "Bearer Bearer-TOKEN-0123456789")], b"", 200, "OK",
                     [("Set-Cookie", "sid=session-cookie-abcdef987; Path=/"), ("Content-Type", "application/json")],
                     json.dumps(stats).encode()),
        HttpExchange(1, "POST", "http://c/prompt?k=Bearer-TOKEN-0123456789", [("X-Team-Token", "team-token-777888999")], json.dumps(body).encode(),
                     200, "OK", [], b'{"prompt_id": "p"}'),
        HttpExchange(2, "GET", "http://carol:pa55word-xyz@c/queue", [], b"", 200, "OK", [], b'{"note": "pa55word-xyz"}'),
    ], sockets=[WsConnection(0, "http://c/ws", [WsFrame(0, False, json.dumps({"type": "x", "data": {"password": "hunter2hunter2"}}))])])
    clean = Scrubber(home="/nonexistent-home").with_extra(headers=["X-Team-Token"]).scrub(session)
    text = repr(clean)
    for secret in ("Bearer-TOKEN-0123456789", "session-cookie-abcdef987", "comfyui-key-5f3c2a1b9e", "tok-123456789", "hunter2hunter2", "alice", "Bob", "carol", "pa55word-xyz"):
        assert secret not in text
    assert json.loads(clean.exchanges[0].response_body)["system"]["argv"][0] == "~/ComfyUI/main.py"
    assert json.loads(clean.exchanges[1].request_body)["extra_data"]["api_key_comfy_org"] == SCRUBBED
    assert [k for k, _ in clean.exchanges[0].response_headers] == ["Content-Type"]
    assert clean.exchanges[1].request_headers == [] and "k=<scrubbed>" in clean.exchanges[1].url
    assert clean.exchanges[2].url == "http://c/queue"
    assert "Bearer-TOKEN" in repr(session)  # the recording itself is left alone


def test_scrubber_keeps_object_infos_hidden_input_types() -> None:
    # Same key names as the credentials, but type names every ComfyUI publishes (the snapshots capture).
    hidden = {"auth_token_comfy_org": "AUTH_TOKEN_COMFY_ORG", "api_key_comfy_org": "API_KEY_COMFY_ORG", "unique_id": "UNIQUE_ID"}
    catalogue = {"GeminiNode": {"input": {"hidden": hidden}}}
    session = RawSession(exchanges=[HttpExchange(0, "GET", "http://c/object_info", [], b"", 200, "OK", [], json.dumps(catalogue).encode())])
    assert json.loads(Scrubber().scrub(session).exchanges[0].response_body) == catalogue


def test_write_session_scrubs_the_server_url_and_headers_seen_elsewhere(tmp_path: Path) -> None:
    session = RawSession(
        exchanges=[
            HttpExchange(0, "GET", "http://c/queue", [("Comfy-User", "alice-the-user"), ("X-Echo", "sid=session-cookie-abcdef987")], b"",
                         200, "OK", [("Set-Cookie", "sid=session-cookie-abcdef987")], b'{"queue_running": [], "queue_pending": []}'),
        ],
        source="http://carol:pa55word-xyz@127.0.0.1:8188",
    )
    path, document = write_session(session, tmp_path / "c.yaml", mode=RecordMode.ONCE, existing=None)
    text = path.read_text()
    assert document["comfy"]["recorded"]["server"] == "http://127.0.0.1:8188" and document["comfy"]["recorded"]["comfyui_version"] is None
    for secret in ("carol", "pa55word-xyz", "alice-the-user", "session-cookie-abcdef987"):
        assert secret not in text
    assert load(path).interactions[0].request_headers == {"X-Echo": ["<scrubbed>"]}


def test_comfy_user_header_is_dropped_but_its_value_is_no_secret() -> None:
    info = b'{"KSampler": {"input": {"required": {"steps": ["INT", {"default": 20}]}}}}'
    session = RawSession(exchanges=[HttpExchange(0, "GET", "http://c/object_info", [("Comfy-User", "default")], b"", 200, "OK", [], info)])
    clean = Scrubber().scrub(session).exchanges[0]
    assert clean.request_headers == [] and clean.response_body == info


# ---------------------------------------------------------------- proxy recording


def test_proxy_recording_round_trip_with_websocket_and_scrubbing(start_server: StartServer, proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    upstream = start_server()
    out = tmp_path / "cassettes" / "proxied.yaml"
    proxy = proxies(upstream.url, out, "--scrub-header", "X-Team-Token")
    headers = {"Authorization": f"Bearer {SECRETS[0]}", "Cookie": f"sid={SECRETS[1]}", "X-Team-Token": SECRETS[3]}
    extra = {"api_key_comfy_org": SECRETS[2]}
    seen = drive(proxy.url, BASIC, headers=headers, extra_data=extra, feature_flags=True, client_binary=True)
    seen += drive(proxy.url, WEBSOCKET_SAVE, runs=1, feature_flags=True)
    assert seen == drive(start_server().url, BASIC, extra_data=extra, feature_flags=True) + drive(start_server().url, WEBSOCKET_SAVE, runs=1, feature_flags=True)
    assert "<binary type 4>" in seen[2]["ws"]

    state = httpx.get(proxy.url + "/__cassettes__/record/state", trust_env=False).json()
    assert state["frames"]["sent_binary"] == 1 and state["frames"]["sent_text"] == 2 and state["sockets"] == 2
    code, stdout, stderr = proxy.stop(signal.SIGTERM)
    assert code == 0, stderr
    assert f"wrote {out}: 3 job(s)" in stdout

    cassette = load(out)
    assert [j.status for j in cassette.jobs] == ["success", "success", "success"]
    assert any(e.binary is not None and e.binary.event_type == 4 for e in cassette.jobs[2].ws)
    everything = out.read_text() + "".join(p.read_bytes().decode("latin-1") for p in (out.parent / "blobs").iterdir())
    for secret in SECRETS:
        assert secret not in everything
    assert "api_key_comfy_org" in out.read_text()  # the key stays, its value does not

    replayed = start_server(out)
    assert drive(replayed.url, BASIC, feature_flags=True) == drive(start_server().url, BASIC, feature_flags=True)
    assert drive(replayed.url, WEBSOCKET_SAVE, runs=1, feature_flags=True) == seen[2:]


def test_proxy_saves_on_request_and_keeps_what_the_cassette_had(start_server: StartServer, proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    upstream = start_server()
    out = tmp_path / "c.yaml"
    assert cli("record", write_json(tmp_path / "b.json", BATCH), "--server", upstream.url, "-o", out).exit_code == 0
    before = yaml.safe_load(out.read_text())
    assert "once never adds" in ProxyError.run(upstream.url, out)

    proxy = proxies(upstream.url, out, "--record-mode", "new_episodes")
    drive(proxy.url, BASIC, runs=1)
    saved = httpx.post(proxy.url + "/__cassettes__/record/save", trust_env=False).json()
    assert saved["saved"] and saved["jobs"] == 2
    drive(proxy.url, BASIC, runs=1)
    saved = httpx.post(proxy.url + "/__cassettes__/record/save", trust_env=False).json()
    assert saved["jobs"] == 3  # merged with what the file held at start, not with the previous save
    after = yaml.safe_load(out.read_text())
    assert after["comfy"]["jobs"][0] == before["comfy"]["jobs"][0]
    assert [j["workflow"] for j in after["comfy"]["jobs"]] == [BATCH, BASIC, BASIC]
    code, stdout, _ = proxy.stop(signal.SIGINT)
    assert code == 0 and "3 job(s)" in stdout


class ProxyError:
    @staticmethod
    def run(target: str, out: Path) -> str:
        command = [sys.executable, "-c", "from comfy_cassettes.cli import main; main()", "record", "--proxy", "--target", target,
                   "--port", "0", "-o", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert done.returncode == 1
        return done.stderr


def test_sigkilled_proxy_leaves_the_old_cassette_untouched(start_server: StartServer, proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    upstream = start_server()
    folder = tmp_path / "cassettes"
    out = folder / "kept.yaml"
    assert cli("record", write_json(tmp_path / "b.json", BASIC), "--server", upstream.url, "-o", out).exit_code == 0
    before = folder_state(folder)

    proxy = proxies(upstream.url, out, "--record-mode", "all")
    drive(proxy.url, BATCH, runs=2)
    with ws_connect(f"ws{proxy.url[4:]}/ws?clientId=still-open", proxy=None) as ws:  # mid-session: a socket is open
        ws.recv(timeout=10)
        code, _, _ = proxy.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert folder_state(folder) == before
    assert load(out).jobs[0].workflow == BASIC

    fresh = tmp_path / "never.yaml"
    proxy = proxies(upstream.url, fresh)
    drive(proxy.url, BASIC, runs=1)
    proxy.stop(signal.SIGKILL)
    assert not fresh.exists() and not any(tmp_path.glob(".never.yaml*"))


def test_proxy_with_nothing_recorded_writes_nothing(start_server: StartServer, proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    out = tmp_path / "empty.yaml"
    proxy = proxies(start_server().url, out)
    assert httpx.post(proxy.url + "/__cassettes__/record/save", trust_env=False).json() == {
        "saved": False, "path": None, "jobs": 0, "interactions": 0, "reason": "nothing recorded yet"}
    code, stdout, _ = proxy.stop()
    assert code == 0 and "left as it was" in stdout and not out.exists()


def test_proxy_writes_a_ready_file_as_serve_does(start_server: StartServer, proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    # A recording script in any language starts the proxy on --port 0 and waits for the file, not for a line to parse.
    ready = tmp_path / "proxy.json"
    proxy = proxies(start_server().url, tmp_path / "session.yaml", "--ready-file", str(ready))
    written = json.loads(ready.read_text())
    assert written == {"url": proxy.url, "port": int(proxy.url.rsplit(":", 1)[1]), "pid": proxy.process.pid}
    assert httpx.get(written["url"] + "/system_stats", trust_env=False).status_code == 200
    assert proxy.stop()[0] == 0

    nowhere = tmp_path / "no" / "such" / "proxy.json"
    refused = cli("record", "--proxy", "--port", "0", "-o", tmp_path / "other.yaml", "--ready-file", nowhere)
    assert refused.exit_code == 1 and f"--ready-file {nowhere}: no folder {nowhere.parent}" in refused.output


def test_proxy_recorded_cassette_takes_the_proxys_pages_as_its_own(start_server: StartServer, proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    # Through the proxy, ComfyUI sees the client's Host and Origin, both the proxy's: a real 0.3.64 behind a proxy
    # answered a page of the proxy 200, and the same Origin sent to it directly 403. So the proxy's address is the
    # recorded server's, as in a browser's HAR of that session, and a replay on any port takes its pages as its own.
    upstream = start_server()
    out = tmp_path / "proxied.yaml"
    proxy = proxies(upstream.url, out)
    drive(proxy.url, BASIC, runs=1, headers={"Origin": proxy.url})
    assert proxy.stop()[0] == 0
    assert {i.uri.split("/")[2] for i in load(out).interactions} == {proxy.url.split("/")[2]}

    assert load(out).jobs[0].took > 0  # the time POST /prompt took, as the proxy timed it

    replayed = start_server(out)
    elsewhere = f"http://127.0.0.1:{int(proxy.url.rsplit(':', 1)[1]) % 65535 + 1}"
    with httpx.Client(base_url=replayed.url, trust_env=False) as http:
        assert http.get("/queue", headers={"Origin": proxy.url}).status_code == 200
        assert http.get("/queue", headers={"Origin": elsewhere}).status_code == 403
    assert "execution_success" in drive(replayed.url, BASIC, runs=1, headers={"Origin": proxy.url})[0]["ws"]


class RecordedAnswer(BaseHTTPRequestHandler):
    """Answers the one exchange it is given with its captured status line, headers (names, order) and body."""

    protocol_version = "HTTP/1.1"
    exchange: dict[str, Any] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        request, response = self.exchange["request"], self.exchange["response"]
        if self.path != request["url"].split("/", 3)[3].join(("/", "")):
            self.send_error(404)
            return
        self.send_response_only(response["status"], response["statusText"])
        for header in response["headers"]:
            self.send_header(header["name"], header["value"])
        self.end_headers()
        self.wfile.write(base64.b64decode(response["content"]["text"]))

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_proxy_passes_and_records_answer_headers_as_comfyui_sent_them(proxies: Callable[..., ProxyProcess], tmp_path: Path) -> None:
    # A /view answer of a real 0.3.64 (basic_save): aiohttp's eight headers, in aiohttp's order and spelling.
    har = Path(__file__).parent / "data" / "real_sessions" / "basic_save" / "session.har"
    exchange = json.loads(har.read_text())["log"]["entries"][3]
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), type("Answer", (RecordedAnswer,), {"exchange": exchange}))
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "view.yaml"
        proxy = proxies(f"http://127.0.0.1:{upstream.server_port}", out)
        path = exchange["request"]["url"].split("/", 3)[3]
        host, port = proxy.url.split("/")[2].split(":")
        connection = HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/" + path)
        answer = connection.getresponse()
        assert answer.read() == base64.b64decode(exchange["response"]["content"]["text"])
        connection.close()
        assert answer.getheaders() == [(h["name"], h["value"]) for h in exchange["response"]["headers"]]
        assert proxy.stop()[0] == 0
    finally:
        upstream.shutdown()
        upstream.server_close()
    recorded = load(out).interactions[0].response_headers
    imported = tmp_path / "imported.yaml"
    assert cli("import", har, "-o", imported).exit_code == 0
    view = next(i for i in load(imported).interactions if "/view" in i.uri)
    assert list(recorded) == list(view.response_headers) == ["Content-Disposition", "Content-Type", "Accept-Ranges", "Server"]


def test_post_prompt_time_is_kept_and_older_cassettes_still_load(tmp_path: Path) -> None:
    # The time each POST /prompt took (ComfyUI validates before it queues and announces the status): the HAR's.
    har = Path(__file__).parent / "data" / "real_sessions" / "basic_save" / "session.har"
    entries = json.loads(har.read_text())["log"]["entries"]
    posted = [round(e["time"] / 1000, 6) for e in entries if e["request"]["method"] == "POST" and e["request"]["url"].endswith("/prompt")]
    out = tmp_path / "c.yaml"
    assert cli("import", har, "-o", out).exit_code == 0
    assert [job.took for job in load(out).jobs] == posted and all(posted)

    document = yaml.safe_load(out.read_text())
    for job in document["comfy"]["jobs"]:
        del job["response"]["took"]  # a cassette from before the time was kept
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(document))
    assert [job.took for job in load(tmp_path / "old.yaml").jobs] == [0.0, 0.0]
    document["comfy"]["jobs"][1]["response"]["took"] = "slow"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(document))
    result = cli("inspect", tmp_path / "bad.yaml")
    assert result.exit_code != 0 and "comfy.jobs[1].response.took" in result.output, result.output


# ---------------------------------------------------------------- a real ComfyUI (opt-in)


@pytest.mark.skipif(not os.environ.get("COMFYUI_URL"), reason="set COMFYUI_URL to record from a real ComfyUI")
def test_record_from_a_real_comfyui_and_replay(start_server: StartServer, tmp_path: Path) -> None:
    url = os.environ["COMFYUI_URL"]
    workflow = json.loads(json.dumps(BASIC))
    workflow["1"]["inputs"]["color"] = random.randrange(1 << 24)  # a value this server has not cached
    out = tmp_path / "real.yaml"
    result = cli("record", write_json(tmp_path / "wf.json", workflow), "--server", url, "-o", out, "--repeat", "2")
    assert result.exit_code == 0, result.output
    cassette = load(out)
    assert cassette.recorded["comfyui_version"] and [j.status for j in cassette.jobs] == ["success", "success"]
    replayed = drive(start_server(out).url, workflow)
    for job, run in zip(cassette.jobs, replayed):
        assert run["ws"][:-1] == [e.type for e in job.ws if e.binary is None]
        assert run["history"]["status"] == shape(job.history)["status"]
