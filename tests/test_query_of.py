"""answers.query_of reads a query as aiohttp's MultiDict answers it (the first value of a repeated key), parsed as
Starlette parses it; its own split of a query with nothing to unquote must agree with parse_qsl everywhere."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qsl

from comfy_cassettes.replay.http.answers import query_of


class _Connection:
    def __init__(self, query: bytes) -> None:
        self.scope: dict[str, Any] = {"query_string": query}


def test_query_of_agrees_with_parse_qsl() -> None:
    alphabet = "ab=&;%+ é\x00/".encode() + b"\xff"
    rng = random.Random(20)
    for _ in range(20_000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        expected: dict[str, str] = {}
        for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            expected.setdefault(key, value)
        got = query_of(_Connection(raw))  # type: ignore[arg-type]
        assert list(got.items()) == list(expected.items()), raw
