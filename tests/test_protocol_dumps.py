"""protocol.dumps writes what json.dumps writes (ComfyUI's aiohttp answers), and fails where it fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from comfy_cassettes.comfy.protocol import KeptEncoder, dumps
from helpers import http_entries, response_json

VALUES: list[Any] = [
    {}, [], "", "plain", 'quote " and \\ and \n', "\u00e9\u4e2d\U0001f600", 0, -1, 10**30, 1.0, 64.7, 1e-320,
    float("nan"), float("inf"), -float("inf"), True, False, None,
    {"prompt_id": "e3e70682-c209-4cac-a29f-6fbed82c07cd", "number": 5, "node_errors": {}},
    {1: "int key", 2.5: "float key", None: "null key", False: "bool key"}, [[[]], {"a": [{"b": None}]}],
    {"b": {"z": 1, "a": [2, {"y": 3, "c": 4}]}, "a": None},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_same_text_as_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value)
    assert _outcome(KeptEncoder(sort_keys=True).dumps, value) == _outcome(lambda v: json.dumps(v, sort_keys=True), value)


def _outcome(encode: Callable[[Any], str], value: Any) -> str:
    """The text, or the failure (keys of mixed types cannot be sorted)."""
    try:
        return encode(value)
    except TypeError as error:
        return f"TypeError: {error}"


def test_same_text_for_recorded_history_answers() -> None:
    bodies = [response_json(e) for e in http_entries("txt2img") if "/history" in e["request"]["url"]]
    assert bodies
    for body in bodies:
        assert dumps(body) == json.dumps(body)


def test_fails_as_json_dumps_fails_and_recovers() -> None:
    circular: list[Any] = []
    circular.append(circular)
    for bad, kind, message in (
        ({"ok": [1], "bad": circular}, ValueError, "Circular reference detected"),
        ({"ok": [1], "bad": object()}, TypeError, "Object of type object is not JSON serializable"),
        ({"ok": [1], "bad": {(1, 2): 3}}, TypeError, "keys must be str, int, float, bool or None, not tuple"),
        ({"ok": [1], "bad": [{1, 2}]}, TypeError, "Object of type set is not JSON serializable"),
    ):
        with pytest.raises(kind, match=message):
            json.dumps(bad)
        with pytest.raises(kind, match=message):
            dumps(bad)
        # The failure leaves nothing behind: the same container, mended, encodes (no false circular reference).
        del bad["bad"]
        assert dumps(bad) == json.dumps(bad) == '{"ok": [1]}'
