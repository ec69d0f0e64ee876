"""Tests for protocol.request_json's shortcut: every body is parsed, or refused, exactly as json.loads of its text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from comfy_cassettes.comfy.protocol import request_json

BODIES = [
    b'{"a": 1}', b' {"a": 1}', b'{"a": 1} ', b'{"a": 1}\n', b'{"a": 1}}', b'{"a": 1}{"b": 2}', b'{"a": 1} {}', b"{}",
    b'{"a": NaN, "b": -Infinity, "c": 1e400}', b'{"a": "\\ud800"}', b"{", b"}", b'{"a": [1, 2, {"b": null}]}', b'{"a": 1,}',
    b'{"a" 1}', b"\xef\xbb\xbf{}", b'{"a": 1, "a": 2}', b'{"x": 12345678901234567890123}', b'{"a": tru}', b'{"a": "x\x01"}',
    b"[1]", b'"text"', b"", b"  ", b'{"a": "}"}', b'{"\\u00e9": "caf\xc3\xa9"}', b"{" * 3000 + b"}" * 3000,
]


def _outcome(parse: Callable[[bytes], Any], body: bytes) -> tuple[str, str]:
    try:
        return "value", repr(parse(body))
    except Exception as error:  # noqa: BLE001 - the very exception is what is compared
        return type(error).__name__, str(error)


@pytest.mark.parametrize("body", BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_request_json_is_json_loads_of_the_text(body: bytes) -> None:
    assert _outcome(request_json, body) == _outcome(lambda raw: json.loads(raw.decode("utf-8")), body)
