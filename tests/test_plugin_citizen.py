"""The installed plugin is a good citizen: it configures only the vcr tests that are ours, costs nothing heavy to
load, and refuses a bad option once, as a usage error. Each suite runs in a pytest subprocess, as a user's would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import SUITE_INI

# What a session that never uses comfy-cassettes must not import because the plugin is installed.
# The options table (comfy_cassettes.replay.options) imports nothing: the plugin reads its flags and ini keys there.
HEAVY = ("starlette", "uvicorn", "pydantic", "vcr", "httpx", "PIL", "yaml", "websockets", "rich", "typer",
         "comfy_cassettes.replay.config", "comfy_cassettes.replay.server", "comfy_cassettes.replay.http",
         "comfy_cassettes.replay.sim", "comfy_cassettes.replay.harness", "comfy_cassettes.cassette", "comfy_cassettes.control",
         "comfy_cassettes.contract")


def _plain_cassette() -> dict[str, object]:
    """A vcrpy cassette of another service: one path on two hosts, and a POST whose body carries a timestamp."""

    def interaction(method: str, uri: str, body: str | None, answer: str) -> dict[str, object]:
        return {
            "request": {"method": method, "uri": uri, "body": body, "headers": {}},
            "response": {"status": {"code": 200, "message": "OK"}, "headers": {"Content-Type": ["application/json"]},
                         "body": {"string": answer}},
        }

    return {"version": 1, "interactions": [
        interaction("GET", "http://a.example.invalid/v1/thing", None, '{"from": "a"}'),
        interaction("GET", "http://b.example.invalid/v1/thing", None, '{"from": "b"}'),
        interaction("POST", "http://a.example.invalid/v1/events", '{"event": "start", "ts": 1000}', '{"ok": true}'),
    ]}


THEIRS = '''
import httpx
import pytest


@pytest.mark.vcr
def test_two_hosts_and_a_post_with_another_ts(vcr):
    assert httpx.get("http://b.example.invalid/v1/thing").json() == {"from": "b"}
    assert httpx.get("http://a.example.invalid/v1/thing").json() == {"from": "a"}
    assert httpx.post("http://a.example.invalid/v1/events", json={"event": "start", "ts": 2000}).json() == {"ok": True}
    assert type(vcr._persister).__name__ == "CombinedPersister"  # pytest-recording's own
    assert [m.__name__ for m in vcr._match_on] == ["method", "scheme", "host", "port", "path", "query"]
'''

OURS_ON_DISK = '''
import httpx
import pytest

from comfy_cassettes.vcr import bundled_cassette

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}}}


@pytest.mark.vcr(bundled_cassette("basic_save"))
def test_a_comfy_cassette_on_disk_is_ours(vcr):
    with httpx.Client(base_url="http://comfy.invalid:8188") as http:  # nothing listens: the cassette answers
        prompt_id = http.post("/prompt", json={"prompt": GRAPH, "client_id": "me"}).json()["prompt_id"]
        assert list(http.get(f"/history/{prompt_id}").json()) == [prompt_id]
    assert type(vcr._persister).__name__ == "ComfyPersister"
'''

OURS_BY_MARKER = '''
import pytest

pytestmark = pytest.mark.comfy_vcr


@pytest.mark.vcr
def test_the_module_marker_makes_it_ours(vcr):
    assert type(vcr._persister).__name__ == "ComfyPersister"
    assert [m.__name__ for m in vcr._match_on] == ["method", "comfy_path", "comfy_query", "comfy_body"]
'''

OURS_BY_FIXTURE = '''
import pytest


@pytest.fixture
def vcr_config(comfy_vcr_config):
    return {**comfy_vcr_config, "filter_headers": [*comfy_vcr_config["filter_headers"], "x-tenant"]}


@pytest.mark.vcr
def test_a_vcr_config_built_on_ours_is_ours(vcr):
    assert type(vcr._persister).__name__ == "ComfyPersister"
'''


def test_only_our_vcr_tests_are_configured_and_theirs_pass_beside_them(pytester: pytest.Pytester) -> None:
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_theirs=THEIRS, test_ours_on_disk=OURS_ON_DISK, test_ours_by_marker=OURS_BY_MARKER,
                        test_ours_by_fixture=OURS_BY_FIXTURE)
    cassette = pytester.path / "cassettes" / "test_theirs" / "test_two_hosts_and_a_post_with_another_ts.yaml"
    cassette.parent.mkdir(parents=True)
    cassette.write_text(yaml.safe_dump(_plain_cassette()))
    before = cassette.read_text()
    pytester.runpytest_subprocess().assert_outcomes(passed=4)
    assert cassette.read_text() == before
    # The same test with the plugin off: pytest-recording alone gives the same result.
    pytester.runpytest_subprocess("-p", "no:comfy_cassettes", "test_theirs.py").assert_outcomes(passed=1)


def _loaded(*args: str, cwd: Path) -> set[str]:
    """The modules loaded by the end of a pytest session on one no-op test (a conftest writes them out)."""
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=120)
    return set(json.loads((cwd / "modules.json").read_text()))


def test_the_plugin_loads_nothing_heavy_until_used(tmp_path: Path) -> None:
    imported = subprocess.run(
        [sys.executable, "-c", "import json, sys, comfy_cassettes.pytest_plugin; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert not [m for m in json.loads(imported.stdout) if m.startswith(HEAVY)]
    (tmp_path / "conftest.py").write_text(
        "import json, sys\n\n\ndef pytest_sessionfinish():\n"
        "    open('modules.json', 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    (tmp_path / "test_noop.py").write_text("def test_noop():\n    pass\n")
    added = _loaded(cwd=tmp_path) - _loaded("-p", "no:comfy_cassettes", cwd=tmp_path)
    assert added and not [m for m in added if m.startswith(HEAVY)], sorted(added)


def test_a_bad_option_is_one_usage_error_not_an_error_per_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(SUITE_INI)
    pytester.makepyfile("\n".join(f"def test_{i}(comfy):\n    pass\n" for i in range(5)))
    result = pytester.runpytest_subprocess("--comfy-model", "v1-5-pruned-emaonly.safetensors")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "comfy-cassettes" in line]
    assert len(errors) == 1
    assert errors[0].startswith("ERROR: comfy-cassettes: --comfy-model 'v1-5-pruned-emaonly.safetensors': unknown model folder")
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(("ini", "option"), [
    ("comfy_cassettes_comfyui_version = latest", "--comfy-version 'latest': ComfyUI version 'latest': expected a version"),
    ("comfy_cassettes_preview_method = fancy", "--comfy-preview-method must be one of"),
    ("comfy_cassettes = nowhere.yaml", "nowhere.yaml: no such cassette"),
    ("comfy_cassettes_source_image = tox.ini", "tox.ini: not an image Pillow can read"),
])
def test_bad_ini_values_are_usage_errors_too(pytester: pytest.Pytester, ini: str, option: str) -> None:
    pytester.makeini(SUITE_INI + ini + "\n")
    pytester.makepyfile("def test_one(comfy):\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.errlines if line.strip()]
    assert line.startswith("ERROR: comfy-cassettes: ") and option in line


def test_a_cassette_folder_whose_cassettes_sit_one_level_down_names_the_setting_and_them(pytester: pytest.Pytester) -> None:
    # pytest-recording keeps cassettes in cassettes/<module>/<test>.yaml, so `comfy_cassettes = tests/cassettes` is the
    # first thing a user writes: the error names the ini key that set the folder and the subfolders to name instead.
    for below in ("test_payments/test_charge.yaml", "comfy/render.yaml"):
        (pytester.path / "tests" / "cassettes" / below).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / "tests" / "cassettes" / below).write_text("version: 1\ninteractions: []\n")
    pytester.makeini(SUITE_INI + "comfy_cassettes = tests/cassettes\n")
    pytester.makepyfile("def test_one(comfy):\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.errlines if line.strip()]
    folder = pytester.path / "tests" / "cassettes"
    assert line == (f"ERROR: comfy-cassettes: comfy_cassettes {folder}: folder holds no *.yaml cassette of its own "
                    "(subfolders are not searched; name the one to replay: comfy, test_payments hold *.yaml)")
    served = subprocess.run([sys.executable, "-m", "comfy_cassettes", "serve", str(folder), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert served.returncode == 1 and served.stderr == line.replace("ERROR: comfy-cassettes: comfy_cassettes ", "error: ") + "\n"


WITHOUT_RECORDING = '''
import httpx
import pytest


def test_comfy_needs_no_vcr(comfy):
    assert httpx.get(f"{comfy.url}/system_stats").json()["system"]["comfyui_version"]


@pytest.mark.comfy_vcr
def test_comfy_vcr_without_pytest_recording():
    raise AssertionError("must not run: it would reach the network")
'''


def test_without_pytest_recording_the_fixtures_work_and_a_comfy_vcr_test_says_what_to_install(pytester: pytest.Pytester) -> None:
    # vcrpy and pytest-recording are the `vcr` extra (a project on pytest-vcr cannot have pytest-recording loaded):
    # `-p no:recording` is such a project's session.
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(WITHOUT_RECORDING)
    result = pytester.runpytest_subprocess("-p", "no:recording")
    result.assert_outcomes(passed=1, errors=1)
    assert "@pytest.mark.comfy_vcr needs pytest-recording, which is not loaded: pip install 'comfy-cassettes[vcr]'" in result.stdout.str()
    assert "must not run" not in result.stdout.str()


BESIDE_HTTP_MOCKS = '''
import httpx
import pytest
import respx

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}}}


def test_respx_mocks_everything_yet_the_handle_works(comfy, respx_mock):
    respx_mock.get("https://api.example.invalid/x").respond(json={"a": 1})
    assert httpx.get("https://api.example.invalid/x").json() == {"a": 1}
    assert comfy.run(GRAPH)["status"]["completed"]
    assert comfy.count(method="POST", path="/prompt") == 1


@pytest.mark.vcr
def test_their_cassette_never_sees_our_calls(comfy):
    assert httpx.get("https://api.example.invalid/x").json() == {"a": 1}
    comfy.fail("/system_stats", 503)
    assert comfy.run(GRAPH)["status"]["completed"]
    assert comfy.journal(method="POST", path="/prompt")


@pytest.mark.vcr
def test_the_code_under_tests_calls_to_comfy_pass_their_cassette(comfy):
    assert httpx.get("https://api.example.invalid/x").json() == {"a": 1}
    with httpx.Client(base_url=comfy.url.replace("127.0.0.1", "localhost")) as http:
        prompt_id = http.post("/prompt", json={"prompt": GRAPH}).json()["prompt_id"]
    assert comfy.wait_for_job(prompt_id)["status"]["completed"]
'''


def test_the_comfy_handle_works_beside_a_tests_http_mocks_and_stays_out_of_its_cassette(pytester: pytest.Pytester) -> None:
    # respx and vcrpy patch httpx's transports (or httpcore) for the whole test: the handle's calls to its own server,
    # admin or not, must not be refused as unmocked nor written into (or looked up in) another suite's cassette.
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_mocks=BESIDE_HTTP_MOCKS)
    # The code under test's own calls to comfy.url pass their cassette too: recorded on a port drawn for this run, they
    # could never be played back.
    folder = pytester.path / "cassettes" / "test_mocks"
    folder.mkdir(parents=True)
    plain = _plain_cassette()
    plain["interactions"] = [{**plain["interactions"][0], "request": {**plain["interactions"][0]["request"],  # type: ignore[index]
                                                                       "uri": "https://api.example.invalid/x"}}]
    plain["interactions"][0]["response"]["body"]["string"] = '{"a": 1}'  # type: ignore[index]
    cassettes = [folder / f"{name}.yaml" for name in ("test_their_cassette_never_sees_our_calls",
                                                     "test_the_code_under_tests_calls_to_comfy_pass_their_cassette")]
    for cassette in cassettes:
        cassette.write_text(yaml.safe_dump(plain))
    before = [cassette.read_text() for cassette in cassettes]
    pytester.runpytest_subprocess().assert_outcomes(passed=3)
    pytester.runpytest_subprocess("--record-mode=new_episodes").assert_outcomes(passed=3)
    assert [cassette.read_text() for cassette in cassettes] == before


BLOCKED_NETWORK = '''
import httpx
import pytest

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}}}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the socket httpcore leaves to the guard
def test_the_handle_passes_the_guard_the_code_under_test_does_not(comfy):
    comfy.fail("/system_stats", 503)
    assert comfy.run(GRAPH)["status"]["completed"]
    with pytest.raises(RuntimeError, match="Network is disabled"):
        httpx.get(comfy.url + "/system_stats")
    assert comfy.count(path="/system_stats") == 0
'''


def test_the_handle_reaches_its_server_under_block_network(pytester: pytest.Pytester) -> None:
    # pytest-recording's --block-network guards the code under test; the handle's own calls (reset, fail, run...) go
    # to the server the plugin started, as the docs promise, without --allowed-hosts.
    pytester.makeini(SUITE_INI)
    pytester.makepyfile(test_blocked=BLOCKED_NETWORK)
    pytester.runpytest_subprocess("--block-network").assert_outcomes(passed=1)


def test_cassettes_of_another_service_are_refused_in_pytest_and_named_by_serve(pytester: pytest.Pytester) -> None:
    # Pointing the plugin at the folder of the suite's own vcr cassettes (a payments API) passed every test on the base's
    # synthetic answers alone: no cassette replayed anything.
    folder = pytester.path / "cassettes" / "test_payments"
    folder.mkdir(parents=True)
    (folder / "test_charge.yaml").write_text(yaml.safe_dump(_plain_cassette()))
    pytester.makeini(SUITE_INI + "comfy_cassettes = cassettes/test_payments\n")
    pytester.makepyfile("def test_one(comfy):\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.errlines if line.strip()]
    assert line == (f"ERROR: comfy-cassettes: comfy_cassettes {folder}: none of these cassettes recorded "
                    "a ComfyUI request (cassettes of another service?)")
    # serve, beside cassettes of ComfyUI, names each foreign one on stderr before it listens
    from comfy_cassettes.replay.config import BUNDLED_DIR

    served = subprocess.Popen([sys.executable, "-m", "comfy_cassettes", "serve", str(folder), str(BUNDLED_DIR / "basic_save.yaml"),
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert served.stdout is not None
        lines = []
        for text in served.stdout:
            lines.append(text.rstrip("\n"))
            if text.startswith("listening on"):
                break
    finally:
        served.kill()
        served.communicate(timeout=10)
    assert [text for text in lines if text.startswith("warning:")] == [
        f"warning: {folder / 'test_charge.yaml'}: none of its 3 request(s) is to ComfyUI (a cassette of another service?); "
        "it answers nothing here"]
