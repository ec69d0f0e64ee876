"""The documentation's generated tables (docs/control.md, docs/versions.md): the admin API's, rendered from the route table and the models, and the ComfyUI
versions' differences, rendered from comfy/differences.py (a test keeps the pages equal to them).

``python -m comfy_cassettes.contract.readme [FILE...]`` (default: every page under docs/) rewrites every ``<!-- contract:NAME -->`` ...
``<!-- /contract:NAME -->`` block of the file in place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, get_origin

from pydantic import BaseModel

from ..doc_blocks import DocBlocks

from ..comfy.differences import CONFIRMED, DIFFERENCES
from . import bodies as m
from .routes import ADMIN_ROUTES


def _keys(model: type[BaseModel], skip: tuple[str, ...] = ("kind",)) -> str:
    parts = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        parts.append(f"`{name}`" if info.is_required() else f"`{name}`={_default(info.default)}")
    return ", ".join(parts)


def _default(value: Any) -> str:
    return {None: "null", True: "true", False: "false"}.get(value, repr(value).replace("'", '"')) if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:g}"


def routes_table() -> str:
    """Every admin route: method and path, what it takes, what it answers, the ReplayControl method."""
    rows = ["| admin route (under `/__cassettes__`) | takes | answers | Python (`ReplayControl`) |", "|---|---|---|---|"]
    for route in ADMIN_ROUTES:
        if route.body is m.JournalPattern:
            takes = "a journal pattern, flat or as {`pattern`} (below)"
        elif route.body is m.JournalExpectation:
            takes = "a journal pattern + `count`/`min`/`max` (below)"
        elif isinstance(route.body, type) and issubclass(route.body, BaseModel) and route.body is not m.NoBody:
            takes = "{" + _keys(route.body) + "}"
        elif route.body is m.FaultRules:
            takes = "a fault rule or a list (below)"
        elif route.query is not None and route.query.model_fields:
            takes = "?" + "&".join(f"{name}=" for name in route.query.model_fields)
        else:
            takes = ""
        answers = ", ".join(f"{status} {_answer_name(model)}" for status, model in route.answers.items() if status != 400)
        python = ", ".join(f"`{name}()`" for name in route.control)
        rows.append(f"| `{route.method} {route.path}` — {route.summary} | {takes} | {answers} | {python} |")
    return "\n".join(rows)


def _answer_name(model: Any) -> str:
    """A body model's class name; a plain JSON shape such as ``dict[str, Any]`` is "JSON" (on Python 3.10 a
    generic alias still passes ``isinstance(model, type)``, hence the origin test)."""
    return model.__name__ if isinstance(model, type) and get_origin(model) is None else "JSON"


def faults_table() -> str:
    """Each fault kind: its keys with their defaults, and what it does."""
    rows = ["| `kind` | keys (`=default`; others required) | effect |", "|---|---|---|"]
    for kind, model in m.FAULT_MODELS.items():
        rows.append(f"| `{kind}` | {_keys(model)} | {(model.__doc__ or '').strip().replace('``', '`')} |")
    return "\n".join(rows)


def keys_table(model: type[BaseModel]) -> str:
    """One row per key of a body: name, default, meaning."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        default = "required" if info.is_required() else _default(info.default)
        rows.append(f"| `{name}` | {default} | {info.description or ''} |")
    return "\n".join(rows)


def _shown(value: Any) -> str:
    if value is True:
        return ""
    if isinstance(value, dict):
        return " `" + ", ".join(value) + "`"
    if isinstance(value, tuple):
        return " " + ", ".join(f"{name} {version}" for name, version in value)
    return f" `{value}`"


def versions_table() -> str:
    """The versions confirmed as a whole, then every difference with the release it appeared in and its source."""
    rows = ["| confirmed version | by |", "|---|---|"]
    rows += [f"| **{version}** | {how} |" for version, how in CONFIRMED.items()]
    rows += ["", "| since | what a client sees | profile field | source |", "|---|---|---|---|"]
    rows += [f"| {d.since} | {d.what} | `{d.field}`{_shown(d.value)} | {d.source} |" for d in DIFFERENCES]
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "comfyui-versions": versions_table,
    "admin-routes": routes_table,
    "fault-rules": faults_table,
    "journal-pattern": lambda: keys_table(m.JournalExpectation),
    "clock-bodies": lambda: "\n\n".join(f"`{name}`:\n\n{keys_table(model)}" for name, model in
                                        (("POST /clock/hold", m.Hold), ("POST /clock/wait", m.Wait), ("POST /clock/advance", m.Advance))),
}
_BLOCKS = DocBlocks("contract", BLOCKS)
render = _BLOCKS.render


if __name__ == "__main__":
    sys.exit(_BLOCKS.rewrite(sys.argv[1:]))
