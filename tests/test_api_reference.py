"""The docs' Python API reference is the code's: every method of ReplayControl and of the pytest handle, with its
signature, and the keys of what they return (comfy_cassettes/api_reference.py renders them)."""

from __future__ import annotations

import inspect
from pathlib import Path

from comfy_cassettes.api_reference import render
from comfy_cassettes.control import ReplayControl

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "tables.md"


def test_the_reference_is_current() -> None:
    text = REFERENCE.read_text()
    assert "<!-- api:control-methods -->" in text and "<!-- api:answer-keys -->" in text
    assert text == render(text), "the API reference is stale: run `python -m comfy_cassettes.api_reference`"


def test_every_public_method_is_in_the_reference() -> None:
    text = REFERENCE.read_text()
    for name, member in inspect.getmembers(ReplayControl, inspect.isfunction):
        if not name.startswith("_"):
            assert f"| `{name}(" in text, name
    for field in ("seq", "method", "path", "query", "body", "status", "matched", "client"):
        assert f"| `{field}` |" in text  # the journal entry's keys
