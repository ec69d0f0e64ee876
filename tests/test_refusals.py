"""Why a request was refused, for a user whose client only says "400 Bad Request": the journal keeps the body of
every error answer (POST /prompt's error and node_errors), the admin API lists it, and the pytest fixtures show it
when a test fails. Driven through a real server on 127.0.0.1 and a user's suite (pytester)."""

from __future__ import annotations

from collections.abc import Callable
import httpx

from comfy_cassettes import ReplayControl
from comfy_cassettes.replay.harness.journal import ANSWER_KEPT, ANSWERS_KEPT, Journal
from comfy_cassettes.replay.server import ReplayServer

# basic_save's graph with a colour no INT input takes: ComfyUI refuses it with node_errors for node 1.
REFUSED = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": "red"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
}
ACCEPTED = {**REFUSED, "1": {**REFUSED["1"], "inputs": {**REFUSED["1"]["inputs"], "color": 0}}}


def test_the_journal_keeps_the_body_of_each_error_answer(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save")
    with httpx.Client(base_url=server.url, timeout=10) as http, ReplayControl(server.url) as control:
        refused = http.post("/prompt", json={"prompt": REFUSED})
        assert refused.status_code == 400
        assert http.post("/prompt", json={"prompt": ACCEPTED}).status_code == 200
        assert http.get("/no/such/route").status_code == 404
        control.fail("/queue", 503, body="busy, come back later")
        assert http.get("/queue").text == "busy, come back later"
        control.fail("/system_stats", 502, body="x" * (ANSWER_KEPT + 10))
        assert http.get("/system_stats").status_code == 502
        control.fail("/history", 500, body='{"truncated": ' + " " * ANSWER_KEPT + "1}")
        assert http.get("/history").status_code == 500

        entries = control.journal()
    answers = {(e["method"], e["path"], e["status"]): e["answer"] for e in entries}
    # ComfyUI's refusal, decoded: what the client saw, node_errors and all.
    assert answers["POST", "/prompt", 400] == refused.json()
    assert refused.json()["node_errors"]["1"]["errors"][0]["extra_info"]["received_value"] == "red"
    assert answers["POST", "/prompt", 200] is None  # an answer that is no error is not kept
    assert answers["GET", "/no/such/route", 404] == ""  # aiohttp's empty 404
    assert answers["GET", "/queue", 503] == "busy, come back later"
    assert answers["GET", "/system_stats", 502] == "x" * ANSWER_KEPT + f"... <{ANSWER_KEPT + 10} bytes in all>"
    assert str(answers["GET", "/history", 500]).endswith(f"... <{ANSWER_KEPT + 16} bytes in all>")  # cut: text, not JSON


def test_a_reset_forgets_the_answers_and_only_the_latest_are_kept() -> None:
    journal = Journal()
    for n in range(ANSWERS_KEPT + 2):
        receipt = journal.receive()
        journal.answer(receipt, [b'{"n": ', str(n).encode(), b"}"], 8)
        journal.add("POST", "/prompt", "", b"{}", 400, receipt=receipt)
    answers = [entry.answer for entry in journal]
    assert answers[:2] == [None, None] and answers[2] == {"n": 2} and answers[-1] == {"n": ANSWERS_KEPT + 1}
    stale = journal.receive()
    journal.clear()
    journal.answer(stale, [b"late"], 4)  # answered after the reset: belongs to the test that is over
    receipt = journal.receive()
    journal.add("GET", "/queue", "", b"", 200, receipt=receipt)
    assert [entry.answer for entry in journal] == [None]


def test_find_lists_the_answer_too(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save")
    with httpx.Client(base_url=server.url, timeout=10) as http, ReplayControl(server.url) as control:
        http.post("/api/prompt", json={"prompt": REFUSED})
        [found] = control.find(path="/prompt", status=400)
    assert found["answer"]["error"]["type"] == "prompt_outputs_failed_validation"
