"""Tests for ``comfy-cassettes verify``: no differences against our own replay server, every difference against a
server replaying a deliberately altered cassette."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from comfy_cassettes.cassette.load import load
from comfy_cassettes.cli import app
from comfy_cassettes.replay.config import BUNDLED_DIR
from comfy_cassettes.replay.server import ReplayServer
from comfy_cassettes.drift import Difference, compare, shape
from comfy_cassettes.cassette.templating import parse_templated
from comfy_cassettes.verify import verify

runner = CliRunner()
StartServer = Callable[..., ReplayServer]
# Scenarios a single client can re-run in order; the others need concurrency or interrupts (see test below).
CLEAN = ["basic_save", "batch_3", "cached_rerun", "error_execution", "load_transform_save", "preview_image",
         "subfolder_prefix", "two_save_nodes", "view_errors", "ws_binary_legacy", "ws_binary_with_metadata", "ws_reconnect"]


def altered_copy(tmp_path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """A bundled cassette copied (with its blobs) and edited by ``change``."""
    folder = tmp_path / "altered"
    shutil.copytree(BUNDLED_DIR / "blobs", folder / "blobs")
    document = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text())
    change(document)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load(path)
    return path


@pytest.mark.parametrize("name", CLEAN)
def test_bundled_cassette_has_no_differences_against_its_own_replay(name: str, start_server: StartServer) -> None:
    report = verify(BUNDLED_DIR / f"{name}.yaml", start_server(name).url, timeout=30)
    assert report.differences == []
    assert report.jobs == len(load(BUNDLED_DIR / f"{name}.yaml").jobs) and report.requests > 0
    assert all(a == b for _, a, b in report.ws_orders)


@pytest.mark.parametrize("path", sorted((BUNDLED_DIR / "live").glob("*.yaml")), ids=lambda p: p.stem)
def test_cassettes_recorded_from_a_real_comfyui_replay_without_differences(path: Path, start_server: StartServer) -> None:
    cassette = load(path)
    assert cassette.recorded["comfyui_version"] == "0.3.64" and cassette.recorded["source"] == "comfy-cassettes record (workflow)"
    report = verify(path, start_server(path).url, timeout=30)
    assert report.ok, report.differences
    assert report.jobs == len(cassette.jobs) >= 2


def test_cli_verify_reports_no_differences(start_server: StartServer) -> None:
    result = runner.invoke(app, ["verify", str(BUNDLED_DIR / "load_transform_save.yaml"), "--server", start_server("load_transform_save").url])
    assert result.exit_code == 0, result.output
    assert "no differences" in result.output and "2 job(s)" in result.output


def test_verify_finds_every_difference_in_an_altered_server(start_server: StartServer, tmp_path: Path) -> None:
    def change(document: dict[str, Any]) -> None:
        job = document["comfy"]["jobs"][0]
        job["ws"] = [e for e in job["ws"] if e.get("type") != "progress_state"]  # event order
        job["ws"][0]["data"]["timestamp"] = "late"  # a value type
        meta = job["history"]["meta"]["2"]
        meta["display"] = meta.pop("display_node")  # a renamed key

    server = start_server(altered_copy(tmp_path, "basic_save", change))
    report = verify(BUNDLED_DIR / "basic_save.yaml", server.url, timeout=30)
    found = {(d.where, d.recorded, d.live) for d in report.differences}
    assert ("job 0 (job0) WebSocket event order", "10 events", "6 events (see below)") in found
    assert ("job 0 (job0) ws[0] execution_start data.timestamp", "int", "str") in found
    assert ("job 0 (job0) history.meta.2.display_node", "str", "(missing)") in found
    assert ("job 0 (job0) history.meta.2.display", "(missing)", "str") in found
    assert any(w.startswith("GET /history/{{prompt_id}} body.{{prompt_id}}.meta.2.display") for w, _, _ in found)
    order = dict((where, (a, b)) for where, a, b in report.ws_orders)["job 0 (job0)"]
    assert [t for t in order[0] if t != "progress_state"] == order[1]
    assert not any(d.where.startswith("job 1") for d in report.differences)  # the untouched job matches

    result = runner.invoke(app, ["verify", str(BUNDLED_DIR / "basic_save.yaml"), "--server", server.url])
    assert result.exit_code == 1
    for text in ("recorded", "live", "WebSocket event order", "display_node", "progress_state", "difference(s)"):
        assert text in result.output


def test_verify_a_freshly_recorded_cassette(start_server: StartServer, tmp_path: Path) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 32, "batch_size": 2, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "v/inv"}},
    }
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow))
    out = tmp_path / "rec.yaml"
    result = runner.invoke(app, ["record", str(path), "--server", start_server().url, "-o", str(out), "--repeat", "2"])
    assert result.exit_code == 0, result.output
    report = verify(out, start_server().url)
    assert report.ok, report.differences
    assert report.recorded_version == report.comfyui_version == "0.3.64"


def test_queue_operations_and_an_interrupt_land_where_they_were_recorded(start_server: StartServer) -> None:
    # Recorded timing (2x faster) keeps the first job running long enough to be interrupted, as it was, with
    # ~0.8 s per node of margin for verify to react on a loaded machine.
    server = start_server("queue_and_history_ops", timing="recorded", speed=2.0)
    report = verify(BUNDLED_DIR / "queue_and_history_ops.yaml", server.url, timeout=30)
    assert report.differences == []
    assert [a for _, a, _ in report.ws_orders] == [b for _, _, b in report.ws_orders]
    assert "POST /interrupt: sent while the interrupted job ran, at the node the recording interrupted" in report.notes
    assert "POST /queue clear: sent as a delete of verify's own prompts" in report.notes
    assert "POST /history clear: sent as a delete of verify's own prompts" in report.notes


def test_instant_replay_cannot_be_interrupted_and_verify_says_so(start_server: StartServer) -> None:
    report = verify(BUNDLED_DIR / "interrupt.yaml", start_server("interrupt", timing="instant").url, timeout=30)
    assert ("job 0 (job0) status", "interrupted", "success") in {(d.where, d.recorded, d.live) for d in report.differences}


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", str(BUNDLED_DIR / "basic_save.yaml"), "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "is ComfyUI running there?" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["verify", str(tmp_path / "missing.yaml"), "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "no such cassette file" in result.output


def test_compare_names_keys_types_and_lengths() -> None:
    recorded = {"a": 1, "b": {"c": [1, 2]}, "d": None, "e": 1.0}
    live = {"a": "1", "b": {"c": [1]}, "f": True, "e": 1.0}
    assert compare(recorded, live, "x") == [
        Difference("x.a", "int", "str"),
        Difference("x.b.c", "list[2]", "list[1]"),
        Difference("x.d", "null", "(missing)"),
        Difference("x.f", "(missing)", "bool"),
    ]
    assert compare(shape(recorded), shape(recorded), "x") == []
    assert parse_templated('{"number": {{number}}, "id": "{{prompt_id}}", "t": {{job.3.number}}}') == {"number": 0, "id": "{{prompt_id}}", "t": 0}
    assert parse_templated("500 Internal Server Error") is None


def test_verify_against_a_newer_version_names_the_known_differences(start_server: StartServer) -> None:
    # The 0.3.64 cassette against a server that is 0.8.0: create_time appears, and verify says which rows explain it.
    server = start_server("basic_save", comfyui_version="0.8.0")
    result = runner.invoke(app, ["verify", str(BUNDLED_DIR / "basic_save.yaml"), "--server", server.url], terminal_width=200)
    assert result.exit_code == 1 and "create_time" in result.output
    assert "known differences between ComfyUI 0.3.64 and 0.8.0: serve with --comfyui-version 0.8.0" in result.output
    assert "since 0.3.69: extra_data.create_time (ms) in queue items and history" in result.output
    assert "since 0.12.0" not in result.output  # newer than the server


def test_cli_notes_are_whole_lines_on_a_narrow_terminal(start_server: StartServer) -> None:
    # rich wraps at the terminal's width (80 when piped): a note cut mid-sentence read as two unrelated lines.
    import os
    import subprocess
    import sys

    url = start_server("basic_save").url
    result = subprocess.run([sys.executable, "-m", "comfy_cassettes", "verify", str(BUNDLED_DIR / "basic_save.yaml"), "--server", url],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "60"})
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: POST /free {{free_memory: true}} before job {job}: the recording ran it uncached, so the live "
                     "server's node cache was emptied first" for job in (0, 1)]
