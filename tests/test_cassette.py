"""Cassette files: HAR import templates every volatile value, loading validates, saving is atomic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

import comfy_cassettes
from comfy_cassettes.cassette.load import load, save
from comfy_cassettes.errors import CassetteError, CassetteExistsError, ImportFormatError
from comfy_cassettes.importer import import_har
from comfy_cassettes.record.build import build_cassette
from comfy_cassettes.record.har import read_har
from comfy_cassettes.record.session import RawSession
from comfy_cassettes.cassette.templating import Templater, dumps_templated, render_text, render_value
from comfy_cassettes.vcr import ComfyPersister
from comfy_cassettes.replay.config import BUNDLED_DIR as CASSETTES
from helpers import MORE_08, SCENARIOS, SESSIONS, load_har

CLI = [sys.executable, "-m", "comfy_cassettes"]
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
    assert cassette.recorded["comfyui_version"] in (None, "0.3.64")
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
            {**good, "comfy": {**good["comfy"], "jobs": [{**good["comfy"]["jobs"][0], "workflow": {"1": {"x": "{{out.2.filename}}"}}}]}},
            "comfy.jobs[0].workflow.1.x",
        ),
        "placeholder_typo": (
            {**good, "comfy": {**good["comfy"], "jobs": [{**good["comfy"]["jobs"][0], "workflow": {"1": {"x": "id {{prompt_idd}}"}}}]}},
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
    document = build_cassette(read_har(SESSIONS / "basic_save" / "session.har"), tmp_path / "c.yaml").to_dict()
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
        "import os, signal, comfy_cassettes.cassette.storage as c\n"
        "real = os.fsync\n"
        "def die(fd): os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.fsync = die\n"
        f"c.atomic_write(__import__('pathlib').Path({str(target)!r}), b'x' * 10_000_000, overwrite=True)\n"
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
    # "@py_builtins" and "@pytest_ar" are pytest's, when it rewrites the package's asserts as a plugin's.
    public = {name for name in dir(comfy_cassettes) if not name.startswith(("_", "@"))} | set(comfy_cassettes._LAZY)
    # Submodules show up in dir() once something imported them; they are the package's layout, not its API.
    modules = {name for name in public if isinstance(getattr(comfy_cassettes, name, None), types.ModuleType)}
    assert public - modules - {"annotations", "TYPE_CHECKING", "Any"} == set(comfy_cassettes.__all__)
    assert os.path.basename(comfy_cassettes.DEFAULT_CASSETTE) == "comfyui.yaml"


def test_saved_cassette_is_readable_by_others(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = import_har([SESSIONS / "basic_save" / "session.har"], tmp_path / "c.yaml")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_saving_never_sets_the_process_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(mask: int) -> int:
        raise AssertionError("os.umask called: setting it to read it races with other threads")

    monkeypatch.setattr(os, "umask", refuse)
    path = import_har([SESSIONS / "basic_save" / "session.har"], tmp_path / "c.yaml")
    assert load(path).jobs and not list(tmp_path.glob(".*.tmp"))


def test_missing_comfyui_version_is_none_not_a_string(tmp_path: Path) -> None:
    document = build_cassette(RawSession(), tmp_path / "empty.yaml").to_dict()
    assert document["comfy"]["recorded"]["comfyui_version"] is None
    assert save(document, tmp_path / "empty.yaml").read_text().count("comfyui_version: null") == 1


# ---------------------------------------------------------------- secrets and literal braces in recorded data

SECRETS = ("cookie-value-123456", "bearer-token-abcdef", "comfy-org-key-42424242", "team-token-xyz789")


def har_with_secrets_and_braces(tmp_path: Path) -> Path:
    """basic_save as a browser would export it with credentials, a Comfy.org key and a templating node's braces."""
    har = load_har("basic_save")
    for entry in har["log"]["entries"]:
        request = entry["request"]
        request["headers"] += [
            {"name": "Cookie", "value": f"session={SECRETS[0]}; theme=dark"},
            {"name": "Authorization", "value": f"Bearer {SECRETS[1]}"},
            {"name": "X-Team-Token", "value": SECRETS[3]},
        ]
        if request["method"] == "POST" and request["url"].endswith("/prompt"):
            body = json.loads(request["postData"]["text"])
            body["prompt"]["3"] = {"class_type": "StringTemplate", "inputs": {"template": "a {{style}} portrait", "other": "{{ not ours }}"}}
            body["extra_data"] = {"api_key_comfy_org": SECRETS[2], "extra_pnginfo": {"note": "{{style}}"}}
            request["postData"]["text"] = json.dumps(body)
    path = tmp_path / "secret.har"
    path.write_text(json.dumps(har))
    return path


def test_import_scrubs_headers_keys_and_extra_headers(tmp_path: Path) -> None:
    har = har_with_secrets_and_braces(tmp_path)
    out = tmp_path / "out" / "c.yaml"
    done = subprocess.run([*CLI, "import", str(har), "-o", str(out), "--scrub-header", "X-Team-Token"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    written = b"".join(p.read_bytes() for p in out.parent.rglob("*") if p.is_file())
    assert [s for s in SECRETS if s.encode() in written] == []
    text = out.read_text()
    assert "Cookie" not in text and "Authorization" not in text and "X-Team-Token" not in text
    prompts = [i for i in load(out).interactions if i.uri.endswith("/prompt")]
    assert prompts and all(json.loads(i.request_body)["extra_data"]["api_key_comfy_org"] == "<scrubbed>" for i in prompts)


def test_import_templates_a_prompt_id_only_where_it_is_the_prompt_id(tmp_path: Path) -> None:
    # prompt_edge: a client chose prompt_id 42 (ComfyUI answers "42") for a graph saving under the prefix "n42".
    # The id is templated where it is the whole value (a JSON string, a key, a path segment), never inside "n42".
    out = tmp_path / "c.yaml"
    done = subprocess.run([*CLI, "import", str(MORE_08 / "prompt_edge" / "session.har"), "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    cassette = load(out)
    posted = next(i for i in cassette.interactions if i.uri.endswith("/prompt") and '"prompt_id": 42' in (i.request_body or ""))
    assert '"filename_prefix": "n42"' in str(posted.request_body)
    queued = next(i for i in cassette.interactions if i.uri.endswith("/queue") and i.method == "GET").body
    assert re.search(r'\[\{\{job\.(\d+)\.number\}\}, "\{\{job\.\1\.prompt_id\}\}", \{"1": \{"class_type": "EmptyImage", '
                     r'"inputs": \{"width": 64, "height": 64, "batch_size": 1, "color": 1\}\}, "2": \{"class_type": "SaveImage", '
                     r'"inputs": \{"images": \["1", 0\], "filename_prefix": "n42"\}\}\}', queued)
    assert "n{{" not in out.read_text()
    assert any(re.search(r"/api/jobs/\{\{(job\.\d+\.)?prompt_id\}\}$", i.uri) for i in cassette.interactions)
    templater = Templater()
    templater.add("42", "prompt_id", whole=True)
    assert [templater.text("n42"), templater.text("42"), templater.path("/history/42"), templater.path("/view/n42")] == [
        "n42", "{{prompt_id}}", "/history/{{prompt_id}}", "/view/n42"]


def test_import_api_scrubs_by_default(tmp_path: Path) -> None:
    path = import_har([har_with_secrets_and_braces(tmp_path)], tmp_path / "c.yaml")
    text = path.read_text()
    assert [s for s in SECRETS[:3] if s in text] == []
    assert SECRETS[3] in text  # X-Team-Token is nobody's default: --scrub-header / Scrubber.with_extra names it


def test_literal_braces_in_recorded_data_are_kept_as_text(tmp_path: Path) -> None:
    path = import_har([har_with_secrets_and_braces(tmp_path)], tmp_path / "c.yaml")
    job = load(path).jobs[0]
    assert job.workflow["3"]["inputs"] == {"template": "a {{style}} portrait", "other": "{{ not ours }}"}
    # Rendered (vcrpy persister) they stay literal while the real placeholders are filled.
    requests_, _ = ComfyPersister().load_cassette(str(path), serializer=None)[:2]
    body = json.loads(next(r for r in requests_ if r.uri.endswith("/prompt")).body)
    assert body["prompt"]["3"]["inputs"]["template"] == "a {{style}} portrait"
    assert body["extra_data"]["extra_pnginfo"] == {"note": "{{style}}"} and "{{" not in body["client_id"]


def test_only_names_in_our_namespace_are_placeholders() -> None:
    bindings = {"prompt_id": "p1", "number": 3}
    assert render_text("{{style}} {{prompt_id}} {{ prompt_id }}", bindings) == "{{style}} p1 {{ prompt_id }}"
    assert render_value({"a": "{{style}}", "{{style}}": ["{{number}}", "{{x.y}}"]}, bindings) == {"a": "{{style}}", "{{style}}": [3, "{{x.y}}"]}
    assert dumps_templated({"n": "{{number}}", "s": "{{style}}", "t": "{{numbers}}"}) == '{"n": {{number}}, "s": "{{style}}", "t": "{{numbers}}"}'


def test_recorded_text_that_looks_like_a_placeholder_survives_a_round_trip(tmp_path: Path) -> None:
    from comfy_cassettes.record.session import HttpExchange, RawSession

    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{number_of_steps}}"}},
    }
    body = json.dumps({"prompt": prompt, "extra_data": {"note": "{{output}} and {{prompt_id}}"}}).encode()
    answer = json.dumps({"prompt_id": "a6f1b2c3-0000-4000-8000-000000000001", "number": 0, "node_errors": {}}).encode()
    exchange = HttpExchange(0.0, "POST", "http://127.0.0.1:8188/prompt", [("Content-Type", "application/json")], body,
                            200, "OK", [("Content-Type", "application/json; charset=utf-8")], answer)
    document = build_cassette(RawSession(exchanges=[exchange]), tmp_path / "odd.yaml").to_dict()
    cassette = load(save(document, tmp_path / "odd.yaml"))  # valid: nothing recorded can make it invalid
    assert render_value(cassette.jobs[0].workflow, {})["2"]["inputs"]["filename_prefix"] == "{{number_of_steps}}"
    request_body = cassette.interactions[0].request_body
    rendered = json.loads(render_text(request_body, {"prompt_id": "x"}))
    assert rendered["extra_data"]["note"] == "{{output}} and {{prompt_id}}"


def test_large_cassettes_load_from_a_parsed_cache_that_is_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfy_cassettes.record.build import merge_documents

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    one = build_cassette(read_har(SESSIONS / "load_transform_save" / "session.har"), tmp_path / "big.yaml").to_dict()
    copies = 1 + (1 << 20) // max(1, len(yaml.safe_dump(one)))
    path = save(merge_documents([one] * copies), tmp_path / "big.yaml")  # > 1 MiB, with binary upload bodies
    folder = tmp_path / "cache" / "comfy-cassettes"

    first = load(path)
    [cached] = list(folder.iterdir())
    second = load(path)
    assert second.jobs == first.jobs and second.interactions == first.interactions
    assert any(isinstance(i.request_body, bytes) for i in second.interactions)

    cached.write_text("{not json")  # a damaged cache is ignored, the YAML is read again
    assert load(path).jobs == first.jobs

    path.write_text(path.read_text().replace("transformed", "renamed"))  # an edit is a new key: never stale
    assert "renamed" in json.dumps(load(path).jobs[0].workflow)
    assert len(list(folder.iterdir())) == 2

    monkeypatch.setenv("COMFY_CASSETTES_CACHE", "0")
    path.write_text(path.read_text().replace("renamed", "again"))
    load(path)
    assert len(list(folder.iterdir())) == 2


def test_the_parsed_cache_drops_the_least_recently_used_past_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfy_cassettes.cassette import storage

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "comfy-cassettes"
    text = (CASSETTES / "comfyui.yaml").read_text()  # over the size that is cached
    paths = {}
    for name in ("a", "b", "c"):  # three cassettes, three entries: the same text under another comment each
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(f"# {name}\n" + text)
        (paths[name].parent / "blobs").mkdir(exist_ok=True)
    for blob in (CASSETTES / "blobs").iterdir():
        (tmp_path / "blobs" / blob.name).write_bytes(blob.read_bytes())

    def entries() -> set[str]:
        return {p.name for p in folder.iterdir()}

    load(paths["a"])
    time.sleep(0.02)
    load(paths["b"])
    first_two = entries()
    time.sleep(0.02)
    load(paths["a"])  # a used again: b is now the least recently used
    size = max(p.stat().st_size for p in folder.iterdir())
    monkeypatch.setattr(storage, "CACHE_LIMIT_BYTES", 2 * size + size // 2)
    time.sleep(0.02)
    load(paths["c"])
    kept = entries()
    assert len(kept) == 2 and len(first_two - kept) == 1
    b_entry = storage.parsed_cache(paths["b"].read_text())
    assert b_entry is not None and b_entry.name not in kept  # the least recently used went, a and c stayed
    assert load(paths["b"]).jobs == load(paths["a"]).jobs  # and b still loads, from its YAML
