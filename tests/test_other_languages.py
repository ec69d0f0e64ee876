"""Clients in other languages drive the replay server and its admin API over plain HTTP and WebSocket (the
dependency-free Node client here; the TypeScript and Ruby suites in test_examples.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NODE = shutil.which("node")


def test_node_client_runs_a_job_with_retries_through_injected_503s(start_server) -> None:
    if NODE is None:  # CI installs its toolchains (.ci/run): there a missing one is a failure, not a skip
        (pytest.fail if os.environ.get("CI") else pytest.skip)("Node.js is not installed (Node 20+: apt-get install nodejs)")
    server = start_server("basic_save")
    result = subprocess.run(
        [str(NODE), "--experimental-websocket", str(EXAMPLES / "node" / "comfy_client.mjs"), server.url],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["attempts"] == 3  # two injected 503s, then accepted
    assert seen["events"][0] == "execution_start" and seen["events"][-2:] == ["execution_success", "executing"]
    assert seen["image"] == {"filename": "from_node_00001_.png", "subfolder": "gen", "type": "output"}
    assert seen["view"] == {"status": 200, "type": "image/png", "png": True}
    assert seen["prompts_received"] == 3
