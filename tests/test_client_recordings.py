"""Client libraries replayed their own sessions: each cassette under tests/data/client_recordings was recorded by
`record --proxy` while the client ran its workflows against a real ComfyUI (their README); `serve` at its defaults
must give the same client, running them again in the same order, what the real server gave it: the same image bytes
and a history whose entries say what the recorded ones say."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from helpers import DATA
from serve_process import serve
from test_clients_python import within

RECORDINGS = DATA / "client_recordings"


def recorded_jobs(cassette: Path) -> list[dict[str, Any]]:
    """The cassette's jobs, in the order the client queued them."""
    return list(yaml.safe_load(cassette.read_text())["comfy"]["jobs"])


def blob(cassette: Path, output: dict[str, Any]) -> bytes:
    return (cassette.parent / output["file"]).read_bytes()


def history_of(url: str, prompt_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/history/{prompt_id}") as response:
        entry: dict[str, Any] = json.load(response)[prompt_id]
    return entry


def kinds(entry: dict[str, Any]) -> list[str]:
    return [message[0] for message in entry["status"]["messages"]]


def test_comfy_api_simplified_replays_its_own_session(tmp_path: Path) -> None:
    """comfy-api-simplified POSTs first and connects /ws after: against ComfyUI its socket joined the blur job after
    ``execution_start``, so the cassette's stream of that job starts mid-run. The replayed history still holds the
    start and cached messages ComfyUI's history kept (it once held only ``execution_success``)."""
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    cassette = RECORDINGS / "comfy_api_simplified_0.3.64.yaml"
    jobs = recorded_jobs(cassette)
    assert any(job["ws"] and all(e.get("type") != "execution_start" for e in job["ws"]) for job in jobs)  # the case
    with serve(tmp_path, str(cassette)) as (url, _):
        api = ComfyApiWrapper(url)
        for job in jobs:
            prompt_id, _ = within(30, lambda: asyncio.run(api.queue_prompt_and_wait(ComfyWorkflowWrapper(job["workflow"]))))
            entry = history_of(url, prompt_id)
            assert kinds(entry) == [message[0] for message in job["history"]["status"]["messages"]]
            pictures = [api.get_image(i["filename"], i["subfolder"], i["type"]) for i in entry["outputs"]["2"]["images"]]
            assert pictures == [blob(cassette, output) for output in job["outputs"]]
