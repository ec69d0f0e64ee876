"""The typed cassette: interactions, recorded jobs with their WebSocket timelines and outputs, and ``to_dict()`` to
write them back. Loading, validation and saving are in cassette.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..comfy.events import WsEvent
from ..comfy.routes import is_comfy_path
from ..errors import CassetteError

FORMAT = 1


Headers = dict[str, list[str]]


@dataclass(frozen=True)
class OutputImage:
    """One image a job produced: which node, its index, folder kind, size, and the recorded bytes."""

    node: str
    index: int
    kind: str  # "output" (SaveImage) or "temp" (PreviewImage)
    width: int
    height: int
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "index": self.index, "kind": self.kind, "width": self.width, "height": self.height}
        if self.file is not None:
            out["file"] = self.file
        return out


@dataclass(frozen=True)
class Job:
    """One recorded POST /prompt and everything the server did for it."""

    workflow: dict[str, Any]
    status: str
    response_status: int = 200
    response_body: str = ""
    has_client: bool = True
    outputs_to_execute: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    ws: tuple[WsEvent, ...] = ()
    history: dict[str, Any] | None = None
    outputs: tuple[OutputImage, ...] = ()
    queued_for: float = 0.0  # seconds between POST /prompt and execution_start in the recording
    name: str = ""
    # Seconds the recorded POST /prompt took to be answered: ComfyUI validates the prompt before it queues it and
    # announces the queue's ``status`` (0: not recorded, cassettes before it was).
    took: float = 0.0
    # The first group of the prompt_id ComfyUI drew for it, kept when another prompt had the same number: its heap
    # runs tied prompts in the order of their ids, and a replay's drawn id starts with this one ("": not kept).
    id_head: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The job as stored under ``comfy.jobs``."""
        out: dict[str, Any] = {"name": self.name, "workflow": self.workflow, "has_client": self.has_client,
                               "status": self.status, "response": {"status": self.response_status, "body": self.response_body}}
        if self.took:
            out["response"]["took"] = self.took
        if self.id_head:
            out["id_head"] = self.id_head
        if self.status == "rejected":
            return out
        if self.outputs_to_execute:
            out["outputs_to_execute"] = list(self.outputs_to_execute)
        if self.history is not None:
            out["history"] = self.history
        out.update(cached=list(self.cached), queued_for=self.queued_for, outputs=[o.to_dict() for o in self.outputs],
                   ws=[_event_dict(e) for e in self.ws])
        return out


def _event_dict(event: WsEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"t": event.t}
    if event.binary is not None:
        frame: dict[str, Any] = {"event_type": event.binary.event_type}
        if event.binary.image_format is not None:
            frame["image_format"] = event.binary.image_format
        if event.binary.metadata is not None:
            frame["metadata"] = event.binary.metadata
        frame["file"] = event.binary.file
        out["binary"] = frame
    else:
        out.update(type=event.type, data=event.data)
    return out


@dataclass(frozen=True)
class Interaction:
    """One recorded HTTP request and its answer, in vcrpy's shape; a large or binary answer lives in a blob."""

    method: str
    uri: str
    status: int
    reason: str = ""
    request_body: str | bytes | None = None
    request_headers: Headers = field(default_factory=dict)
    response_headers: Headers = field(default_factory=dict)
    body: str | bytes = ""  # the answer inline ({string: ...})
    body_file: str | None = None  # or in a sidecar blob ({file: blobs/...})
    job: int | None = None  # the recorded job it belongs to, for job placeholders

    @property
    def path(self) -> str:
        return urlsplit(self.uri).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.uri).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """The first response header called ``name`` (case-insensitive)."""
        for key, values in self.response_headers.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None

    def to_dict(self) -> dict[str, Any]:
        """The interaction as vcrpy stores it."""
        body: dict[str, Any] = {"file": self.body_file} if self.body_file is not None else {"string": self.body}
        out: dict[str, Any] = {
            "request": {"method": self.method, "uri": self.uri, "body": self.request_body, "headers": self.request_headers},
            "response": {"status": {"code": self.status, "message": self.reason}, "headers": self.response_headers, "body": body},
        }
        if self.job is not None:
            out["job"] = self.job
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Interaction:
        """An interaction from its stored form (already validated)."""
        request, response = raw["request"], raw["response"]
        body = response.get("body") or {}
        inline = body.get("string", "") if isinstance(body, dict) else ""
        return cls(
            method=str(request["method"]).upper(), uri=request["uri"], status=int(response["status"]["code"]),
            reason=str(response["status"].get("message") or ""), request_body=request.get("body"),
            request_headers=_headers(request.get("headers")), response_headers=_headers(response.get("headers")),
            body=inline if isinstance(inline, (str, bytes)) else "",
            body_file=str(body["file"]) if isinstance(body, dict) and "file" in body else None,
            job=raw["job"] if isinstance(raw.get("job"), int) and not isinstance(raw.get("job"), bool) else None,
        )


def _headers(raw: Any) -> Headers:
    """vcrpy's ``{name: [values]}``; a bare value (hand-written cassettes) counts as one."""
    if not isinstance(raw, dict):
        return {}
    return {str(k): [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)] for k, v in raw.items()}


@dataclass(frozen=True)
class Cassette:
    """A cassette: recorded interactions, the jobs, and where its blobs live (beside ``path``)."""

    path: Path | None
    interactions: tuple[Interaction, ...] = ()
    jobs: tuple[Job, ...] = ()
    recorded: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None  # vcrpy's optional cassette metadata, kept as it was

    @property
    def foreign(self) -> bool:
        """Whether it recorded requests, none of them to ComfyUI, and no job: a cassette of another service (a
        pytest-recording cassette of a payments API), which answers nothing a ComfyUI client asks."""
        return not self.jobs and bool(self.interactions) and not any(is_comfy_path(i.path) for i in self.interactions)

    @property
    def root(self) -> Path:
        """The folder blob references are relative to."""
        return self.path.parent if self.path is not None else Path.cwd()

    def blob_path(self, ref: str) -> Path:
        """Absolute path of a blob reference such as ``blobs/<sha>.png``. Only a file inside the cassette's folder
        once links are resolved: a ``blobs`` link to elsewhere must not let /view serve any file on the machine."""
        checked: dict[str, Path] = self.__dict__.setdefault("_checked_blobs", {})
        path = checked.get(ref)
        if path is None:  # resolved once per reference: two resolve() calls cost more than a job's whole replay
            path = self.root / ref
            if not blob_inside(self.root, path):
                raise CassetteError(self.path, None, f"blob {ref!r} leads outside the cassette folder {self.root} (a link?)")
            checked[ref] = path
        return path

    def checked_blob(self, ref: str, path: Path) -> None:
        """Note that ``ref`` was found inside the folder at ``path`` (the loader checks every blob): blob_path need
        not resolve it again."""
        self.__dict__.setdefault("_checked_blobs", {})[ref] = path

    def read_blob(self, ref: str) -> bytes:
        """The bytes of a blob reference."""
        return self.blob_path(ref).read_bytes()

    def body(self, interaction: Interaction) -> bytes:
        """The recorded answer's bytes, inline or from its blob."""
        if interaction.body_file is not None:
            return self.read_blob(interaction.body_file)
        body = interaction.body
        return body.encode() if isinstance(body, str) else bytes(body)

    @property
    def comfyui_version(self) -> str | None:
        version = self.recorded.get("comfyui_version")
        return None if version is None else str(version)

    def to_dict(self) -> dict[str, Any]:
        """The cassette document (what :func:`save` writes)."""
        document: dict[str, Any] = {
            "version": 1,
            "interactions": [i.to_dict() for i in self.interactions],
            "comfy": {"format": FORMAT, "recorded": self.recorded, "jobs": [j.to_dict() for j in self.jobs]},
        }
        if self.metadata is not None:
            document["metadata"] = self.metadata
        return document


# ---------------------------------------------------------------- loading


def blob_inside(root: Path, path: Path, *, resolved_root: Path | None = None) -> bool:
    """Whether ``path``, links resolved, is inside ``root``, links resolved (``resolved_root``: that, when the caller
    resolved it once for many blobs)."""
    try:
        return path.resolve().is_relative_to(resolved_root or root.resolve())
    except (OSError, RuntimeError):  # a link loop
        return False
