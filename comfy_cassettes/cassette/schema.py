"""Cassette validation: every problem is a CassetteError naming the file and the key, e.g. ``interactions[0].request.uri``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..comfy.events import BinaryFrame, WsEvent
from ..errors import CassetteError
from .model import Cassette, Job, OutputImage, blob_inside
from .templating import ROOTS, is_valid_name, names_in

JOB_STATES = ("success", "error", "interrupted", "rejected", "unfinished")


class Checker:
    """Validation helpers that raise CassetteError with the key path."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.refs: list[tuple[str, str]] = []

    def fail(self, key: str, message: str) -> None:
        raise CassetteError(self.path, key or None, message)

    def type(self, value: Any, expected: type, key: str) -> None:
        if not isinstance(value, expected):
            self.fail(key, f"expected {expected.__name__}, got {type(value).__name__}")

    def interaction(self, item: Any, key: str) -> None:
        self.type(item, dict, key)
        request, response = item.get("request"), item.get("response")
        self.type(request, dict, f"{key}.request")
        self.type(response, dict, f"{key}.response")
        for name in ("method", "uri"):
            if not isinstance(request.get(name), str):
                self.fail(f"{key}.request.{name}", "missing or not a string")
        status = response.get("status")
        if not isinstance(status, dict) or not isinstance(status.get("code"), int):
            self.fail(f"{key}.response.status.code", "missing or not an integer")
        body = response.get("body", {})
        if isinstance(body, dict) and "file" in body:
            self.refs.append((f"{key}.response.body.file", str(body["file"])))

    def job(self, raw: Any, key: str) -> Job:
        self.type(raw, dict, key)
        workflow = raw.get("workflow")
        self.type(workflow, dict, f"{key}.workflow")
        status = raw.get("status")
        if status not in JOB_STATES:
            self.fail(f"{key}.status", f"expected one of {', '.join(JOB_STATES)}, got {status!r}")
        ws = raw.get("ws", [])
        self.type(ws, list, f"{key}.ws")
        events = tuple(self.event(e, f"{key}.ws[{i}]") for i, e in enumerate(ws))
        outputs = raw.get("outputs", [])
        self.type(outputs, list, f"{key}.outputs")
        images = tuple(self.output(o, f"{key}.outputs[{i}]") for i, o in enumerate(outputs))
        history = raw.get("history")
        if history is not None:
            self.type(history, dict, f"{key}.history")
        response = raw.get("response") or {}
        self.type(response, dict, f"{key}.response")
        code = response.get("status", 200)
        if not isinstance(code, int):
            self.fail(f"{key}.response.status", "not an integer")
        took = response.get("took", 0.0)
        if not isinstance(took, (int, float)) or isinstance(took, bool) or not 0 <= took < float("inf"):
            self.fail(f"{key}.response.took", f"expected seconds >= 0, got {took!r}")
        return Job(
            workflow=workflow,
            status=status,
            response_status=code,
            response_body=str(response.get("body", "")),
            has_client=bool(raw.get("has_client", True)),
            outputs_to_execute=tuple(str(x) for x in raw.get("outputs_to_execute", [])),
            cached=tuple(str(x) for x in raw.get("cached", [])),
            ws=events,
            history=history,
            outputs=images,
            queued_for=float(raw.get("queued_for", 0.0)),
            name=str(raw.get("name", "")),
            took=float(took),
            id_head=self.id_head(raw.get("id_head", ""), f"{key}.id_head"),
        )

    def id_head(self, raw: Any, key: str) -> str:
        """A recorded prompt_id's first group: up to 8 lowercase hex digits."""
        if not isinstance(raw, str) or len(raw) > 8 or raw.strip("0123456789abcdef"):
            self.fail(key, f"expected the first group of a prompt_id (up to 8 hex digits), got {raw!r}")
        return str(raw)

    def event(self, raw: Any, key: str) -> WsEvent:
        self.type(raw, dict, key)
        t = raw.get("t", 0.0)
        if not isinstance(t, (int, float)) or t < 0:
            self.fail(f"{key}.t", f"expected seconds >= 0, got {t!r}")
        if "binary" in raw:
            b = raw["binary"]
            self.type(b, dict, f"{key}.binary")
            if not isinstance(b.get("event_type"), int):
                self.fail(f"{key}.binary.event_type", "missing or not an integer")
            if not isinstance(b.get("file"), str):
                self.fail(f"{key}.binary.file", "missing or not a string")
            self.refs.append((f"{key}.binary.file", b["file"]))
            frame = BinaryFrame(b["event_type"], b["file"], b.get("image_format"), b.get("metadata"))
            return WsEvent(t=float(t), binary=frame)
        if not isinstance(raw.get("type"), str):
            self.fail(f"{key}.type", "missing or not a string")
        return WsEvent(t=float(t), type=raw["type"], data=raw.get("data"))

    def output(self, raw: Any, key: str) -> OutputImage:
        self.type(raw, dict, key)
        for name in ("node", "kind"):
            if not isinstance(raw.get(name), str):
                self.fail(f"{key}.{name}", "missing or not a string")
        for name in ("index", "width", "height"):
            if not isinstance(raw.get(name), int):
                self.fail(f"{key}.{name}", "missing or not an integer")
        if raw.get("file") is not None:
            self.refs.append((f"{key}.file", str(raw["file"])))
        return OutputImage(raw["node"], raw["index"], raw["kind"], raw["width"], raw["height"], raw.get("file"))

    def placeholders(self, value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self.placeholders(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.placeholders(v, f"{key}[{i}]")
        elif isinstance(value, str) and "{{" in value:
            for name in names_in(value):
                if not is_valid_name(name):
                    self.fail(key, f"unknown placeholder {{{{{name}}}}} ({{{{...}}}} starting with {'/'.join(ROOTS)} must use a documented name)")

    def blobs(self, cassette: Cassette) -> None:
        root = cassette.root
        try:
            resolved_root = root.resolve() if self.refs else None  # once, not per blob (a bundled cassette has ~50)
        except (OSError, RuntimeError):
            resolved_root = None
        for key, ref in self.refs:
            if ".." in Path(ref).parts or Path(ref).is_absolute():
                self.fail(key, f"blob reference {ref!r} must stay inside the cassette folder")
            path = root / ref
            if not blob_inside(root, path, resolved_root=resolved_root):
                self.fail(key, f"blob {ref!r} leads outside the cassette folder (a link?); copy the file in instead")
            if not path.is_file():
                self.fail(key, f"blob {ref!r} is missing next to the cassette")
            cassette.checked_blob(ref, path)
