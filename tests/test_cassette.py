"""Cassette files: HAR import templates every volatile value, loading validates, saving is atomic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import comfy_cassettes
from comfy_cassettes.cassette import BlobStore, load, save
from comfy_cassettes.errors import CassetteError, CassetteExistsError, ImportFormatError
from comfy_cassettes.importer import import_har
from comfy_cassettes.record.build import build_cassette
from comfy_cassettes.record.har import read_har
from comfy_cassettes.templating import Templater, dumps_templated, render_text, render_value
from conftest import SCENARIOS, SESSIONS
from har_util import load_har

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def volatile_values(scenario: str) -> set[str]:
    """prompt_ids, client ids and output file names the capture contains."""
    har = load_har(scenario)
    found: set[str] = set()
    for entry in har["log"]["entries"]:
        url = entry["request"]["url"]
        if "clientId=" in url:
            found.add(url.split("clientId=")[1])
        text = entry["response"].get("content", {}).get("text", "")
        if entry["request"]["method"] == "POST" and entry["request"]["url"].endswith("/prompt") and entry["response"]["status"] == 200:
            found.add(json.loads(text)["prompt_id"])
        for message in entry.get("_webSocketMessages", []):
            if message["opcode"] == 1 and '"executed"' in message["data"]:
                for image in (json.loads(message["data"])["data"].get("output") or {}).get("images", []):
                    found.add(image["filename"])
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_real_session_imports_with_no_volatile_value_left(scenario: str, tmp_path: Path) -> None:
    path = import_har([SESSIONS / scenario / "session.har"], tmp_path / f"{scenario}.yaml")
    cassette = load(path)
    text = path.read_text()
    leaked = {v for v in volatile_values(scenario) if v in text}
    assert not leaked, f"{scenario}: not templated: {sorted(leaked)[:5]}"
    assert cassette.recorded["comfyui_version"] in (None, "None", "0.3.64")
    accepted = [j for j in cassette.jobs if j.status != "rejected"]
    assert all(j.response_status == 200 for j in accepted)


def test_imported_job_carries_timeline_outputs_and_history(tmp_path: Path) -> None:
    cassette = load(import_har([SESSIONS / "batch_3" / "session.har"], tmp_path / "b.yaml"))
    job = cassette.jobs[0]
    assert [e.type for e in job.ws][:2] == ["execution_start", "execution_cached"]
    assert job.ws[-1].type == "execution_success"
    assert [(o.node, o.index, o.width, o.height) for o in job.outputs] == [("2", i, 64, 64) for i in range(3)]
    assert all(cassette.blob_path(o.file).is_file() for o in job.outputs if o.file)
    assert job.history is not None and job.history["outputs"]["2"]["images"][2]["filename"] == "{{out.2.2.filename}}"
    executed = next(e for e in job.ws if e.type == "executed")
    assert executed.data["prompt_id"] == "{{prompt_id}}"


def test_binary_frames_become_blobs_with_templated_metadata(tmp_path: Path) -> None:
    cassette = load(import_har([SESSIONS / "ws_binary_with_metadata" / "session.har"], tmp_path / "w.yaml"))
    frames = [e.binary for e in cassette.jobs[0].ws if e.binary is not None]
    assert len(frames) == 2 and all(f.event_type == 4 for f in frames)
    assert frames[0].metadata is not None and frames[0].metadata["prompt_id"] == "{{prompt_id}}"
    assert cassette.read_blob(frames[0].file).startswith(b"\x89PNG")


def test_merged_cassette_renumbers_other_job_references(tmp_path: Path) -> None:
    har = SESSIONS / "queue_and_history_ops" / "session.har"
    cassette = load(import_har([SESSIONS / "basic_save" / "session.har", har], tmp_path / "m.yaml"))
    text = (tmp_path / "m.yaml").read_text()
    assert len(cassette.jobs) == 2 + 5
    assert "{{job.2.prompt_id}}" in text and "{{job.0.prompt_id}}" not in text.split("queue_and_history_ops")[0][:0] + ""


def test_load_errors_name_the_file_and_key(tmp_path: Path) -> None:
    good = yaml.safe_load(import_har([SESSIONS / "basic_save" / "session.har"], tmp_path / "ok.yaml").read_text())
    cases = {
        "version": ({**good, "version": 2}, "version"),
        "uri": ({**good, "interactions": [{"request": {"method": "GET"}, "response": {"status": {"code": 200}}}]}, "interactions[0].request.uri"),
        "status": ({**good, "comfy": {**good["comfy"], "jobs": [{**good["comfy"]["jobs"][0], "status": "great"}]}}, "comfy.jobs[0].status"),
        "placeholder": (
            {**good, "comfy": {**good["comfy"], "jobs": [{**good["comfy"]["jobs"][0], "workflow": {"1": {"x": "{{__import__}}"}}}]}},
            "comfy.jobs[0].workflow.1.x",
        ),
        "blob": (
            {**good, "comfy": {**good["comfy"], "jobs": [{**good["comfy"]["jobs"][0], "outputs": [{"node": "2", "index": 0, "kind": "output", "width": 1, "height": 1, "file": "blobs/missing.png"}]}]}},
            "comfy.jobs[0].outputs[0].file",
        ),
    }
    for name, (document, key) in cases.items():
        path = tmp_path / f"bad_{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        with pytest.raises(CassetteError) as caught:
            load(path)
        assert caught.value.key == key, name
        assert str(path) in str(caught.value)
    (tmp_path / "syntax.yaml").write_text("version: 1\ninteractions: [\n")
    with pytest.raises(CassetteError, match=r"syntax.yaml: not valid YAML \(line"):
        load(tmp_path / "syntax.yaml")


def test_save_is_atomic_and_never_overwrites_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "c.yaml"
    document = build_cassette(read_har(SESSIONS / "basic_save" / "session.har"), BlobStore(tmp_path))
    save(document, target)
    before = target.read_bytes()
    with pytest.raises(CassetteExistsError):
        save(document, target)
    with pytest.raises(CassetteError):
        save({**document, "version": 3}, target, overwrite=True)  # invalid: nothing written
    assert target.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c.yaml.")]
    save(document, target, overwrite=True)


def test_a_killed_save_leaves_the_old_cassette_intact(tmp_path: Path) -> None:
    target = tmp_path / "c.yaml"
    target.write_text("version: 1\ninteractions: []\n")
    # A child process that dies (SIGKILL) in the middle of writing the temporary file.
    script = (
        "import os, signal, comfy_cassettes.cassette as c\n"
        "real = os.fsync\n"
        "def die(fd): os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.fsync = die\n"
        f"c._atomic_write(__import__('pathlib').Path({str(target)!r}), b'x' * 10_000_000, overwrite=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -9
    assert target.read_text() == "version: 1\ninteractions: []\n"


def test_bad_har_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.har").write_text("{\"log\": {}}")
    with pytest.raises(ImportFormatError, match="not a HAR file"):
        read_har(tmp_path / "x.har")
    (tmp_path / "y.har").write_text("not json")
    with pytest.raises(ImportFormatError, match="y.har: not a JSON file"):
        read_har(tmp_path / "y.har")


def test_templating_is_substitution_only() -> None:
    bindings = {"prompt_id": 'a"b', "number": 7, "out.2.0.filename": "x_00001_.png"}
    text = '{"prompt_id": "{{prompt_id}}", "number": {{number}}, "f": "{{out.2.0.filename}}", "u": "{{unknown}}"}'
    rendered = render_text(text, bindings, escape=lambda v: json.dumps(v)[1:-1])
    assert json.loads(rendered) == {"prompt_id": 'a"b', "number": 7, "f": "x_00001_.png", "u": "{{unknown}}"}
    assert render_value({"n": "{{number}}", "s": "id={{prompt_id}}"}, bindings) == {"n": 7, "s": 'id=a"b'}
    assert dumps_templated({"number": "{{number}}", "t": "{{now_ms}}", "p": "{{prompt_id}}"}) == (
        '{"number": {{number}}, "t": {{now_ms}}, "p": "{{prompt_id}}"}'
    )
    templater = Templater()
    templater.add("abc", "prompt_id")
    templater.add("abcdef", "client_id")
    assert templater.text("/history/abcdef?x=abc") == "/history/{{client_id}}?x={{prompt_id}}"


def test_public_api_is_exactly_all() -> None:
    public = {name for name in dir(comfy_cassettes) if not name.startswith("_")} | set(comfy_cassettes._LAZY)
    modules = {"annotations", "TYPE_CHECKING", "Any", "cassette", "control", "errors", "importer", "record", "replay", "templating", "cli", "pytest_plugin", "vcr", "verify"}
    assert public - modules == set(comfy_cassettes.__all__)
    assert os.path.basename(comfy_cassettes.DEFAULT_CASSETTE) == "comfyui.yaml"


def test_saved_cassette_is_readable_by_others(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = import_har([SESSIONS / "basic_save" / "session.har"], tmp_path / "c.yaml")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
