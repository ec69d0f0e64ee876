"""A run nobody can observe while it runs applies its recorded job's compiled effects (run_script.py) instead of
walking its messages: what it leaves must be what the message-by-message run leaves, value for value. The same
jobs of several bundled cassettes (cached re-runs, a batch, an error, an interrupt, jobs without a client_id,
previews, several save nodes) are run unobserved; with a clock hold on a prompt that never comes (no socket, yet
the clock could hold the run); with a socket that receives the jobs' messages; with only another client's socket
(which hears the queue's status broadcasts), with and without a hold. History, /queue and every output file must
agree, and so must what the other client's socket received; in instant timing static and dynamic, in floor timing,
and for a newer ComfyUI whose outputs carry image metadata and asset ids."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest

from comfy_cassettes.cassette.load import load
from helpers import AnyServer, bundled, connect_ws, control_for, finished, http_client

CASSETTES = ["basic_save", "cached_rerun", "batch_3", "error_execution", "no_client_id", "interrupt", "two_save_nodes",
             "subfolder_prefix", "preview_image", "txt2img", "prompt_options", "load_transform_save"]
CLIENT = "equal-runs"
# What each session has: a clock hold, the jobs' client's socket, another client's socket.
MODES = {"unobserved": (), "held": ("hold",), "watched": ("client", "bystander"), "bystander": ("bystander",),
         "bystander, held": ("bystander", "hold")}


def _submissions() -> list[tuple[dict[str, Any], str | None]]:
    """Every recorded job's graph of CASSETTES, with a client_id and without, twice (the second time the node cache
    holds the first run's results)."""
    graphs = [job.workflow for name in CASSETTES for job in load(bundled(name)).jobs if job.status != "rejected"]
    once = [(graph, client) for graph in graphs for client in (CLIENT, None)]
    return once + once


def _timeless(value: Any, ids: dict[str, str] | None = None) -> Any:
    """``value`` with its times (a message's timestamp, a prompt's create_time: the clock's reading then) set to 0 and
    its asset ids (random UUIDs) numbered in the order they appear."""
    ids = {} if ids is None else ids
    if isinstance(value, dict):
        return {k: 0 if k in ("timestamp", "create_time") else ids.setdefault(v, f"asset-{len(ids)}") if k in ("id", "preview_id") else _timeless(v, ids)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_timeless(v, ids) for v in value]
    return value


def _frames(socket: Any) -> list[Any]:
    """What ``socket`` has received and not read yet (text parsed, timestamps set to 0)."""
    frames = []
    while True:
        try:
            frame = socket.recv(timeout=0.5)
        except TimeoutError:
            return frames
        frames.append(_timeless(json.loads(frame)) if isinstance(frame, str) else frame)


def _session(server: AnyServer, parts: tuple[str, ...]) -> dict[str, Any]:
    """Run every submission in turn, with what ``parts`` says; what the server shows afterwards."""
    sockets = {part: connect_ws(server, CLIENT if part == "client" else part) for part in parts if part != "hold"}
    for socket in sockets.values():
        socket.recv(timeout=5)  # its greeting: the server knows it
    with control_for(server) as control, http_client(server) as http:
        if "hold" in parts:
            control.hold("finished", prompt_id="never-submitted")
        files: dict[str, bytes] = {}
        for number, (graph, client) in enumerate(_submissions()):
            prompt_id = f"00000000-0000-4000-8000-{number:012d}"  # (newer versions take canonical UUIDs only)
            body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id, **({"client_id": client} if client else {})}
            answer = http.post("/prompt", json=body)
            assert answer.status_code == 200, answer.text
            entry = finished(http, prompt_id)
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    where = {k: image[k] for k in ("filename", "subfolder", "type")}
                    view = http.get("/view", params=where)
                    files[json.dumps(where)] = view.content if view.status_code == 200 else bytes(view.status_code)
        # (an error names the server's own output folder: each server has one)
        history = json.loads(http.get("/history").text.replace(str(server.config.output_dir), "<output>"))
        seen = {"history": _timeless(history), "queue": http.get("/queue").json(), "files": files}
    if "bystander" in sockets:
        seen["bystander"] = _frames(sockets["bystander"])
    for socket in sockets.values():
        socket.close()
    return seen


@pytest.mark.parametrize(("options"), [
    {"timing": "instant"}, {"timing": "instant", "dynamic": True},
    {"timing": "floor"},  # the fixtures' default
    {"timing": "instant", "comfyui_version": "0.38", "assets": True},  # outputs enriched: image metadata, asset ids
], ids=["instant-static", "instant-dynamic", "floor-static", "instant-0.38-assets"])
def test_an_unobserved_run_leaves_what_a_watched_one_does(options: dict[str, Any], start_app: Callable[..., AnyServer]) -> None:
    cassettes = [bundled(name) for name in CASSETTES]
    seen = {mode: _session(start_app(*cassettes, **options), parts) for mode, parts in MODES.items()}
    history = seen["unobserved"]["history"]
    assert len(history) == len(_submissions())
    assert {e["status"]["status_str"] for e in history.values()} >= {"success", "error"}
    assert any(re.search(r"_temp_", json.dumps(e["outputs"])) for e in history.values())  # previews' temp files too
    if options.get("assets"):
        assert any('"preview_id"' in json.dumps(e["outputs"]) for e in history.values())
    for mode in list(MODES)[1:]:
        for key in ("history", "queue", "files"):
            assert seen[mode][key] == seen["unobserved"][key], f"{mode}: {key} differs"
    heard = seen["bystander"]["bystander"]
    assert heard == seen["bystander, held"]["bystander"]
    assert sum(frame.get("type") == "status" for frame in heard) >= 2 * len(history)  # each job's take and end
    for entry in history.values():  # the jobs of a failed run keep their error message, the rest their outputs' files
        assert entry["status"]["status_str"] == "error" or all(
            seen["unobserved"]["files"][json.dumps({k: image[k] for k in ("filename", "subfolder", "type")})][:4] == b"\x89PNG"
            for output in entry["outputs"].values() for image in output.get("images", []))


def test_the_fast_path_is_taken(start_app: Callable[..., AnyServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above compares two paths: an unobserved run of a recorded job does apply its script, and
    one with a socket does not."""
    from comfy_cassettes.replay.sim import run

    applied: list[str] = []
    original = run.JobRun._apply
    monkeypatch.setattr(run.JobRun, "_apply", lambda self, script: (applied.append(self.item.prompt_id), original(self, script))[1])
    server = start_app(bundled("basic_save"), timing="instant")
    graph = load(bundled("basic_save")).jobs[0].workflow
    with http_client(server) as http:
        http.post("/prompt", json={"prompt": graph, "prompt_id": "alone", "client_id": CLIENT})
        finished(http, "alone")
        with connect_ws(server, CLIENT) as socket:
            socket.recv(timeout=5)
            http.post("/prompt", json={"prompt": graph, "prompt_id": "watched", "client_id": CLIENT})
            finished(http, "watched")
    assert applied == ["alone"]

