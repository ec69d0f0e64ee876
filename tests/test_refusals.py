"""Why a request was refused, for a user whose client only says "400 Bad Request": the journal keeps the body of
every error answer (POST /prompt's error and node_errors), the admin API lists it, and the pytest fixtures show it
when a test fails. Driven through a real server on 127.0.0.1 and a user's suite (pytester)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
import httpx
import pytest

from comfy_cassettes import ReplayControl
from comfy_cassettes.console import QUEUE_LIMIT
from comfy_cassettes.replay.harness.journal import ANSWER_KEPT, ANSWERS_KEPT, Journal
from comfy_cassettes.replay.server import ReplayServer
from helpers import bundled
from serve_process import start_serve

# basic_save's graph with a colour no INT input takes: ComfyUI refuses it with node_errors for node 1.
REFUSED = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": "red"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
}
# How a logged refusal past a kilobyte ends: the 100,000-character class_type's line, cut short.
CUT = re.compile(r"\.\.\. \(100,\d{3} characters\)$")
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
        journal.answer(receipt, [b'{"n": ', str(n).encode(), b"}"])
        journal.add("POST", "/prompt", "", b"{}", 400, receipt=receipt)
    answers = [entry.answer for entry in journal]
    assert answers[:2] == [None, None] and answers[2] == {"n": 2} and answers[-1] == {"n": ANSWERS_KEPT + 1}
    stale = journal.receive()
    journal.clear()
    journal.answer(stale, [b"late"])  # answered after the reset: belongs to the test that is over
    receipt = journal.receive()
    journal.add("GET", "/queue", "", b"", 200, receipt=receipt)
    assert [entry.answer for entry in journal] == [None]


def test_find_lists_the_answer_too(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save")
    with httpx.Client(base_url=server.url, timeout=10) as http, ReplayControl(server.url) as control:
        http.post("/api/prompt", json={"prompt": REFUSED})
        [found] = control.find(path="/prompt", status=400)
    assert found["answer"]["error"]["type"] == "prompt_outputs_failed_validation"


def test_a_failed_journal_assertion_says_why_a_prompt_was_refused(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save")
    with httpx.Client(base_url=server.url, timeout=10) as http, ReplayControl(server.url) as control:
        http.post("/prompt", json={"prompt": REFUSED})
        with pytest.raises(AssertionError) as failed:
            control.assert_requested(method="POST", path="/prompt", status=200)
    assert "POST /prompt -> 400: invalid prompt: Prompt outputs failed validation" in str(failed.value)


# A user's suite whose client, like many, raises a bare "400 Bad Request" and throws ComfyUI's answer away.
BARE_CLIENT_SUITE = '''
import os

import httpx
import pytest

REFUSED = %r


def queue(workflow):
    answer = httpx.post(os.environ["COMFYUI_URL"] + "/prompt", json={"prompt": workflow}, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"HTTP {answer.status_code}")  # the body, and ComfyUI's reason, are gone
    return answer.json()["prompt_id"]


@pytest.mark.comfy_cassette("basic_save")
def test_generate(comfy):
    queue(REFUSED)


@pytest.mark.comfy_cassette("basic_save")
def test_a_refusal_the_test_expects_passes(comfy):
    with pytest.raises(RuntimeError):
        queue(REFUSED)


@pytest.mark.comfy_cassette("basic_save")
def test_a_teardown_failure_names_the_refused_prompt_too(comfy):
    with pytest.raises(RuntimeError):
        queue(REFUSED)
    httpx.get(comfy.url + "/sytem_stats", timeout=30)
''' % (REFUSED,)


def test_a_failed_test_shows_why_its_prompt_was_refused(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_bare=BARE_CLIENT_SUITE)
    result = suite.runpytest()
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*_ test_generate _*",
        "*RuntimeError: HTTP 400",
        "*- comfy-cassettes: error answers -*",
        "the replay server answered 1 request(s) with an error:",
        "POST /prompt -> 400: invalid prompt: Prompt outputs failed validation",
        "    * EmptyImage 1:",
        "      - Failed to convert an input value to a INT value: color, red, invalid literal for int() with base 10: 'red'",
        "    closest recorded prompt: job0 of basic_save.yaml, which differs in:",
        "      node 1 EmptyImage color: sent 'red', recorded 16744448",
    ])
    # The teardown's report (an unmatched request) names the refused prompt as well.
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_a_teardown_failure_names_the_refused_prompt_too*",
        "*unmatched request: GET /sytem_stats (no recording answers it)",
        "and it refused 1 prompt(s):",
        "POST /prompt -> 400: invalid prompt: Prompt outputs failed validation",
        "*closest recorded prompt: job0 of basic_save.yaml, which differs in:",
    ])
    assert result.stdout.str().count("- comfy-cassettes: error answers -") == 1  # only the failed test has the section


def test_check_names_the_refused_prompts(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save")
    with httpx.Client(base_url=server.url, timeout=10) as http, ReplayControl(server.url) as control:
        assert http.post("/prompt", json={"prompt": REFUSED}).status_code == 400
        control.check()  # a refusal alone is no problem: ComfyUI refuses the same prompt
        http.get("/sytem_stats")
        with pytest.raises(AssertionError) as failed:
            control.check()
    message = str(failed.value)
    assert "unmatched request: GET /sytem_stats" in message
    assert "POST /prompt -> 400: invalid prompt: Prompt outputs failed validation" in message
    assert "- Failed to convert an input value to a INT value: color, red" in message


def test_serve_logs_a_refused_prompt_on_one_line_as_comfyui_does() -> None:
    process, url = start_serve(str(bundled("basic_save")), "--timing", "instant")
    try:
        assert httpx.post(url + "/prompt", json={"prompt": REFUSED}, timeout=10).status_code == 400
        assert httpx.post(url + "/prompt", json={"no": "prompt"}, timeout=10).status_code == 400  # ComfyUI says nothing
        assert httpx.post(url + "/prompt", json={"prompt": ACCEPTED}, timeout=10).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    logged = [line for line in output.splitlines() if "invalid prompt" in line]
    # server.py: logging.warning("invalid prompt: {}".format(valid[1])), in serve's (uvicorn's) log format, and
    # the node errors execution.py logs before it.
    assert logged == ["WARNING:  invalid prompt: {'type': 'prompt_outputs_failed_validation', 'message': "
                      "'Prompt outputs failed validation', 'details': '', 'extra_info': {}} (node errors: * EmptyImage 1: "
                      "  - Failed to convert an input value to a INT value: color, red, invalid literal for int() with "
                      "base 10: 'red')"], output


def test_serve_answers_on_while_nobody_reads_its_console() -> None:
    # A harness that pipes serve's output and never reads it (Node's spawn, Ruby's Open3): the pipe's 64 KiB fill,
    # the console's writer thread waits, later lines are dropped, and every request is still answered. Each
    # refusal's line is cut to about a kilobyte; 400 of them are more than the pipe and the queue hold.
    process, url = start_serve(str(bundled("basic_save")), "--timing", "instant")
    read: list[str] = []
    reader = threading.Thread(target=lambda: read.extend(process.stdout or []), daemon=True)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            for n in range(QUEUE_LIMIT + 150):
                assert http.post("/prompt", json={"prompt": {"1": {"class_type": f"{n:05d}" + "x" * 2000}}}).status_code == 400
            assert http.post("/prompt", json={"prompt": ACCEPTED}).status_code == 200
            reader.start()
            # Once the console is read again, the next line says how many were dropped; a huge one is cut short.
            # (What the pipe and queue hold is written in milliseconds once read; 30 s is for a machine under load.)
            deadline = time.monotonic() + 30
            while not any(CUT.search(line) for line in read) and time.monotonic() < deadline:
                assert http.post("/prompt", json={"prompt": {"1": {"class_type": "y" * 100_000}}}).status_code == 400
                time.sleep(0.2)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:  # (a server stuck writing to the pipe does not stop on SIGTERM)
            process.kill()
            process.wait()
        if reader.ident is not None:
            reader.join(5)
        if process.stdout is not None:
            process.stdout.close()
    dropped = [line for line in read if "log lines dropped" in line]
    assert dropped and int(dropped[0].split()[1]) > 0, read[-5:]
    huge = next(line.rstrip() for line in read if "y" * 100 in line)
    assert len(huge) < 1100 and CUT.search(huge), huge[-80:]
    # (the lines written before the pipe filled came in order, the first refusal first)
    assert "00000x" in next(line for line in read if "invalid prompt" in line)
