"""The reference of the Python test API (docs/reference/tables.md), rendered from the code so it cannot drift: every method of
``ReplayControl`` and of the pytest ``comfy`` handle (signature, what it does and returns, the admin route it
calls) and the keys of the answers they return (the contract's models).

``python -m comfy_cassettes.api_reference [FILE...]`` (default: every page under docs/) rewrites every ``<!-- api:NAME -->`` ... ``<!-- /api:NAME -->``
block of the file in place; a test keeps the pages equal to them.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .doc_blocks import DocBlocks

from .contract import bodies as m
from .control import ReplayControl
from .pytest_servers import ComfyHandle

# The answers whose keys the methods hand back (whole, or the entries of a list), in the order the reference shows them.
ANSWERS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("a journal entry (`journal()`, `find()`)", m.JournalEntry),
    ("`state()`", m.State),
    ("`problems()`", m.Problems),
    ("an unmatched request (`problems()[\"unmatched\"]`)", m.Unmatched),
    ("an active fault rule (`add_fault()`, `fail()`, ... `faults()`)", m.ActiveFault),
    ("`hold()`, `clock()`", m.ClockState),
    ("`wait_held()`, each of `clock()[\"held\"]`", m.HeldJob),
    ("`advance()`", m.Advanced),
)


def _signature(function: Callable[..., Any], name: str) -> str:
    params = []
    shown_star = False
    for param in list(inspect.signature(function).parameters.values())[1:]:  # without self
        if param.kind is param.KEYWORD_ONLY and not shown_star:
            params.append("*")
            shown_star = True
        if param.kind is param.VAR_POSITIONAL:
            params.append(f"*{param.name}")
            shown_star = True
        elif param.kind is param.VAR_KEYWORD:
            params.append(f"**{param.name}")
        elif param.default is param.empty:
            params.append(param.name)
        else:
            params.append(f"{param.name}={param.default!r}")
    returns = inspect.signature(function).return_annotation
    shown = "None" if returns in (None, "None") else str(returns)
    return f"`{name}({', '.join(params)}) -> {shown}`"


def _summary(member: Any) -> str:
    """The docstring's first paragraph on one line, reStructuredText literals as Markdown."""
    doc = inspect.getdoc(member) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.replace("``", "`").replace("|", "\\|").replace(":meth:", "").replace(":class:", "")


def _route(member: Any) -> str:
    found = getattr(member, "__admin_route__", None)
    return f"`{found[0].label}`" if found else ""


def methods_table(cls: type, *, own_only: bool = False) -> str:
    """One row per public method or property of ``cls`` (only those it defines itself with ``own_only``)."""
    rows = ["| method | what it does and returns | admin route |", "|---|---|---|"]
    names = [n for n in cls.__dict__ if not n.startswith("_")] if own_only else [n for n in dir(cls) if not n.startswith("_")]
    order = {n: i for i, n in enumerate([*ReplayControl.__dict__, *cls.__dict__])}
    for name in sorted(names, key=lambda n: order.get(n, len(order))):
        member = inspect.getattr_static(cls, name)
        if isinstance(member, property):
            returns = inspect.signature(member.fget).return_annotation if member.fget else ""
            rows.append(f"| `{name}` (a `{returns}`) | {_summary(member)} |  |")
        elif callable(member):
            rows.append(f"| {_signature(member, name)} | {_summary(member)} | {_route(member)} |")
    return "\n".join(rows)


def answer_keys() -> str:
    """The keys of each answer a method returns, with their meaning from the contract's models."""
    out = []
    for where, model in ANSWERS:
        rows = [f"{where}:", "", "| key | meaning |", "|---|---|"]
        for name, info in model.model_fields.items():
            rows.append(f"| `{info.alias or name}` | {(info.description or '').replace('`', '`')} |")
        out.append("\n".join(rows))
    return "\n\n".join(out)


BLOCKS: dict[str, Callable[[], str]] = {
    "control-methods": lambda: methods_table(ReplayControl),
    "handle-methods": lambda: methods_table(ComfyHandle, own_only=True),
    "answer-keys": answer_keys,
}
_BLOCKS = DocBlocks("api", BLOCKS)
render = _BLOCKS.render


if __name__ == "__main__":
    sys.exit(_BLOCKS.rewrite(sys.argv[1:]))
