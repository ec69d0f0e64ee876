"""Each captured real session, replayed against `serve` with its imported cassette, looks like the capture."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from comfy_cassettes.importer import import_har
from conftest import SCENARIOS, SESSIONS
from session_replay import replay_session, shape, ws_kinds

# Scenarios whose client acts while a job runs need the recorded delays to line up (sped up to keep CI short).
TIMED = {"interrupt": 4.0, "queue_and_history_ops": 4.0, "ws_reconnect": 4.0, "no_client_id": 4.0, "snapshots": 4.0}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("imported")
    return {name: import_har([SESSIONS / name / "session.har"], folder / f"{name}.yaml") for name in SCENARIOS}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_replay_matches_capture(scenario: str, imported: dict[str, Path], start_server, tmp_path: Path) -> None:
    cassettes = [imported[scenario]]
    if scenario != "snapshots":
        cassettes.append(imported["snapshots"])  # the recorded /object_info, to validate like ComfyUI
    options = {"timing": "recorded", "speed": TIMED[scenario]} if scenario in TIMED else {}
    server = start_server(*cassettes, dynamic=True, **options)
    outcome = asyncio.run(replay_session(scenario, server.url))

    problems = []
    for what, entry, response in outcome.http:
        captured = entry["response"]
        if response is None or response.status_code != captured["status"]:
            problems.append(f"{what}: status {response.status_code if response else None} != captured {captured['status']}")
            continue
        text = captured["content"].get("text")
        if "/history/" in what and text == "{}":
            continue  # a poll that caught the job still running: its answer depends on timing, not protocol
        if captured["content"].get("mimeType", "").startswith("application/json") and text:
            want, got = shape(json.loads(text)), shape(response.json())
            if want != got:
                problems.append(f"{what}: JSON shape differs\n  captured {want}\n  replayed {got}")
    for index, frames in outcome.captured_ws.items():
        want_kinds, got_kinds = ws_kinds(frames), ws_kinds(outcome.replayed_ws.get(index, []))
        if want_kinds != got_kinds:
            problems.append(f"socket {index}: events differ\n  captured {want_kinds}\n  replayed {got_kinds}")
        else:
            for a, b in zip(frames, outcome.replayed_ws[index]):
                if isinstance(a, str) and shape(json.loads(a)) != shape(json.loads(b)):
                    problems.append(f"socket {index}: {json.loads(a)['type']} shape differs\n  captured {a[:300]}\n  replayed {b[:300]}")
                    break
    assert not problems, "\n".join(problems)
