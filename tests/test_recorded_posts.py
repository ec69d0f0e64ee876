"""What a recorded POST /prompt says beyond its answer, replayed through `serve`: prompts tied on number run in the
order the recording's did, whatever ids the replay draws (more_sessions_0.3/queue_ops, a real 0.3.64)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from comfy_cassettes.cli import app
from comfy_cassettes.replay.server import ReplayServer

CAPTURE = Path(__file__).parent / "data" / "more_sessions_0.3" / "queue_ops" / "session.har"


def captured_posts() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each POST /prompt of the capture: the body sent and the answer, in order."""
    entries = json.loads(CAPTURE.read_text())["log"]["entries"]
    return [(json.loads(e["request"]["postData"]["text"]), json.loads(e["response"]["content"]["text"]))
            for e in entries if e["request"]["method"] == "POST" and e["request"]["url"].endswith("/prompt")]


def captured_run_order() -> list[str]:
    """The prompt_ids in the order the real server started them."""
    entries = json.loads(CAPTURE.read_text())["log"]["entries"]
    frames = [json.loads(m["data"]) for e in entries for m in e.get("_webSocketMessages", []) if m["opcode"] == 1]
    return [f["data"]["prompt_id"] for f in frames if f["type"] == "execution_start"]


def test_prompts_tied_on_number_run_in_the_recorded_order(start_server: Callable[..., ReplayServer], tmp_path: Path) -> None:
    # A running prompt, then p2 (number 1 from the counter), p3 (front: -2), p4 (number 1 given): ComfyUI's heap of
    # (number, prompt_id, ...) ran p3, then p2 and p4 in the order of the ids it drew for them (c1ef... < cf34...).
    cassette = tmp_path / "queue_ops.yaml"
    assert CliRunner().invoke(app, ["import", str(CAPTURE), "-o", str(cassette)]).exit_code == 0
    posts = captured_posts()[:4]
    label = {answer["prompt_id"]: i for i, (_, answer) in enumerate(posts)}
    expected = [label[pid] for pid in captured_run_order() if pid in label]
    assert posts[1][1]["number"] == posts[3][1]["number"] and expected == [0, 2, 1, 3]

    server = start_server(cassette, timing="faithful")  # serve's default
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
        for attempt in range(3):  # each reset draws ids of its own (seed 0, third attempt: p4's below p2's)
            assert http.post("/__cassettes__/reset").status_code == 200
            ids = [http.post("/prompt", json=body).json()["prompt_id"] for body, _ in posts]
            http.post("/interrupt", json={})  # the running prompt: the rest follow at once
            deadline = time.monotonic() + 20
            while len(finished := http.get("/history").json()) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.02)
            # One prompt at a time: history lists them in the order they ran, as ComfyUI's does.
            assert [ids.index(pid) for pid in finished] == expected, f"attempt {attempt}: ids {ids}"
