"""comfy_cassettes.vcr: our cassettes through vcrpy, replayed in-process and recorded from a live server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import vcr
import yaml
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.request import Request
from vcr.serializers import yamlserializer

from comfy_cassettes.cassette import load as cassette_io
from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.config import BUNDLED_DIR, ReplayConfig
from comfy_cassettes.replay.server import ReplayServer
from comfy_cassettes.vcr import ComfyPersister, bundled_cassette, comfy_body, comfy_path, comfy_query, configure_vcr

NOWHERE = "http://comfy.invalid:8188"  # nothing listens: answers can only come from the cassette
BUNDLED = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def workflow(color: int = 16744448, seed: int | None = None) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
    }
    if seed is not None:
        graph["3"] = {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 20}}
    return graph


def make_vcr() -> vcr.VCR:
    made = vcr.VCR()
    configure_vcr(made)
    return made


def matches(matcher: Any, incoming: Request, recorded: Request) -> bool:
    try:
        matcher(incoming, recorded)
    except AssertionError:
        return False
    return True


def post(body: Any, uri: str = NOWHERE + "/prompt") -> Request:
    return Request("POST", uri, json.dumps(body).encode(), {"Content-Type": "application/json"})


# ---------------------------------------------------------------- loading and rendering


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_cassette_renders_without_placeholders(name: str) -> None:
    requests_, responses = ComfyPersister().load_cassette(bundled_cassette(name), serializer=None)[:2]
    assert len(requests_) == len(responses) == len(cassette_io.load(bundled_cassette(name)).interactions)
    for request, response in zip(requests_, responses):
        assert "{{" not in request.uri
        assert b"{{" not in (request.body or b"")
        assert b"{{" not in response["body"]["string"]
        assert "{{" not in json.dumps(response["headers"])


def test_job_bindings_agree_across_interactions_and_loads() -> None:
    persister = ComfyPersister()
    requests_, responses = persister.load_cassette(bundled_cassette("basic_save"), serializer=None)
    posts = [json.loads(r["body"]["string"]) for q, r in zip(requests_, responses) if q.method == "POST"]
    ids = [p["prompt_id"] for p in posts]
    assert len(set(ids)) == 2 and [p["number"] for p in posts] == [0, 1]
    history_uris = [q.uri for q in requests_ if "/history/" in q.uri]
    assert history_uris == [f"http://127.0.0.1:8189/history/{pid}" for pid in ids]
    listing = next(json.loads(r["body"]["string"]) for q, r in zip(requests_, responses) if q.uri.endswith("/history"))
    assert set(listing) == set(ids)
    again = persister.load_cassette(bundled_cassette("basic_save"), serializer=None)[1]
    assert again[0]["body"]["string"] == responses[0]["body"]["string"]  # same seed, same ids


def test_replay_with_httpx_gives_consistent_ids_filenames_and_recorded_bytes() -> None:
    recorded = cassette_io.load(bundled_cassette("basic_save"))
    blob = recorded.read_blob(str(recorded.jobs[0].outputs[0].file))
    with make_vcr().use_cassette(bundled_cassette("basic_save"), record_mode="none"), httpx.Client(base_url=NOWHERE) as http:
        first = http.post("/prompt", json={"prompt": workflow(), "client_id": uuid.uuid4().hex}).json()
        history = http.get(f"/history/{first['prompt_id']}").json()
        [image] = history[first["prompt_id"]]["outputs"]["2"]["images"]
        assert image == {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
        assert http.get("/api/view", params=image).content == blob
        second = http.post("/api/prompt", json={"prompt": workflow(color=33023)}).json()
        [image2] = http.get(f"/history/{second['prompt_id']}").json()[second["prompt_id"]]["outputs"]["2"]["images"]
        assert image2["filename"] == "ComfyUI_00002_.png"


def test_a_prompt_id_chosen_by_the_client_still_matches() -> None:
    with make_vcr().use_cassette(bundled_cassette("basic_save"), record_mode="none"), httpx.Client(base_url=NOWHERE) as http:
        mine = str(uuid.uuid4())
        assert http.post("/prompt", json={"prompt": workflow(), "prompt_id": mine}).status_code == 200
        assert http.get(f"/history/{mine}").status_code == 200


def test_an_unknown_workflow_fails_with_vcrpys_closest_match_and_our_diff() -> None:
    with make_vcr().use_cassette(bundled_cassette("basic_save"), record_mode="none"), httpx.Client(base_url=NOWHERE) as http:
        with pytest.raises(CannotOverwriteExistingCassetteException) as caught:
            http.post("/prompt", json={"prompt": workflow(color=7)})
    assert "comfy_body" in str(caught.value)
    assert '"color": 7' in str(caught.value)


def test_plain_vcrpy_cassettes_still_load(tmp_path: Path) -> None:
    plain = {
        "version": 1,
        "interactions": [{
            "request": {"method": "GET", "uri": "https://api.example.com/v1/things", "body": None, "headers": {}},
            "response": {"status": {"code": 200, "message": "OK"}, "headers": {"Content-Type": ["application/json"]}, "body": {"string": '{"things": ["{{not a placeholder}}"]}'}},
        }],
    }
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain))
    with make_vcr().use_cassette(str(path), record_mode="none"):
        assert requests.get("https://api.example.com/v1/things", timeout=5).json() == {"things": ["{{not a placeholder}}"]}


def test_extra_paths_are_loaded_with_the_named_cassette(tmp_path: Path) -> None:
    persister = ComfyPersister([bundled_cassette("basic_save"), bundled_cassette("interrupt")])
    requests_, _ = persister.load_cassette(str(tmp_path / "missing.yaml"), serializer=None)
    both = len(cassette_io.load(bundled_cassette("basic_save")).interactions) + len(cassette_io.load(bundled_cassette("interrupt")).interactions)
    assert len(requests_) == both
    with pytest.raises(FileNotFoundError):
        ComfyPersister().load_cassette(str(tmp_path / "missing.yaml"), serializer=None)


# ---------------------------------------------------------------- matchers


def test_body_matcher_ignores_client_id_prompt_id_and_seeds() -> None:
    recorded = post({"prompt": workflow(seed=1), "client_id": "a", "extra_data": {"client_id": "a"}})
    assert matches(comfy_body, post({"prompt": workflow(seed=99), "client_id": "b", "prompt_id": "x", "extra_data": {"client_id": "b"}}), recorded)
    assert not matches(comfy_body, post({"prompt": workflow(color=1, seed=1), "client_id": "a"}), recorded)
    assert not matches(comfy_body, Request("POST", NOWHERE, b"not json", {}), Request("POST", NOWHERE, b"other", {}))
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    assert matches(comfy_body, Request("POST", NOWHERE, b"--x...", multipart), Request("POST", NOWHERE, b"--y...", multipart))


def test_path_and_query_matchers_treat_placeholders_as_wildcards_but_not_other_jobs_values() -> None:
    requests_, _ = ComfyPersister().load_cassette(bundled_cassette("basic_save"), serializer=None)
    history = [q for q in requests_ if "/history/" in q.uri]
    own_id = history[0].uri.rsplit("/", 1)[1]
    other_id = history[1].uri.rsplit("/", 1)[1]

    def get(uri: str) -> Request:
        return Request("GET", uri, None, {})

    assert matches(comfy_path, get(f"http://elsewhere:1/api/history/{own_id}"), history[0])
    assert matches(comfy_path, get(f"{NOWHERE}/history/{uuid.uuid4()}"), history[0])
    assert not matches(comfy_path, get(f"{NOWHERE}/history/{other_id}"), history[0])
    assert not matches(comfy_path, get(f"{NOWHERE}/queue"), history[0])
    view = next(q for q in requests_ if "/view" in q.uri)
    assert matches(comfy_query, get(f"{NOWHERE}/view?type=output&subfolder=&filename=ComfyUI_00001_.png"), view)
    assert matches(comfy_query, get(f"{NOWHERE}/view?type=output&subfolder=&filename=mine.png"), view)
    assert not matches(comfy_query, get(f"{NOWHERE}/view?type=output&subfolder=&filename=ComfyUI_00002_.png"), view)
    assert not matches(comfy_query, get(f"{NOWHERE}/view?type=temp&subfolder=&filename=ComfyUI_00001_.png"), view)


# ---------------------------------------------------------------- recording


@pytest.fixture
def live(start_server: Callable[..., ReplayServer]) -> ReplayServer:
    """Our replay server standing in for a live ComfyUI."""
    return start_server("basic_save")


def generate(url: str) -> tuple[str, bytes]:
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer s3cret"}) as http:
        prompt_id = http.post("/prompt", json={"prompt": workflow(), "client_id": uuid.uuid4().hex}).json()["prompt_id"]
        while prompt_id not in (history := http.get(f"/history/{prompt_id}").json()):
            time.sleep(0.01)
        [image] = history[prompt_id]["outputs"]["2"]["images"]
        return prompt_id, http.get("/view", params=image).content


def test_recording_writes_our_templated_format_without_secrets_or_admin_calls(tmp_path: Path, live: ReplayServer) -> None:
    path = tmp_path / "cassettes" / "recorded.yaml"
    with make_vcr().use_cassette(str(path), record_mode="once"):
        with ReplayControl(live.url) as control:
            control.reset()
        _, png = generate(live.url)
    text = path.read_text()
    assert "s3cret" not in text and "__cassettes__" not in text
    recorded = cassette_io.load(path)
    [job] = recorded.jobs
    assert job.status == "success" and job.outputs[0].file and recorded.read_blob(job.outputs[0].file) == png
    # Rebuilt by the one timeline generator, so with progress_state like real ComfyUI (basic_save capture).
    assert [e.type for e in job.ws if e.type != "progress_state"] == ["execution_start", "execution_cached", "executing", "executing", "executed", "execution_success"]
    assert [e.type for e in job.ws].count("progress_state") == 4
    uris = [item.uri for item in recorded.interactions]
    assert uris[0].endswith("/prompt") and uris[-1].endswith("/view?filename={{out.2.0.filename}}&subfolder={{out.2.0.subfolder}}&type=output")
    assert all(uri.endswith("/history/{{prompt_id}}") for uri in uris[1:-1])


def test_a_recorded_cassette_replays_in_process_and_in_the_server(tmp_path: Path, live: ReplayServer) -> None:
    path = tmp_path / "recorded.yaml"
    with make_vcr().use_cassette(str(path), record_mode="once"):
        _, png = generate(live.url)
    live.stop()
    with make_vcr().use_cassette(str(path), record_mode="none") as replayed:
        prompt_id, again = generate(live.url)
    assert again == png and replayed.all_played
    config = ReplayConfig(cassettes=(path,), port=0, output_dir=tmp_path / "o", input_dir=tmp_path / "i", temp_dir=tmp_path / "t")
    with ReplayServer(config) as server:
        assert generate(server.url)[1] == png


def test_traffic_to_other_services_is_saved_in_plain_vcrpy_format(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    request = Request("GET", "https://api.example.com/v1/things", None, {})
    response = {"status": {"code": 200, "message": "OK"}, "headers": {}, "body": {"string": b"{}"}}
    ComfyPersister().save_cassette(str(path), {"requests": [request], "responses": [response]}, serializer=yamlserializer)
    saved = yaml.safe_load(path.read_text())
    assert "comfy" not in saved and saved["interactions"][0]["request"]["uri"] == request.uri


def test_recording_scrubs_secrets_even_when_vcrpy_keeps_every_header(tmp_path: Path, live: ReplayServer) -> None:
    secrets = ("cookie-value-123456", "bearer-token-abcdef", "comfy-org-key-42424242", "alice-the-user")
    path = tmp_path / "secret.yaml"
    credentials = {"Cookie": f"session={secrets[0]}", "Authorization": f"Bearer {secrets[1]}", "Comfy-User": secrets[3]}
    # A user's vcr_config without filter_headers: the persister (build_cassette) must still keep secrets out.
    with make_vcr().use_cassette(str(path), record_mode="once", filter_headers=()):
        with httpx.Client(base_url=live.url, headers=credentials) as http:
            body = {"prompt": workflow(), "client_id": uuid.uuid4().hex, "extra_data": {"api_key_comfy_org": secrets[2]}}
            prompt_id = http.post("/prompt", json=body).json()["prompt_id"]
            while prompt_id not in http.get(f"/history/{prompt_id}").json():
                time.sleep(0.01)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert [s for s in secrets if s.encode() in written] == []
    recorded = cassette_io.load(path)
    [prompt] = [i for i in recorded.interactions if i.uri.endswith("/prompt")]
    assert json.loads(prompt.request_body)["extra_data"]["api_key_comfy_org"] == "<scrubbed>"
    assert not {"cookie", "authorization", "comfy-user"} & {k.lower() for k in prompt.request_headers}
