"""Each captured real session, replayed against `serve` with its imported cassette, answers as the real ComfyUI
did, value by value: every HTTP status and JSON body, every /ws frame in order (tests/value_compare.py holds the
same rules as the team's reference comparator, shared/tools/fidelity.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from comfy_cassettes.importer import import_har
from helpers import (
    SCENARIOS, SCENARIOS_08, SCENARIOS_MORE_03, SCENARIOS_MORE_08, Outcome, har_path, load_har, replay_session, response_bytes, response_headers,
)
from value_compare import ClientLate, ValueComparer, frame_kind

# Every session replays with its recorded timing, sped up to keep CI short; an interrupt inside the sampler needs
# the steps slower than that to land where the capture's did, and more_sessions_0.8/prompt_edge's eight POSTs must
# land inside the holder's first node (0.23 s recorded), which a loaded machine missed at twice the speed;
# more_sessions_0.3/queue_ops's second prompt took 32 ms to validate while the first job sent two frames 11 ms in,
# before the prompt's status: sped up more, the job's frames were out before the client even sent it.
SPEED = 8.0
SLOWER = {"txt2img_interrupt": 4.0, "prompt_edge": 1.0, "queue_ops": 2.0}
ALL = SCENARIOS + SCENARIOS_08 + SCENARIOS_MORE_08 + SCENARIOS_MORE_03


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("imported")
    return {name: import_har([har_path(name)], folder / f"{name.replace('/', '-')}.yaml") for name in ALL}


def captured_frames(scenario: str) -> dict[int, list[tuple[float, str | bytes]]]:
    """Each captured socket's received frames with the time they arrived, in socket order."""
    sockets = [e for e in load_har(scenario)["log"]["entries"] if e.get("_resourceType") == "websocket"]
    return {index: [(m["time"], base64.b64decode(m["data"]) if m["opcode"] == 2 else m["data"])
                    for m in entry["_webSocketMessages"] if m["type"] == "receive"]
            for index, entry in enumerate(sockets)}


def client_late(captured: list[tuple[float, str | bytes]], outcome: Outcome, index: int, speed: float) -> ClientLate:
    """Judges a status broadcast our replay sent later than the real server did: the server paces a job by its
    recorded times from the job's start, the client sends when it gets the CPU, so a starved client's request
    (and the status echoing it) legitimately follows frames the server was due to send before the request got
    there. A frame is due at its job's start (its execution_start's server-side "timestamp") plus the capture's
    interval since, at the replay's speed. The server took the request before its answer came back: if that was
    before the crossed frames were due, the server sent them early, and that is still caught."""
    real = [(t, f) for t, f in captured if frame_kind(f) != "status"]
    ours = [f for f in outcome.replayed_ws.get(index, []) if frame_kind(f) != "status"]

    def started(frame: str | bytes) -> float:
        return float(json.loads(frame)["data"]["timestamp"]) / 1000

    def due(i: int) -> float:
        start = next((j for j in range(i, -1, -1) if frame_kind(real[j][1]) == "execution_start"), None)
        return float("inf") if start is None else started(ours[start]) + (real[i][0] - started(real[start][1])) / speed

    def late(status_time: float, crossed: range) -> bool:
        behind = [ours_answered for captured_sent, ours_answered in outcome.answered if captured_sent <= status_time]
        return bool(behind) and all(due(i) <= behind[-1] for i in crossed)
    return late


@pytest.mark.parametrize("scenario", ALL)
def test_replay_answers_as_the_real_server_did(scenario: str, imported: dict[str, Path], start_server, tmp_path: Path) -> None:
    # Its informational answers come from the bundled base, as `serve SESSION.yaml` gives them; its input folder
    # starts empty, as the capture's server did (by default a replay starts with the files the session uploaded).
    speed = SLOWER.get(scenario.rsplit("/", 1)[-1], SPEED)
    server = start_server(imported[scenario], dynamic=True, timing="recorded", speed=speed, recorded_inputs=False)
    outcome = asyncio.run(replay_session(scenario, server.url))

    comparer, checked = ValueComparer(), 0
    for what, entry, response in outcome.http:
        captured = entry["response"]
        checked += 1
        if response is None or response.status_code != captured["status"]:
            comparer.problems.append(f"{what}: status {response.status_code if response else None} != {captured['status']}")
            continue
        mime, body = captured["content"].get("mimeType", ""), response_bytes(entry)
        if "/history/" in what and body == b"{}":
            continue  # a poll that caught the job still running: its answer depends on timing, not protocol
        if mime.startswith("application/json") and body:
            try:
                comparer.compare(json.loads(body), response.json(), what)
            except ValueError:
                comparer.problems.append(f"{what}: body is not JSON: {response.content[:80]!r}")
        elif mime.startswith("image/") and body:
            if response.content[:4] != body[:4]:
                comparer.problems.append(f"{what}: image bytes differ in format")
        elif not body and response.content and response_headers(entry).get("Content-Length", "0") == "0":
            # (a Content-Length with no text: the capture left that body out, as it did the web page's)
            comparer.problems.append(f"{what}: expected an empty body, got {response.content[:60]!r}")
    for index, frames in captured_frames(scenario).items():
        checked += 1
        comparer.compare_socket(str(index), frames, outcome.replayed_ws.get(index, []), client_late(frames, outcome, index, speed))
    assert checked and not comparer.problems, "\n".join(comparer.problems)
