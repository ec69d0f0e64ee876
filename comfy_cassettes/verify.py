"""``comfy-cassettes verify``: re-run a cassette against a live server and report every structural difference.

Drift detection for when ComfyUI updates. The cassette's requests are sent again in their recorded order (its
jobs submitted and followed over ``/ws``, the GETs re-asked with the live job's ids and file names), the live
answers go through the same templater as a recording, and the two are compared by structure (drift.py).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cassette.load import load
from .comfy.routes import normalize
from .drift import VerifyReport, compare_interaction, compare_jobs, render_report
from .cassette.model import Cassette, Interaction, Job
from .record.build import build_cassette
from .record.drafts import job_exchanges
from .record.client import LiveJob, LiveSocket, RecordingClient
from .record.session import HttpExchange, RawSession
from .cassette.naming import out_name
from .cassette.templating import PLACEHOLDER, parse_templated, render_text, url_escape


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
        self.job_pairs: list[tuple[int, HttpExchange]] = []  # (recorded job index, the live POST /prompt)
        self.recorded_jobs = 0
        self.pending: list[asyncio.Task[HttpExchange]] = []
        self.running: list[asyncio.Task[None]] = []  # jobs submitted and not yet finished

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
        await asyncio.gather(*self.running, *self.pending)

    async def _one(self, i: int, item: Interaction) -> None:
        """Send one recorded request again.

        Jobs run in the background: a request waits for them only when its recorded answer shows they had ended,
        so "/queue while running" or a delete of a pending prompt happen at the same point of the job as recorded.
        """
        method, job = item.method, item.job
        parts = urlsplit(item.uri)
        route = normalize(parts.path)
        values = self._bindings(job)
        if method == "POST" and route == "/prompt":
            await self._prompt(i, item, values)
        elif method == "GET":
            await self._settle(method, parts.path, item)
            values = self._bindings(job)
            path = render_text(parts.path, values, url_escape) + ("?" + render_text(parts.query, values, url_escape) if parts.query else "")
            if PLACEHOLDER.search(path):
                self.report.notes.append(f"{method} {parts.path}: names a job that did not run live")
                return
            self.pairs.append((i, await self.client.request("GET", path)))
        elif method == "POST" and route in ("/upload/image", "/upload/mask"):
            await self._settle(method, parts.path, item)
            body = item.request_body or b""
            content = body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogateescape")
            headers = {k: v[0] for k, v in item.request_headers.items() if k.lower() == "content-type" and v}
            self.pairs.append((i, await self.client.request("POST", parts.path, content=content, headers=headers)))
        elif method == "POST" and route == "/interrupt":
            if any(j.status == "interrupted" and _interrupt_point(j) for j in self.cassette.jobs):
                return  # _interrupter sends it at the recorded point of the job instead
            await self._post(i, parts.path, item.request_body, values)
        elif method == "POST" and route in ("/queue", "/history"):
            if route == "/history":
                await self._settle(method, parts.path, item)
                values = self._bindings(job)
            body = parse_templated(render_text(str(item.request_body or ""), values, lambda v: json.dumps(v)[1:-1]))
            if not isinstance(body, dict):
                self.report.notes.append(f"POST {parts.path}: body is not JSON, not re-run")
                return
            # A clear would reach prompts that are not verify's: delete verify's own instead. Jobs run in the background
            # here, so a queue delete is limited to the prompts the recording did delete (they never ran).
            ids = [b["prompt_id"] for b in self.bindings.values()] if body.get("clear") else list(body.get("delete") or [])
            if route == "/queue":
                deleted = {b["prompt_id"] for k, b in self.bindings.items() if self.cassette.jobs[k].status == "unfinished"}
                ids = [x for x in ids if x in deleted]
            if route == "/queue":
                self.client.abandoned.update(ids)
            if body.get("clear"):
                self.report.notes.append(f"POST {parts.path} clear: sent as a delete of verify's own prompts")
            await self._post(i, parts.path, json.dumps({"delete": ids}), values)
        else:
            self.report.notes.append(f"{method} {parts.path}: changes server state, not re-run")

    async def _post(self, i: int, path: str, raw: str | bytes | None, values: dict[str, Any]) -> None:
        """Re-send a small JSON POST (delete by id, targeted interrupt) with the live job ids filled in."""
        text = render_text(str(raw), values, lambda v: json.dumps(v)[1:-1]) if raw else ""
        if PLACEHOLDER.search(text):
            self.report.notes.append(f"POST {path}: names a job that did not run live")
            return
        headers = {"Content-Type": "application/json"} if text else {}
        self.pairs.append((i, await self.client.request("POST", path, content=text.encode(), headers=headers)))

    def _interrupter(self, k: int | None) -> _Interrupter | None:
        """For a job recorded as interrupted: what sends POST /interrupt at the recorded point of the job."""
        if k is None or k >= len(self.cassette.jobs) or self.cassette.jobs[k].status != "interrupted":
            return None
        trigger = _interrupt_point(self.cassette.jobs[k])
        if trigger is None:
            return None
        self.report.notes.append("POST /interrupt: sent while the interrupted job ran, at the node the recording interrupted")
        return _Interrupter(self, trigger)

    def _origin(self, item: Interaction) -> dict[str, str]:
        """The recorded Origin header: pointed at the live server when it named the recorded one (ComfyUI 403s a mismatch)."""
        for key, values in item.request_headers.items():
            if key.lower() == "origin" and values:
                origin = values[0]
                recorded = urlsplit(item.uri)
                if urlsplit(origin).netloc == recorded.netloc:
                    origin = self.client.base
                return {"Origin": origin}
        return {}

    async def _prompt(self, i: int, item: Interaction, values: dict[str, Any]) -> None:
        raw = item.request_body or ""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        fresh = {**values, "prompt_id": str(uuid.uuid4())}
        text = render_text(text, fresh, lambda s: json.dumps(s)[1:-1])
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        headers = self._origin(item)
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict):
            self.pairs.append((i, await self.client.request("POST", "/prompt", content=text.encode(), headers=headers)))
            return
        recorded_job: int | None = None
        if item.status in (200, 400):
            recorded_job, self.recorded_jobs = self.recorded_jobs, self.recorded_jobs + 1
        if recorded_job is not None and self._ran_uncached(recorded_job):
            # A server that already ran this graph serves it from its cache: drop the cache first, as the recorded
            # run had none (ComfyUI applies the flag before its next prompt).
            await self.client.request("POST", "/free", json_body={"free_memory": True})
            self.report.notes.append(f"POST /free {{free_memory: true}} before job {recorded_job}: the recording ran it uncached, so the live server's node cache was emptied first")
        run = await self.client.submit_job(body, headers=headers)
        self.pairs.append((i, run.response))
        if recorded_job is None:
            return
        self.job_pairs.append((recorded_job, run.response))
        if run.prompt_id is None:
            return
        answer = run.response.response_json()
        self.bindings[recorded_job] = {"prompt_id": run.prompt_id, "number": answer.get("number", 0) if isinstance(answer, dict) else 0}
        self.running.append(asyncio.create_task(self._finish(recorded_job, run, body)))

    def _ran_uncached(self, k: int) -> bool:
        """Whether recorded job ``k`` ran with nothing from the cache (a cached recording is compared as cached)."""
        job = self.cassette.jobs[k] if k < len(self.cassette.jobs) else None
        return job is not None and job.status in ("success", "error", "interrupted") and not job.cached

    async def _finish(self, k: int, run: LiveJob, body: dict[str, Any]) -> None:
        interrupter = self._interrupter(k)
        watcher = None
        if interrupter is not None and not body.get("client_id") and self.socket is not None and run.prompt_id:
            # No client_id: the job is followed through /history, but its progress_state broadcasts still arrive.
            watcher = asyncio.create_task(interrupter.watch_queue(self.socket.messages(run.prompt_id)))
        await self.client.finish_job(run, body, self.socket, on_message=interrupter)
        if watcher is not None:
            watcher.cancel()
        counters: dict[str, int] = {}
        for image in run.images:
            n = counters[image["node"]] = counters.get(image["node"], -1) + 1
            self.bindings[k][out_name(image["node"], n)] = image["filename"]
            self.bindings[k][out_name(image["node"], n, "subfolder")] = image.get("subfolder", "")

    async def _settle(self, method: str, path: str, item: Interaction) -> None:
        """Wait for running jobs, unless the recording shows this request was made while one still ran."""
        if not self.running:
            return
        if method == "GET" and _recorded_busy(path, item):
            return
        await asyncio.gather(*self.running)
        self.running.clear()


def _interrupt_point(job: Job) -> str | None:
    """The node that was running when the recording's client interrupted.

    ComfyUI lets the running node finish and names the next one in ``execution_interrupted`` (real-sessions
    README, POST /interrupt), so it is the node started just before that one.
    """
    started: list[str] = []
    stopped = None
    for event in job.ws:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "executing" and data.get("node") is not None and str(data["node"]) not in started:
            started.append(str(data["node"]))
        elif event.type == "progress_state":  # what a client without client_id sees instead of executing
            started.extend(str(n) for n, v in (data.get("nodes") or {}).items() if isinstance(v, dict) and v.get("state") == "running" and str(n) not in started)
        elif event.type == "execution_interrupted":
            stopped = str(data.get("node_id"))
    if stopped is None or stopped not in started or started.index(stopped) == 0:
        return None
    return started[started.index(stopped) - 1]


class _Interrupter:
    """Sends a targeted POST /interrupt the first time the live job starts the trigger node."""

    def __init__(self, driver: _Driver, trigger: str) -> None:
        self.driver = driver
        self.trigger = trigger
        self.fired = False

    def __call__(self, message: dict[str, Any]) -> None:
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        assert isinstance(data, dict)
        nodes = data.get("nodes") if message.get("type") == "progress_state" else None
        starting = (message.get("type") == "executing" and str(data.get("node")) == self.trigger) or (
            isinstance(nodes, dict) and isinstance(nodes.get(self.trigger), dict) and nodes[self.trigger].get("state") == "running"
        )
        if starting and not self.fired:
            self.fired = True
            # Targeted, so verify never interrupts someone else's prompt on a shared server.
            body = {"prompt_id": data.get("prompt_id")}
            self.driver.pending.append(asyncio.create_task(self.driver.client.request("POST", "/interrupt", json_body=body)))

    async def watch_queue(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        while not self.fired:
            message = await queue.get()
            if message is None:
                return
            self(message)


def _recorded_busy(path: str, item: Interaction) -> bool:
    """True when a recorded answer shows a job still queued or running (an empty /history/{id}, a busy /queue)."""
    path = normalize(path)
    value = parse_templated(item.body) if isinstance(item.body, str) and item.body_file is None else None
    if path.startswith("/history/"):
        return value == {}
    if path == "/queue" and isinstance(value, dict):
        return bool(value.get("queue_running") or value.get("queue_pending"))
    if path == "/prompt" and isinstance(value, dict):
        return bool((value.get("exec_info") or {}).get("queue_remaining"))
    return False


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
        live = build_cassette(session, Path(folder) / "live.yaml")
    report.requests = len(driver.pairs)
    compare_jobs(recorded, live, driver.job_pairs, _live_jobs(session), report)
    index = {id(x): n for n, x in enumerate(session.exchanges)}
    for old_index, exchange in driver.pairs:
        old, new = recorded.interactions[old_index], live.interactions[index[id(exchange)]]
        compare_interaction(old, new, report)
    return report


def _live_jobs(session: RawSession) -> dict[int, int]:
    """Which live exchanges became jobs: ``id(exchange)`` to the job's index in the document built from ``session``."""
    return {id(x): k for k, x in enumerate(job_exchanges(session))}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


__all__ = ["VerifyReport", "render_report", "verify"]
