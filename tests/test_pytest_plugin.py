"""The pytest plugin, driven through pytester: small suites written exactly as a user would write them."""

from __future__ import annotations

import json
import re
from hashlib import sha256
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import httpcore  # noqa: F401 - imported here so pytester's in-process runs cannot swap its exception classes
import httpx
import pytest

from comfy_cassettes.cassette import load as cassette_io
from helpers import SUITE_INI
from comfy_cassettes.replay.config import BUNDLED_DIR
from comfy_cassettes.replay.server import ReplayServer

# What every example suite starts with: the EmptyImage -> SaveImage workflow of the captures.
HEADER = '''
import json
import os
from pathlib import Path

import httpx
import pytest


def workflow(color=16744448, prefix="ComfyUI"):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def note(name, **values):
    """Leave facts for the outer test (pytester's folder is the working directory)."""
    Path(name + ".json").write_text(json.dumps(values, default=str))
'''

def facts(pytester: pytest.Pytester, name: str) -> dict[str, object]:
    result: dict[str, object] = json.loads((pytester.path / f"{name}.json").read_text())
    return result


def assert_stopped(url: str, *folders: str) -> None:
    """The server no longer answers, its thread is gone and its folders are removed."""
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/prompt", timeout=2)
    assert not [t for t in threading.enumerate() if t.name == "comfy-cassettes-server"]
    for folder in folders:
        assert not Path(folder).exists(), folder


def test_session_and_function_scope_share_one_server_and_clean_up(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        HEADER
        + '''
def test_session_server_answers(comfy_url):
    assert httpx.get(comfy_url + "/system_stats").json()["system"]["comfyui_version"]


def test_function_handle_is_the_session_server(comfy, comfy_url, comfy_server):
    assert comfy.url == comfy_url == os.environ["COMFYUI_URL"]
    entry = comfy.run(workflow())
    assert entry["status"]["completed"]
    note("first", url=comfy.url, root=comfy.root, output=comfy.output_dir)


def test_state_is_reset_before_each_test(comfy):
    assert comfy.journal() == []
    assert httpx.get(comfy.url + "/history").json() == {}
    assert comfy.state()["mode"] == "static"
'''
    )
    suite.runpytest().assert_outcomes(passed=3)
    first = facts(suite, "first")
    assert_stopped(str(first["url"]), str(first["root"]), str(first["output"]))


def test_static_and_dynamic_files(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        HEADER
        + '''
def test_dynamic_jobs_write_distinct_files(comfy_dynamic, comfy_url_dynamic):
    assert comfy_dynamic.url == comfy_url_dynamic
    entries = [comfy_dynamic.run(workflow(color=c)) for c in (1, 2, 3)]
    files = [path for entry in entries for path in comfy_dynamic.output_files(entry)]
    assert len(set(files)) == 3
    assert all(p.is_file() and p.parent == comfy_dynamic.output_dir for p in files)
    assert sorted(p.name for p in comfy_dynamic.output_dir.iterdir()) == sorted(p.name for p in files)
    note("dynamic", root=comfy_dynamic.root, url=comfy_dynamic.url)


def test_dynamic_folders_are_emptied_between_tests(comfy_dynamic):
    assert list(comfy_dynamic.output_dir.iterdir()) == []
    [path] = comfy_dynamic.output_files(comfy_dynamic.run(workflow(prefix="gen/job")))
    assert path == comfy_dynamic.output_dir / "gen" / "job_00001_.png" and path.is_file()


def test_static_mode_writes_nothing_but_serves_the_image(comfy):
    entry = comfy.run(workflow())
    assert list(comfy.output_dir.iterdir()) == []
    image = entry["outputs"]["2"]["images"][0]
    view = httpx.get(comfy.url + "/view", params=image)
    assert view.status_code == 200 and view.content.startswith(b"\\x89PNG")
'''
    )
    suite.runpytest().assert_outcomes(passed=3)
    dynamic = facts(suite, "dynamic")
    assert_stopped(str(dynamic["url"]), str(dynamic["root"]))


def test_marker_overrides_cassette_mode_and_timing_per_module_and_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_marked=HEADER
        + '''
pytestmark = pytest.mark.comfy_cassette("basic_save")
urls = []


def names(comfy):
    return [Path(c).name for c in comfy.state()["cassettes"]]


def test_module_marker_picks_the_cassette(comfy, comfy_url):
    assert names(comfy) == ["basic_save.yaml"]
    assert comfy.url != comfy_url  # a dedicated server, not the session default
    urls.append(comfy.url)


def test_module_server_is_reused(comfy):
    assert comfy.url == urls[0]


@pytest.mark.comfy_cassette(timing="recorded", speed=50.0)
def test_test_marker_adds_timing_and_keeps_the_module_cassette(comfy):
    state = comfy.state()
    assert (state["timing"], names(comfy)) == ("recorded", ["basic_save.yaml"])
    assert comfy.url not in urls


@pytest.mark.comfy_cassette("batch_3", dynamic=True)
def test_test_marker_switches_cassette_and_mode(comfy):
    assert (comfy.state()["mode"], names(comfy)) == ("dynamic", ["batch_3.yaml"])
    paths = comfy.output_files(comfy.run(workflow()))
    assert paths and all(path.is_file() for path in paths)
''',
        test_unmarked=HEADER
        + '''
def test_other_modules_keep_the_session_default(comfy, comfy_url):
    assert comfy.url == comfy_url
    assert [Path(c).name for c in comfy.state()["cassettes"]] == ["comfyui.yaml"]
''',
    )
    suite.runpytest().assert_outcomes(passed=5)


def test_marker_options_reach_configure_and_last_only_for_that_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        HEADER
        + '''
@pytest.mark.comfy_cassette(faults={"kind": "status", "route": "/prompt", "status": 503, "count": 1})
def test_marker_fault_applies(comfy):
    assert httpx.post(comfy.url + "/prompt", json={"prompt": workflow()}).status_code == 503
    assert comfy.run(workflow())["status"]["completed"]


def test_next_test_starts_without_it(comfy):
    assert comfy.faults() == []
    assert httpx.post(comfy.url + "/prompt", json={"prompt": workflow()}).status_code == 200
'''
    )
    suite.runpytest().assert_outcomes(passed=2)


def test_bad_marker_arguments_are_clear_errors(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        '''
import pytest


@pytest.mark.comfy_cassette("no_such_cassette")
def test_unknown_cassette(comfy):
    pass


@pytest.mark.comfy_cassette(timing="sometimes")
def test_bad_timing(comfy):
    pass


@pytest.mark.comfy_cassette(no_such_option=1)
def test_typo(comfy):
    pass


@pytest.mark.comfy_cassette(seeds=3)
def test_close_to_a_keyword(comfy):
    pass
'''
    )
    result = suite.runpytest()
    result.assert_outcomes(errors=4)
    takes = "it takes dynamic, timing, speed, seed, models, preview_method, preview_size, comfyui_version, assets, allow_unmatched, faults, hold"
    result.stdout.fnmatch_lines([
        "*comfy_cassette: no cassette 'no_such_cassette' (looked in *",
        "comfy_cassette: timing must be one of faithful, floor, instant, recorded, got 'sometimes'",
        f"comfy_cassette: unknown keyword 'no_such_option'; {takes}",
        f"comfy_cassette: unknown keyword 'seeds' (did you mean 'seed'?); {takes}",
    ])
    assert "Traceback" not in result.stdout.str() and "pytest_servers.py" not in result.stdout.str()  # one line each


def test_app_client_reads_the_url_from_a_configured_env_var_and_journal_shows_its_calls(suite: pytest.Pytester) -> None:
    suite.makeini(SUITE_INI + f"comfy_cassettes = {BUNDLED_DIR / 'basic_save.yaml'}\ncomfy_cassettes_env_var = IMAGE_BACKEND_URL\n")
    suite.makepyfile(
        HEADER
        + '''
import time


class ImageService:
    """The application under test: it only knows the URL from its environment."""

    def __init__(self):
        self.http = httpx.Client(base_url=os.environ["IMAGE_BACKEND_URL"])

    def generate(self, prompt):
        prompt_id = self.http.post("/prompt", json={"prompt": prompt, "client_id": "app"}).json()["prompt_id"]
        while True:
            history = self.http.get(f"/history/{prompt_id}").json()
            if prompt_id in history:
                break
            time.sleep(0.01)
        images = history[prompt_id]["outputs"]["2"]["images"]
        return [self.http.get("/view", params=image).content for image in images]

    def close(self):
        self.http.close()


@pytest.fixture
def service(comfy):
    service = ImageService()
    yield service
    service.close()


def test_generate(comfy, service):
    assert "COMFYUI_URL" not in os.environ
    [png] = service.generate(workflow())
    assert png.startswith(b"\\x89PNG")
    [post] = comfy.journal(method="POST", path="/prompt")
    assert json.loads(post["body"]) == {"prompt": workflow(), "client_id": "app"}
    paths = [entry["path"] for entry in comfy.journal()]
    assert paths[0] == "/prompt" and paths[-1] == "/view"
    assert all(path.startswith("/history/") for path in paths[1:-1])
    assert [Path(c).name for c in comfy.state()["cassettes"]] == ["basic_save.yaml"]
'''
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_env_var_option_on_the_command_line(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        '''
import os


def test_env(comfy):
    assert os.environ["MY_COMFY"] == comfy.url
'''
    )
    suite.runpytest("--comfy-env-var", "MY_COMFY", "--comfy-cassette-dir", str(BUNDLED_DIR / "basic_save.yaml")).assert_outcomes(passed=1)


def test_ini_cassette_folder_and_marker_names_found_in_it(suite: pytest.Pytester) -> None:
    folder = suite.path / "recordings"
    shutil.copytree(BUNDLED_DIR / "blobs", folder / "blobs")
    for name, source in (("ours.yaml", "basic_save.yaml"), ("theirs.yaml", "interrupt.yaml")):
        shutil.copyfile(BUNDLED_DIR / source, folder / name)
    suite.makeini(SUITE_INI + "comfy_cassettes = recordings\n")
    suite.makepyfile(
        '''
import pytest
from pathlib import Path


def test_session_serves_the_whole_folder(comfy):
    assert sorted(Path(c).name for c in comfy.state()["cassettes"]) == ["ours.yaml", "theirs.yaml"]


@pytest.mark.comfy_cassette("theirs")
def test_marker_name_is_looked_up_in_the_configured_folder(comfy):
    assert [Path(c).name for c in comfy.state()["cassettes"]] == ["theirs.yaml"]
'''
    )
    suite.runpytest().assert_outcomes(passed=2)


def test_vcr_mark_replays_a_bundled_cassette_in_process(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        HEADER
        + '''
import requests

from comfy_cassettes.vcr import bundled_cassette

# Nothing listens there: every answer comes from the cassette.
COMFY = "http://comfy.invalid:8188"


@pytest.mark.vcr(bundled_cassette("basic_save"))
def test_httpx_client_sees_consistent_ids_and_files():
    with httpx.Client(base_url=COMFY) as http:
        answer = http.post("/prompt", json={"prompt": workflow(), "client_id": "any-client"}).json()
        prompt_id = answer["prompt_id"]
        history = http.get(f"/api/history/{prompt_id}").json()
        assert list(history) == [prompt_id]
        [image] = history[prompt_id]["outputs"]["2"]["images"]
        png = http.get("/view", params=image)
        assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\\x89PNG")
        second = http.post("/prompt", json={"prompt": workflow(color=33023), "client_id": "other"}).json()
        assert second["prompt_id"] != prompt_id and second["number"] == answer["number"] + 1


@pytest.mark.vcr(bundled_cassette("basic_save"))
def test_requests_client_too():
    answer = requests.post(COMFY + "/prompt", json={"prompt": workflow(), "client_id": "x"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["node_errors"] == {}
'''
    )
    suite.runpytest().assert_outcomes(passed=2)


def _names_and_bytes(http: httpx.Client, sequence: list[tuple[int, str]]) -> list[tuple[list[str], bytes]]:
    """Submit each (color, prefix) of basic_save's workflow; the output names /history lists and the first image."""
    seen = []
    for color, prefix in sequence:
        graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}
        prompt_id = http.post("/prompt", json={"prompt": graph, "client_id": "me"}).json()["prompt_id"]
        for _ in range(200):
            history = http.get(f"/history/{prompt_id}").json()
            if prompt_id in history:
                break
        images = history[prompt_id]["outputs"]["2"]["images"]
        view = http.get("/view", params=images[0])
        assert view.headers["content-disposition"] == f'filename="{images[0]["filename"]}"'
        seen.append(([f"{i['subfolder']}/{i['filename']}" for i in images], view.content))
    return seen


@pytest.mark.parametrize("sequence", [
    [(16744448, "gen_job_1"), (33023, "ComfyUI")],
    [(33023, "gen/job_2")],  # the cassette's second job alone
], ids=["prefix-then-recorded", "second-job-alone"])
def test_vcr_answers_name_outputs_from_the_submitted_prefix_as_serve_does(
        suite: pytest.Pytester, start_server: Callable[..., ReplayServer], sequence: list[tuple[int, str]]) -> None:
    with httpx.Client(base_url=start_server("basic_save").url) as http:
        served = _names_and_bytes(http, sequence)
    assert served[0][0][0].split("/")[-1].startswith(sequence[0][1].split("/")[-1] + "_00001_")
    expected = suite.path / "expected.json"  # what serve answered
    expected.write_text(json.dumps({"names": [names for names, _ in served], "images": [sha256(b).hexdigest() for _, b in served]}))
    suite.makepyfile(
        HEADER
        + f"""
import hashlib
import sys

import httpx
import pytest

sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_pytest_plugin import _names_and_bytes
from comfy_cassettes.vcr import bundled_cassette


@pytest.mark.vcr(bundled_cassette("basic_save"))
def test_in_process():
    with httpx.Client(base_url="http://comfy.invalid:8188") as http:  # nothing listens: the cassette answers
        seen = _names_and_bytes(http, {sequence!r})
    want = json.loads(Path({str(expected)!r}).read_text())
    assert [names for names, _ in seen] == want["names"]
    assert [hashlib.sha256(body).hexdigest() for _, body in seen] == want["images"]
"""
    )
    suite.runpytest().assert_outcomes(passed=1)


@pytest.fixture
def live_comfy(start_server: Callable[..., ReplayServer]) -> ReplayServer:
    """Our own replay server standing in for a live ComfyUI."""
    return start_server("basic_save", dynamic=True)


def test_vcr_records_a_templated_cassette_then_replays_it_without_the_server(
    suite: pytest.Pytester, live_comfy: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVE_COMFY", live_comfy.url)
    suite.makepyfile(
        test_rec=HEADER
        + '''
import time
import uuid


@pytest.mark.vcr
@pytest.mark.comfy_vcr  # records in the comfy-cassettes format (no cassette file says so yet)
def test_generate():
    with httpx.Client(base_url=os.environ["LIVE_COMFY"]) as http:
        prompt_id = http.post("/prompt", json={"prompt": workflow(), "client_id": uuid.uuid4().hex}).json()["prompt_id"]
        while prompt_id not in (history := http.get(f"/history/{prompt_id}").json()):
            time.sleep(0.01)
        [image] = history[prompt_id]["outputs"]["2"]["images"]
        assert http.get("/view", params=image).content.startswith(b"\\x89PNG")
'''
    )
    suite.runpytest("--record-mode=once").assert_outcomes(passed=1)
    path = suite.path / "cassettes" / "test_rec" / "test_generate.yaml"
    recorded = cassette_io.load(path)
    assert [job.status for job in recorded.jobs] == ["success"]
    uris = [item.uri for item in recorded.interactions]
    assert any(uri.endswith("/history/{{prompt_id}}") for uri in uris)
    assert any("filename={{out.2.0.filename}}" in uri for uri in uris)
    assert list((path.parent / "blobs").glob("*.png"))
    text = path.read_text()

    live_comfy.stop()
    suite.runpytest("--record-mode=none").assert_outcomes(passed=1)
    assert path.read_text() == text


def test_xdist_workers_get_their_own_servers_and_folders(suite: pytest.Pytester) -> None:
    tests = "".join(
        f'''

def test_job_{i}(comfy_dynamic):
    [path] = comfy_dynamic.output_files(comfy_dynamic.run(workflow()))
    assert path.name == "ComfyUI_00001_.png" and path.is_file()
    note("job{i}", worker=os.environ["PYTEST_XDIST_WORKER"], url=comfy_dynamic.url, root=comfy_dynamic.root)
'''
        for i in range(6)
    )
    suite.makepyfile(HEADER + tests)
    result = suite.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=6)
    seen = [facts(suite, f"job{i}") for i in range(6)]
    by_worker: dict[str, set[tuple[str, str]]] = {}
    for fact in seen:
        by_worker.setdefault(str(fact["worker"]), set()).add((str(fact["url"]), str(fact["root"])))
    assert len(by_worker) == 2
    assert all(len(servers) == 1 for servers in by_worker.values())  # one session server per worker
    [(url_a, root_a)], [(url_b, root_b)] = by_worker.values()
    assert url_a != url_b and root_a != root_b
    for url, root in ((url_a, root_a), (url_b, root_b)):
        assert_stopped(url, root)


def test_a_markers_models_add_to_the_sessions(suite: pytest.Pytester) -> None:
    suite.makeini(SUITE_INI + "comfy_cassettes_models =\n    checkpoints/from_ini.safetensors\n")
    suite.makepyfile(
        """
        import httpx
        import pytest

        def test_the_session_models(comfy):
            assert "from_ini.safetensors" in httpx.get(comfy.url + "/models/checkpoints").json()

        @pytest.mark.comfy_cassette(models=["loras/ink.safetensors", "checkpoints/own.safetensors"])
        def test_the_markers_and_the_sessions(comfy):
            checkpoints = httpx.get(comfy.url + "/models/checkpoints").json()
            assert {"from_ini.safetensors", "own.safetensors"} <= set(checkpoints)
            assert "ink.safetensors" in httpx.get(comfy.url + "/models/loras").json()

        @pytest.mark.comfy_cassette(models="loras/one.safetensors")
        def test_one_name(comfy):
            assert "one.safetensors" in httpx.get(comfy.url + "/models/loras").json()
            assert "from_ini.safetensors" in httpx.get(comfy.url + "/models/checkpoints").json()
        """
    )
    suite.runpytest().assert_outcomes(passed=3)


def test_pytest_markers_shows_the_signature_the_docs_document(suite: pytest.Pytester) -> None:
    readme = (Path(__file__).parent.parent / "docs" / "pytest.md").read_text()
    signature = re.search(r"`(comfy_cassette\(\*cassettes,[^`]*)`", readme, re.S)
    assert signature is not None
    documented = " ".join(signature.group(1).split())
    shown = " ".join(suite.runpytest("--markers").stdout.str().split())
    assert "@pytest.mark." + documented in shown and 'preview_method="none"' in documented


def test_preview_size_from_the_command_line_or_the_ini(suite: pytest.Pytester) -> None:
    suite.makeini(SUITE_INI + "comfy_cassettes_preview_size = 96\n")
    suite.makepyfile(
        """
        import io
        import json

        import pytest
        from PIL import Image
        from websockets.sync.client import connect

        GRAPH = {
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 8, "sampler_name": "euler",
                  "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0],
                  "latent_image": ["5", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 256, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "p", "images": ["8", 0]}},
        }

        @pytest.mark.comfy_cassette(models=["checkpoints/x.safetensors"], preview_method="auto")
        def test_previews(comfy, pytestconfig):
            with connect(comfy.url.replace("http", "ws") + "/ws?clientId=me") as ws:
                ws.recv()
                prompt_id = comfy.submit(GRAPH, client_id="me")
                frames = []
                while not (frames and frames[-1] == {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}):
                    frame = ws.recv(timeout=10)
                    frames.append(frame if isinstance(frame, bytes) else json.loads(frame))
            sizes = {Image.open(io.BytesIO(f[8:])).size for f in frames if isinstance(f, bytes)}
            want = int(pytestconfig.getoption("comfy_preview_size") or pytestconfig.getini("comfy_cassettes_preview_size"))
            assert sizes == {(want, want // 2)}
        """
    )
    suite.runpytest().assert_outcomes(passed=1)
    suite.runpytest("--comfy-preview-size", "64").assert_outcomes(passed=1)
