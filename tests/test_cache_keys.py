"""The node cache keys values as ComfyUI's does: comfy_execution/caching.py's to_hashable keeps ints, floats and
bools as they are, so 1, 1.0 and True (equal in Python, with equal hashes) are one key. Validation converts INT,
FLOAT, STRING and BOOLEAN inputs before (execution.py validate_inputs), so the difference shows where it converts
nothing: an input of type `*` (PreviewAny's `source`), an input the class does not declare, values nested in a
list or an object. A re-run that ComfyUI serves from its cache is served from the replay's too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from comfy_cassettes.replay.server import ReplayServer
from helpers import finished


def cached_nodes(http: httpx.Client, workflow: dict[str, Any]) -> list[str]:
    """Run ``workflow``; the nodes its execution_cached message named (from its history)."""
    answer = http.post("/prompt", json={"prompt": workflow})
    assert answer.status_code == 200, answer.text
    entry = finished(http, answer.json()["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    return sorted(next(data["nodes"] for kind, data in entry["status"]["messages"] if kind == "execution_cached"))


def preview_any(source: Any) -> dict[str, Any]:
    return {"1": {"class_type": "PreviewAny", "inputs": {"source": source}}}


def save_with_extra(extra: Any) -> dict[str, Any]:
    """EmptyImage with an input its class does not declare (kept in the prompt, part of ComfyUI's key)."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0, "note": extra}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "keys"}}}


@pytest.mark.parametrize(("make", "first", "equal", "other", "nodes"), [
    (preview_any, 1, [1.0, True], 2, ["1"]),
    (preview_any, 0.0, [0, False, -0.0], 0.5, ["1"]),
    (preview_any, {"a": [1, True]}, [{"a": [1.0, 1]}], {"a": [1, 2]}, ["1"]),
    (save_with_extra, 1, [1.0, True], "1", ["1", "2"]),
], ids=["any-input", "zeros", "nested", "undeclared-input"])
def test_values_python_finds_equal_are_one_cache_key(start_server: Callable[..., ReplayServer], make: Callable[[Any], dict[str, Any]],
                                                     first: Any, equal: list[Any], other: Any, nodes: list[str]) -> None:
    server = start_server(timing="instant")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert cached_nodes(http, make(first)) == []
        for value in equal:
            assert cached_nodes(http, make(value)) == nodes, value
        assert cached_nodes(http, make(other)) == []  # a value Python tells apart runs again
