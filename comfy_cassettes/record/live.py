"""Records workflow runs against a live ComfyUI: submit, follow /ws, fetch history and outputs, snapshot state.

Every request and every WebSocket frame lands in one RawSession with real timestamps (client.py); scrubbing,
templating and the atomic save happen after the run (writer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImportFormatError, RecordError
from .client import LiveJob, Progress, RecordingClient
from .modes import RecordMode, missing_workflows, read_document, should_record
from .scrub import Scrubber
from .session import HttpExchange, RawSession
from .writer import write_session


# ---------------------------------------------------------------- workflow files


def load_workflow(path: str | Path) -> dict[str, Any]:
    """The API-format graph in ``path``: an API export, a POST /prompt body, or a ComfyUI PNG with a ``prompt`` chunk."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read workflow: {exc.strerror or exc}") from None
    if raw[:8] == b"\x89PNG\r\n\x1a\n":
        return _workflow_from_png(path, raw)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: not a JSON workflow ({exc})") from None
    return api_workflow(document, str(path))


def api_workflow(document: Any, where: str) -> dict[str, Any]:
    """Find the API form in a loaded workflow document, or explain that "Export (API)" is needed."""
    if isinstance(document, dict):
        if _is_api(document):
            return document
        for key in ("prompt", "output"):  # a POST /prompt body; the frontend's graphToPrompt() result
            if isinstance(document.get(key), dict) and _is_api(document[key]):
                return dict(document[key])
        extra = document.get("extra")
        if isinstance(extra, dict) and isinstance(extra.get("prompt"), dict) and _is_api(extra["prompt"]):
            return dict(extra["prompt"])
        if isinstance(document.get("nodes"), list) and "links" in document:
            raise ImportFormatError(
                f"{where}: this is the editor's UI format (nodes and links), which ComfyUI cannot run as is. "
                "Save the API form instead: in ComfyUI, Workflow menu → Export (API) (older versions: enable dev "
                "mode options, then Save (API Format))."
            )
    raise ImportFormatError(f"{where}: not an API-format workflow (expected {{node_id: {{class_type, inputs}}}})")


def _is_api(graph: Mapping[str, Any]) -> bool:
    return bool(graph) and all(isinstance(n, dict) and isinstance(n.get("class_type"), str) for n in graph.values())


def _workflow_from_png(path: Path, raw: bytes) -> dict[str, Any]:
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as image:
        text = dict(getattr(image, "text", {}) or {})
    if "prompt" in text:
        return api_workflow(json.loads(text["prompt"]), f"{path} (PNG 'prompt' chunk)")
    if "workflow" in text:
        return api_workflow(json.loads(text["workflow"]), f"{path} (PNG 'workflow' chunk)")
    raise ImportFormatError(f"{path}: PNG without a ComfyUI 'prompt' chunk; save the workflow with Export (API)")


# ---------------------------------------------------------------- progress


class RichProgress:
    """A rich progress bar per job: the node being executed, its step progress, elapsed time."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.workflow: Mapping[str, Any] = {}
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.task: Any = None
        self.label = ""

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def job_started(self, index: int, total: int, prompt_id: str, workflow: Mapping[str, Any]) -> None:
        self.workflow = workflow
        self.label = f"job {index + 1}/{total}"
        self.task = self.bar.add_task(f"{self.label} queued ({prompt_id[:8]})", total=None)

    def message(self, message: dict[str, Any]) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        if self.task is None or not isinstance(data, dict):
            return
        if kind == "executing" and data.get("node") is not None:
            node = str(data["node"])
            cls = (self.workflow.get(node) or {}).get("class_type", "?")
            self.bar.update(self.task, description=f"{self.label} node {node} {cls}", completed=0, total=None)
        elif kind == "progress":
            self.bar.update(self.task, completed=data.get("value", 0), total=data.get("max") or None)
        elif kind == "execution_cached" and data.get("nodes"):
            self.bar.update(self.task, description=f"{self.label} {len(data['nodes'])} node(s) cached")

    def job_finished(self, status: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"{self.label} {status}", completed=1, total=1)


# ---------------------------------------------------------------- workflow recording


@dataclass
class RecordResult:
    """What ``record_workflow`` did."""

    path: Path
    recorded: bool
    jobs: int = 0
    interactions: int = 0
    comfyui_version: str | None = None
    statuses: list[str] = field(default_factory=list)
    message: str = ""


async def record_session(
    server: str, workflows: Sequence[dict[str, Any]], *, repeat: int = 1, uploads: Sequence[Path] = (),
    with_object_info: bool = False, timeout: float = 600.0, progress: Progress | None = None,
) -> tuple[RawSession, list[LiveJob]]:
    """Run each workflow ``repeat`` times in a row on ``server`` and return everything that was exchanged.

    Re-runs follow their first run at once because ComfyUI's cache only keeps the previous prompt's results: that
    is what makes them cached re-runs; different workflows with the same prefix show the counter progressing.
    """
    async with RecordingClient(server, timeout=timeout, progress=progress) as client:
        await client.snapshot("/system_stats")
        if with_object_info:
            await client.snapshot("/object_info")
        socket = await client.open_socket()
        for path in uploads:
            await client.upload(path)
        runs = []
        total = len(workflows) * repeat
        for n in range(total):
            workflow = workflows[n // repeat]
            run = await client.run_job({"prompt": workflow, "client_id": socket.record.client_id}, socket, index=n, total=total)
            if run.prompt_id is None:
                raise RecordError(f"ComfyUI rejected the workflow (HTTP {run.response.status}): {_rejection(run.response)}")
            for image in run.images:
                await client.download(image)
            runs.append(run)
        await client.snapshot("/queue")
        return client.session, runs


def _rejection(x: HttpExchange) -> str:
    body = x.response_json()
    if not isinstance(body, dict):
        return x.response_body[:300].decode("utf-8", "replace")
    error = body.get("error") or {}
    parts = [f"{error.get('type', '?')}: {error.get('message', '')} {error.get('details', '')}".strip()] if isinstance(error, dict) else [str(error)]
    for node, info in (body.get("node_errors") or {}).items():
        for item in (info or {}).get("errors", []):
            parts.append(f"node {node} ({info.get('class_type')}): {item.get('message')} — {item.get('details')}")
    return "; ".join(parts)


def record_workflow(
    workflows: dict[str, Any] | Sequence[dict[str, Any]], server: str, output: str | Path, *, repeat: int = 1,
    uploads: Sequence[Path] = (), with_object_info: bool = False, mode: RecordMode | str = RecordMode.ONCE,
    scrubber: Scrubber | None = None, timeout: float = 600.0, progress: Progress | None = None,
) -> RecordResult:
    """Record workflows on ``server`` into the cassette ``output`` (templated, scrubbed, written atomically).

    Usage::

        record_workflow(load_workflow("flow.json"), "http://127.0.0.1:8188", "cassettes/flow.yaml", repeat=2)
    """
    if repeat < 1:
        raise RecordError(f"--repeat must be at least 1, got {repeat}")
    graphs = [workflows] if isinstance(workflows, dict) else list(workflows)
    if not graphs:
        raise RecordError("no workflow to record")
    mode = RecordMode.parse(mode)
    output = Path(output)
    existing = read_document(output)
    if not should_record(mode, output, existing, graphs):
        return RecordResult(output, False, message=f"{output} already holds this workflow; nothing recorded (--record-mode {mode.value})")
    if existing is not None and mode is RecordMode.NEW_EPISODES:
        graphs = [dict(g) for g in missing_workflows(existing, graphs)]
    with progress if isinstance(progress, RichProgress) else contextlib.nullcontext():
        session, runs = asyncio.run(record_session(
            server, graphs, repeat=repeat, uploads=uploads, with_object_info=with_object_info, timeout=timeout, progress=progress,
        ))
    path, document = write_session(session, output, mode=mode, existing=existing, scrubber=scrubber, via="workflow")
    comfy = document["comfy"]
    return RecordResult(
        path, True, jobs=len(comfy["jobs"]), interactions=len(document["interactions"]),
        comfyui_version=comfy["recorded"].get("comfyui_version"), statuses=[r.status for r in runs],
    )
