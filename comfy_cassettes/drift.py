"""What differs between a recording and a live run of it: the report ``verify`` builds and prints.

Compared by *structure*: JSON keys, value types, list lengths, status codes, content types, and each job's
WebSocket event order. Values are not compared (ids, timestamps and pixels legitimately change).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .comfy.differences import DIFFERENCES
from .comfy.events import WsEvent
from .comfy.profiles import OLDEST, parts
from .cassette.model import Cassette, Interaction, Job
from .record.session import HttpExchange
from .cassette.templating import INT_NAMES, PLACEHOLDER, parse_templated


@dataclass(frozen=True)
class Difference:
    """One place where the live server's answer is shaped differently from the recording."""

    where: str
    recorded: str
    live: str


@dataclass
class VerifyReport:
    """The outcome of one ``verify`` run."""

    cassette: Path
    server: str
    comfyui_version: str | None = None
    recorded_version: str | None = None
    jobs: int = 0
    requests: int = 0
    differences: list[Difference] = field(default_factory=list)
    ws_orders: list[tuple[str, list[str], list[str]]] = field(default_factory=list)  # (job, recorded, live)
    notes: list[str] = field(default_factory=list)  # requests not re-run, or re-run differently

    @property
    def ok(self) -> bool:
        return not self.differences


# ---------------------------------------------------------------- structure


def shape(value: Any) -> Any:
    """The structure of a JSON value: same keys and nesting, every scalar replaced by its type name."""
    if isinstance(value, dict):
        return {str(k): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return _type_name(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str) and (whole := PLACEHOLDER.fullmatch(value)) and INT_NAMES.match(whole.group(1)):
        return "int"  # "{{now_ms}}" inside a templated structure stands for an integer
    return {int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "object{" + ", ".join(list(map(str, value))[:6]) + (", …" if len(value) > 6 else "") + "}"
    if isinstance(value, list):
        return f"list[{len(value)}]"
    return _type_name(value)


def compare(recorded: Any, live: Any, where: str) -> list[Difference]:
    """Every key, type and length difference between two parsed JSON values."""
    if isinstance(recorded, dict) and isinstance(live, dict):
        out = []
        for key in recorded:
            if key not in live:
                out.append(Difference(f"{where}.{key}", _describe(recorded[key]), "(missing)"))
            else:
                out.extend(compare(recorded[key], live[key], f"{where}.{key}"))
        out.extend(Difference(f"{where}.{key}", "(missing)", _describe(live[key])) for key in live if key not in recorded)
        return out
    if isinstance(recorded, list) and isinstance(live, list):
        out = [] if len(recorded) == len(live) else [Difference(where, f"list[{len(recorded)}]", f"list[{len(live)}]")]
        for i, (a, b) in enumerate(zip(recorded, live)):
            out.extend(compare(a, b, f"{where}[{i}]"))
        return out
    if _describe(recorded) != _describe(live):
        return [Difference(where, _describe(recorded), _describe(live))]
    return []


# ---------------------------------------------------------------- recording against live


def compare_jobs(recorded: Cassette, live: Cassette, pairs: list[tuple[int, HttpExchange]], live_jobs: dict[int, int], report: VerifyReport) -> None:
    report.jobs = len(live.jobs)
    for k, exchange in pairs:
        old = recorded.jobs[k]
        where = f"job {k} ({old.name or k})"
        if id(exchange) not in live_jobs:
            report.differences.append(Difference(f"{where} POST /prompt", f"job (HTTP {old.response_status})", f"no job (HTTP {exchange.status})"))
            continue
        new = live.jobs[live_jobs[id(exchange)]]
        if old.status != new.status:
            report.differences.append(Difference(f"{where} status", old.status, new.status))
        if old.response_status != new.response_status:
            report.differences.append(Difference(f"{where} POST /prompt status", str(old.response_status), str(new.response_status)))
        report.differences.extend(compare(parse_templated(old.response_body), parse_templated(new.response_body), f"{where} POST /prompt body"))
        if old.history is not None:  # a recording that never asked /history says nothing about it
            report.differences.extend(compare(old.history, new.history or {}, f"{where} history"))
        if old.ws or old.status not in ("rejected", "unfinished"):
            _compare_ws(where, old, new, report)


def _event_name(event: WsEvent) -> str:
    if event.binary is not None:
        return f"<binary type {event.binary.event_type}>"
    return str(event.type)


def _compare_ws(where: str, old: Job, new: Job, report: VerifyReport) -> None:
    a, b = [_event_name(e) for e in old.ws], [_event_name(e) for e in new.ws]
    report.ws_orders.append((where, a, b))
    if a != b:
        report.differences.append(Difference(f"{where} WebSocket event order", f"{len(a)} events", f"{len(b)} events (see below)"))
    for tag, i1, i2, j1, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            continue
        for offset in range(i2 - i1):
            x, y = old.ws[i1 + offset], new.ws[j1 + offset]
            label = f"{where} ws[{i1 + offset}] {_event_name(x)}"
            if x.binary is not None and y.binary is not None:
                report.differences.extend(compare(x.binary.metadata, y.binary.metadata, f"{label} metadata"))
            else:
                report.differences.extend(compare(x.data, y.data, f"{label} data"))


def compare_interaction(old: Interaction, new: Interaction, report: VerifyReport) -> None:
    where = f"{old.method} {_short(old.uri)}"
    if old.status != new.status:
        report.differences.append(Difference(f"{where} status", str(old.status), str(new.status)))
        return
    type_a, type_b = _content_type(old), _content_type(new)
    if type_a != type_b:
        report.differences.append(Difference(f"{where} Content-Type", type_a or "(none)", type_b or "(none)"))
    inline_a, inline_b = old.body_file is None, new.body_file is None
    if inline_a and inline_b:
        json_a, json_b = parse_templated(str(old.body)), parse_templated(str(new.body))
        if json_a is not None or json_b is not None:
            report.differences.extend(compare(json_a, json_b, f"{where} body"))
    elif inline_a != inline_b and type_a == "application/json":
        report.differences.append(Difference(f"{where} body", "inline" if inline_a else "blob", "inline" if inline_b else "blob"))


def _content_type(item: Interaction) -> str:
    return (item.header("Content-Type") or "").split(";")[0].strip()


def _short(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.path + ("?" + parts.query if parts.query else "")


def version_rows(recorded: str | None, live: str | None) -> list[str]:
    """The known differences between the cassette's version and the server's (differences.py), which may
    explain what verify found: serve the cassette with ``--comfyui-version`` of the server to get them."""
    try:
        low, high = sorted((parts(recorded or OLDEST), parts(live or OLDEST)))
    except ValueError:
        return []
    rows = [d for d in DIFFERENCES if low < parts(d.since) <= high]
    if not rows:
        return []
    head = (f"known differences between ComfyUI {recorded or '?'} and {live}: serve with --comfyui-version {live} "
            f"to replay as the server")
    return [head] + [f"  since {d.since}: {d.what}" for d in rows]


def render_report(report: VerifyReport) -> None:
    """Print the report: differences side by side, then WebSocket orders that differ, aligned."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]verify[/bold] {report.cassette} (recorded on ComfyUI {report.recorded_version or '?'}) against "
                  f"{report.server} (ComfyUI {report.comfyui_version or '?'}): {report.jobs} job(s), {report.requests} request(s)",
                  soft_wrap=True)
    if report.differences:
        table = Table("where", "recorded", "live", title=f"{len(report.differences)} difference(s)", show_lines=False)
        for d in report.differences:
            table.add_row(d.where, d.recorded, d.live)
        console.print(table)
    for where, a, b in report.ws_orders:
        if a == b:
            continue
        table = Table("", "recorded", "live", title=f"{where}: WebSocket event order")
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            left, right = a[i1:i2], b[j1:j2]
            mark = {"equal": " ", "replace": "~", "delete": "-", "insert": "+"}[tag]
            for n in range(max(len(left), len(right))):
                table.add_row(mark, left[n] if n < len(left) else "", right[n] if n < len(right) else "")
        console.print(table)
    for note in sorted(set(report.notes)):
        console.print(f"[dim]note: {note}[/dim]", soft_wrap=True)
    for line in version_rows(report.recorded_version, report.comfyui_version) if report.differences else []:
        console.print(line, markup=False, soft_wrap=True)
    console.print("[green]no differences[/green]" if report.ok else f"[red]{len(report.differences)} difference(s)[/red]")


