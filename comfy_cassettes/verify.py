"""``comfy-cassettes verify``: re-run a cassette against a live server and report every structural difference.

Drift detection for when ComfyUI updates. The cassette's requests are sent again in their recorded order (its
jobs submitted and followed over ``/ws``, the GETs re-asked with the live job's ids and file names), the live
answers go through the same templater as a recording, and the two are compared by *structure*: JSON keys,
value types, list lengths, status codes, content types, and each job's WebSocket event order. Values are not
compared (ids, timestamps and pixels legitimately change).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cassette import BlobStore, Cassette, Job, WsEvent, from_dict, load
from .record.build import build_cassette
from .record.live import JobRun, LiveSocket, RecordingClient
from .record.session import HttpExchange
from .templating import INT_NAMES, PLACEHOLDER, render_text, url_escape

_PROMPT_PATHS = ("/prompt", "/api/prompt")
_UPLOAD_PATHS = ("/upload/image", "/upload/mask", "/api/upload/image", "/api/upload/mask")


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
    skipped: list[str] = field(default_factory=list)

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


def parse_templated(text: str) -> Any:
    """A templated JSON text parsed, integer placeholders read as 0; None when it is not JSON."""
    filled = PLACEHOLDER.sub(lambda m: "0" if INT_NAMES.match(m.group(1)) else m.group(0), text)
    try:
        return json.loads(filled)
    except ValueError:
        return None


# ---------------------------------------------------------------- driving the server


class _Driver:
    """Sends a cassette's requests again, in order, binding each job's placeholders to the live values."""

    def __init__(self, cassette: Cassette, client: RecordingClient, report: VerifyReport) -> None:
        self.cassette = cassette
        self.client = client
        self.report = report
        self.socket: LiveSocket | None = None
        self.bindings: dict[int, dict[str, Any]] = {}
        self.pairs: list[tuple[int, HttpExchange]] = []

    def _bindings(self, job: int | None) -> dict[str, Any]:
        assert self.socket is not None
        values: dict[str, Any] = {"client_id": self.socket.record.client_id or ""}
        for k, b in self.bindings.items():
            values.update({f"job.{k}.prompt_id": b.get("prompt_id", ""), f"job.{k}.number": b.get("number", 0)})
        values.update(self.bindings.get(job, {}) if job is not None else {})
        return values

    async def run(self) -> None:
        self.socket = await self.client.open_socket()
        if any(e.binary is not None and e.binary.event_type == 4 for job in self.cassette.jobs for e in job.ws):
            # The recording client announced preview metadata (binary frames of type 4): do the same.
            await self.socket.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        for i, item in enumerate(self.cassette.interactions):
            await self._one(i, item)

    async def _one(self, i: int, item: dict[str, Any]) -> None:
        request = item["request"]
        method, uri, job = request["method"].upper(), request["uri"], item.get("job")
        parts = urlsplit(uri)
        values = self._bindings(job)
        if method == "POST" and parts.path.rstrip("/") in _PROMPT_PATHS:
            await self._prompt(i, job, request, values)
        elif method == "GET":
            path = render_text(parts.path, values, url_escape) + ("?" + render_text(parts.query, values, url_escape) if parts.query else "")
            if "{{" in path:
                self.report.skipped.append(f"{method} {parts.path}: names a job that did not run live")
                return
            self.pairs.append((i, await self.client.request("GET", path)))
        elif method == "POST" and parts.path.rstrip("/") in _UPLOAD_PATHS:
            body = request.get("body") or b""
            content = body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogateescape")
            headers = {k: v[0] for k, v in (request.get("headers") or {}).items() if k.lower() == "content-type" and v}
            self.pairs.append((i, await self.client.request("POST", parts.path, content=content, headers=headers)))
        else:
            self.report.skipped.append(f"{method} {parts.path}: changes server state, not re-run")

    async def _prompt(self, i: int, job: int | None, request: dict[str, Any], values: dict[str, Any]) -> None:
        raw = request.get("body") or ""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        fresh = {**values, "prompt_id": str(uuid.uuid4())}
        text = render_text(text, fresh, lambda s: json.dumps(s)[1:-1])
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
            self.pairs.append((i, await self.client.request("POST", "/prompt", content=text.encode())))
            return
        run: JobRun = await self.client.run_job(body, self.socket)
        self.pairs.append((i, run.response))
        answer = run.response.response_json()
        if run.prompt_id is None or job is None:
            return
        bound: dict[str, Any] = {"prompt_id": run.prompt_id, "number": answer.get("number", 0) if isinstance(answer, dict) else 0}
        counters: dict[str, int] = {}
        for image in run.images:
            n = counters[image["node"]] = counters.get(image["node"], -1) + 1
            bound[f"out.{image['node']}.{n}.filename"] = image["filename"]
            bound[f"out.{image['node']}.{n}.subfolder"] = image.get("subfolder", "")
        self.bindings[job] = bound


def verify(cassette: str | Path, server: str, *, timeout: float = 300.0) -> VerifyReport:
    """Re-run ``cassette`` against ``server`` and list every structural difference.

    Usage::

        report = verify("cassettes/basic_save.yaml", "http://127.0.0.1:8188")
        assert report.ok, report.differences
    """
    recorded = load(cassette)
    report = VerifyReport(Path(cassette), server, recorded_version=_str_or_none(recorded.recorded.get("comfyui_version")))
    return asyncio.run(_verify(recorded, server, timeout, report))


async def _verify(recorded: Cassette, server: str, timeout: float, report: VerifyReport) -> VerifyReport:
    async with RecordingClient(server, timeout=timeout) as client:
        stats = await client.request("GET", "/system_stats")
        client.session.exchanges.remove(stats)
        body = stats.response_json()
        if isinstance(body, dict):
            report.comfyui_version = _str_or_none((body.get("system") or {}).get("comfyui_version"))
        driver = _Driver(recorded, client, report)
        await driver.run()
        session = client.session
    with tempfile.TemporaryDirectory(prefix="comfy-cassettes-verify-") as folder:
        document = build_cassette(session, BlobStore(Path(folder)))
        live = from_dict(document, Path(folder) / "live.yaml")
    report.requests = len(driver.pairs)
    _compare_jobs(recorded, live, report)
    index = {id(x): n for n, x in enumerate(session.exchanges)}
    for old_index, exchange in driver.pairs:
        old, new = recorded.interactions[old_index], live.interactions[index[id(exchange)]]
        _compare_interaction(old, new, report)
    return report


def _compare_jobs(recorded: Cassette, live: Cassette, report: VerifyReport) -> None:
    report.jobs = len(live.jobs)
    if len(recorded.jobs) != len(live.jobs):
        report.differences.append(Difference("jobs", f"{len(recorded.jobs)} jobs", f"{len(live.jobs)} jobs"))
    for k, (old, new) in enumerate(zip(recorded.jobs, live.jobs)):
        where = f"job {k} ({old.name or k})"
        if old.status != new.status:
            report.differences.append(Difference(f"{where} status", old.status, new.status))
        if old.response_status != new.response_status:
            report.differences.append(Difference(f"{where} POST /prompt status", str(old.response_status), str(new.response_status)))
        report.differences.extend(compare(parse_templated(old.response_body), parse_templated(new.response_body), f"{where} POST /prompt body"))
        report.differences.extend(compare(old.history or {}, new.history or {}, f"{where} history"))
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


def _compare_interaction(old: dict[str, Any], new: dict[str, Any], report: VerifyReport) -> None:
    request = old["request"]
    where = f"{request['method']} {_short(request['uri'])}"
    a, b = old["response"], new["response"]
    if a["status"]["code"] != b["status"]["code"]:
        report.differences.append(Difference(f"{where} status", str(a["status"]["code"]), str(b["status"]["code"])))
        return
    type_a, type_b = _content_type(a), _content_type(b)
    if type_a != type_b:
        report.differences.append(Difference(f"{where} Content-Type", type_a or "(none)", type_b or "(none)"))
    body_a, body_b = a.get("body") or {}, b.get("body") or {}
    if "string" in body_a and "string" in body_b:
        json_a, json_b = parse_templated(str(body_a["string"])), parse_templated(str(body_b["string"]))
        if json_a is not None or json_b is not None:
            report.differences.extend(compare(json_a, json_b, f"{where} body"))
    elif ("string" in body_a) != ("string" in body_b) and type_a == "application/json":
        report.differences.append(Difference(f"{where} body", "inline" if "string" in body_a else "blob", "inline" if "string" in body_b else "blob"))


def _content_type(response: dict[str, Any]) -> str:
    for key, values in (response.get("headers") or {}).items():
        if key.lower() == "content-type" and values:
            return str(values[0] if isinstance(values, list) else values).split(";")[0].strip()
    return ""


def _short(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.path + ("?" + parts.query if parts.query else "")


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "None") else str(value)


def render_report(report: VerifyReport) -> None:
    """Print the report: differences side by side, then WebSocket orders that differ, aligned."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]verify[/bold] {report.cassette} (recorded on ComfyUI {report.recorded_version or '?'}) against "
                  f"{report.server} (ComfyUI {report.comfyui_version or '?'}): {report.jobs} job(s), {report.requests} request(s)")
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
    for note in sorted(set(report.skipped)):
        console.print(f"[dim]skipped: {note}[/dim]")
    console.print("[green]no differences[/green]" if report.ok else f"[red]{len(report.differences)} difference(s)[/red]")


