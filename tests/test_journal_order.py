"""The journal as a user suite trusts it (issue 18): what the server received, in the order received, and only the
current test's requests, even one a delay fault still held when the test ended. Driven as a user's pytest suite
through the comfy fixture (pytester)."""

from __future__ import annotations

import pytest

# The two modules share one server (the session's comfy fixture): test 1 leaves a GET /view held by a delay fault.
LEFTOVER_SUITE = '''
import threading, time

import httpx

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
}
LEFT = {}


def test_1_leaves_a_delayed_download_behind(comfy):
    image = comfy.run(WORKFLOW)["outputs"]["2"]["images"][0]
    comfy.delay("/view", 5.0)

    def download():
        answer = httpx.get(comfy.url + "/view", params=image, timeout=15)
        LEFT.update(status=answer.status_code, size=len(answer.content), done=time.monotonic())

    LEFT["thread"] = threading.Thread(target=download)
    LEFT["thread"].start()
    deadline = time.monotonic() + 10
    while comfy.state()["in_flight"] == 0:  # the request is on the server, held by the delay, when this test ends
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_2_has_a_journal_of_its_own(comfy):
    started = time.monotonic()
    LEFT["thread"].join(15)
    # The reset before this test ended the old test's delay: the download was answered from that test's state.
    assert LEFT["status"] == 200 and LEFT["size"] > 0
    assert LEFT["done"] - started < 4.5
    assert comfy.journal() == []
    comfy.run(WORKFLOW)
    assert [e["path"] for e in comfy.journal()][0] == "/prompt"
    assert comfy.journal(path="/view") == []
'''

RECEIPT_ORDER_SUITE = '''
import socket, time
from urllib.parse import urlsplit

import httpx


def test_a_delayed_request_is_listed_before_the_retry_that_followed_it(comfy):
    comfy.delay("/history", 2.0, count=1)
    address = urlsplit(comfy.url)
    impatient = socket.create_connection((address.hostname, address.port))
    impatient.sendall(b"GET /history?attempt=1 HTTP/1.1\\r\\nHost: " + address.netloc.encode() + b"\\r\\n\\r\\n")
    deadline = time.monotonic() + 10
    while comfy.state()["in_flight"] == 0:  # the server holds it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    impatient.close()  # the client gives up and retries
    retry = httpx.get(comfy.url + "/history", params={"attempt": "2"}, timeout=5)  # answered at once
    assert retry.status_code == 200
    while len(comfy.journal(path="/history")) < 2:  # the delayed one is listed once the server answered it
        assert time.monotonic() < deadline, comfy.journal()
        time.sleep(0.05)
    entries = comfy.journal(path="/history")
    assert [e["query"]["attempt"] for e in entries] == ["1", "2"]
    assert entries[0]["seq"] < entries[1]["seq"] and entries[0]["t"] < entries[1]["t"]
    assert entries[0]["matched"].startswith("fault") and not entries[1]["matched"]
    assert [e["query"].get("attempt") for e in comfy.journal(method="GET")] == ["1", "2"]
'''


def test_a_request_left_in_flight_by_a_test_stays_out_of_the_next_tests_journal(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_leftover=LEFTOVER_SUITE)
    result = suite.runpytest()
    result.assert_outcomes(passed=2)


def test_the_journal_lists_requests_in_the_order_received(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_receipt_order=RECEIPT_ORDER_SUITE)
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
