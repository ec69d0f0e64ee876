"""POST /prompt with an ``extra_data`` that is no object, as each version's server.py post_prompt handles it
(comfy/extra_data.py): 0.8.0 answers 500 (more_sessions_0.8/prompt_edge, a list with and without client_id);
0.3.64 queues a list as it is when the body has no client_id, lists it so, and its run fails where SaveImage reads
extra_pnginfo from it (execution.py get_input_data: 'list' object has no attribute 'get')."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from comfy_cassettes.replay.server import ReplayServer
from helpers import finished

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 9}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "el"}}}


def post(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/prompt", json={"prompt": GRAPH, **body})


def test_0_3_64_queues_a_list_and_its_save_fails_reading_it(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server(timing="instant")  # the default cassette: 0.3.64
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert post(http, client_id="c1", extra_data=["a"]).status_code == 500  # extra_data["client_id"] = ...
        answer = post(http, extra_data=["a"])
        assert answer.status_code == 200, answer.text
        prompt_id = answer.json()["prompt_id"]
        entry = finished(http, prompt_id)
        assert entry["prompt"][3] == ["a"] and entry["outputs"] == {}
        assert entry["status"]["status_str"] == "error"
        kinds = [kind for kind, _ in entry["status"]["messages"]]
        assert kinds == ["execution_start", "execution_cached", "execution_error"]
        error = entry["status"]["messages"][-1][1]
        assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "SaveImage", ["1"])
        assert (error["exception_type"], error["exception_message"]) == ("AttributeError", "'list' object has no attribute 'get'")
        assert error["current_inputs"] == {}  # raised while gathering them
        assert "extra_data.get('extra_pnginfo', None)" in error["traceback"][-1]

        # Once the graph has run, SaveImage comes from the cache and reads nothing: the same list then succeeds.
        assert finished(http, post(http, extra_data={}).json()["prompt_id"])["status"]["status_str"] == "success"
        again = finished(http, post(http, extra_data=["a"]).json()["prompt_id"])
        assert again["status"]["status_str"] == "success" and again["prompt"][3] == ["a"]


@pytest.mark.parametrize("extra_data", [["a"], [], "s", None, 5], ids=["list", "empty-list", "string", "null", "number"])
def test_0_8_0_answers_500_to_an_extra_data_that_is_no_object(start_server: Callable[..., ReplayServer], extra_data: Any) -> None:
    server = start_server(comfyui_version="0.8.0", timing="instant")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert post(http, extra_data=extra_data).status_code == 500
        assert post(http, client_id="c1", extra_data=extra_data).status_code == 500
        assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}
        assert post(http, extra_data={}).status_code == 200
