"""The cassette file: vcrpy-compatible YAML plus a ``comfy:`` block, validated on load and saved atomically.

Layout on disk::

    cassettes/basic.yaml          version: 1, interactions: [...], comfy: {format: 1, jobs: [...]}
    cassettes/blobs/<sha256>.png  binary and large bodies, content-addressed, shared by cassettes in the folder

Interactions keep vcrpy's shape so pytest-recording can read them; a body too large or binary for YAML is
``{file: blobs/<sha>.<ext>}`` instead of ``{string: ...}`` and is resolved by :func:`interaction_body`.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from .comfy.events import BinaryFrame as BinaryFrame
from .comfy.events import WsEvent as WsEvent
from .errors import CassetteError, CassetteExistsError
from .templating import PLACEHOLDER, ROOTS, is_valid_name, names_in

FORMAT = 1
_CACHE_VERSION = f"comfy-cassettes parsed cassette, format {FORMAT}, 1"
BLOB_DIR = "blobs"
INLINE_LIMIT = 64 * 1024  # bodies above this go to a sidecar blob, keeping YAML diffable
JOB_STATES = ("success", "error", "interrupted", "rejected", "unfinished")

# libyaml's loader when PyYAML was built with it (several times faster), the pure-Python one otherwise.
YAML_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


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

    def to_dict(self) -> dict[str, Any]:
        """The job as stored under ``comfy.jobs``."""
        out: dict[str, Any] = {"name": self.name, "workflow": self.workflow, "has_client": self.has_client,
                               "status": self.status, "response": {"status": self.response_status, "body": self.response_body}}
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
    def root(self) -> Path:
        """The folder blob references are relative to."""
        return self.path.parent if self.path is not None else Path.cwd()

    def blob_path(self, ref: str) -> Path:
        """Absolute path of a blob reference such as ``blobs/<sha>.png``."""
        return self.root / ref

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


def load(path: str | os.PathLike[str]) -> Cassette:
    """Read and validate a cassette; every problem names the file and the key.

    Cassettes over 1 MiB are also kept parsed, as JSON, in the user cache folder (``$XDG_CACHE_HOME`` or
    ``~/.cache``, ``comfy-cassettes/``), keyed by the text's hash: YAML builds an object per scalar and a
    cassette of many recorded jobs took seconds to parse. ``COMFY_CASSETTES_CACHE=0`` turns it off.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CassetteError(path, None, "no such cassette file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(path, None, f"cannot read: {exc}") from None
    cache = _parsed_cache(text)
    if cache is not None and cache.is_file():
        try:
            with _no_gc():
                cached = _from_json(json.loads(cache.read_bytes()))
        except (OSError, ValueError):
            cached = None  # unreadable cache: parse the YAML as if there were none
        if cached is not None:
            with _no_gc():
                return from_dict(cached, path, text=text)
    try:
        with _no_gc():
            data = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise CassetteError(path, None, f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    cassette = from_dict(data, path, text=text)
    if cache is not None:
        _keep_parsed(cache, data)
    return cassette


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Parsers allocate an object per scalar; the collector running over them cost more than parsing did."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


CACHE_MIN_BYTES = 1 << 20  # smaller cassettes parse in tens of milliseconds: not worth a file


def _parsed_cache(text: str) -> Path | None:
    """Where the parsed form of ``text`` is (or would be) kept, or None when not cached."""
    if len(text) < CACHE_MIN_BYTES or os.environ.get("COMFY_CASSETTES_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(f"{_CACHE_VERSION}\n".encode() + text.encode("utf-8")).hexdigest()
    return Path(base) / "comfy-cassettes" / f"{key}.json"


def _keep_parsed(cache: Path, data: Any) -> None:
    """Write the parsed cassette next to the others; a cache that cannot be written is simply not used."""
    try:
        encoded = json.dumps(_to_json(data)).encode("utf-8")
        cache.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(cache, encoded, overwrite=True)
    except (OSError, TypeError, ValueError):
        pass


def _to_json(document: Any) -> Any:
    """The document with YAML ``!!binary`` request bodies (multipart uploads) as base64; any other non-JSON
    value makes json.dumps refuse, and that cassette is just not cached."""
    if not isinstance(document, dict):
        return document
    interactions = []
    for item in document.get("interactions") or []:
        body = (item.get("request") or {}).get("body") if isinstance(item, dict) else None
        if isinstance(body, bytes):
            item = {**item, "request": {**item["request"], "body": {"__bytes__": base64.b64encode(body).decode("ascii")}}}
        interactions.append(item)
    return {**document, "interactions": interactions}


def _from_json(document: Any) -> Any:
    """The reverse of :func:`_to_json`, touching only request bodies (an object hook ran on every dict)."""
    for item in (document.get("interactions") or []) if isinstance(document, dict) else []:
        body = (item.get("request") or {}).get("body") if isinstance(item, dict) else None
        if isinstance(body, dict) and set(body) == {"__bytes__"}:
            item["request"]["body"] = base64.b64decode(body["__bytes__"])
    return document


def from_dict(data: Any, path: Path | None = None, *, text: str | None = None) -> Cassette:
    """Validate an already parsed cassette document and build the model (``text``: the YAML it came from)."""
    check = _Checker(path)
    check.type(data, dict, "")
    if data.get("version") != 1:
        check.fail("version", f"expected 1 (vcrpy's cassette format), got {data.get('version')!r}")
    interactions = data.get("interactions", [])
    check.type(interactions, list, "interactions")
    for i, item in enumerate(interactions):
        check.interaction(item, f"interactions[{i}]")
    comfy = data.get("comfy") or {}
    check.type(comfy, dict, "comfy")
    if comfy and comfy.get("format") != FORMAT:
        check.fail("comfy.format", f"expected {FORMAT}, got {comfy.get('format')!r}")
    raw_jobs = comfy.get("jobs", [])
    check.type(raw_jobs, list, "comfy.jobs")
    jobs = tuple(check.job(job, f"comfy.jobs[{i}]") for i, job in enumerate(raw_jobs))
    recorded = comfy.get("recorded") or {}
    check.type(recorded, dict, "comfy.recorded")
    metadata = data.get("metadata")
    check.type(metadata if metadata is not None else {}, dict, "metadata")
    cassette = Cassette(path=path, interactions=tuple(Interaction.from_dict(i) for i in interactions), jobs=jobs,
                        recorded=recorded, metadata=metadata)
    # One pass over the text finds every name; the key-by-key walk that names the key runs only on a bad one.
    if text is None or not all(map(is_valid_name, set(PLACEHOLDER.findall(text)))):
        check.placeholders(data, "")
    check.blobs(cassette)
    return cassette


class _Checker:
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
        )

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
        for key, ref in self.refs:
            if ".." in Path(ref).parts or Path(ref).is_absolute():
                self.fail(key, f"blob reference {ref!r} must stay inside the cassette folder")
            if not cassette.blob_path(ref).is_file():
                self.fail(key, f"blob {ref!r} is missing next to the cassette")


# ---------------------------------------------------------------- saving


class BlobStore:
    """Writes content-addressed sidecar files under ``<cassette folder>/blobs``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, ext: str) -> str:
        """Store ``data`` once and return its reference (``blobs/<sha256>.<ext>``)."""
        name = f"{hashlib.sha256(data).hexdigest()}.{ext.lstrip('.') or 'bin'}"
        target = self.root / BLOB_DIR / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, data, overwrite=True)
        return f"{BLOB_DIR}/{name}"


def dump(document: dict[str, Any]) -> str:
    """The YAML text of a cassette document (key order kept, long strings unfolded)."""
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 30)
    return text


def save(cassette: Cassette | Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Validate then write a cassette atomically; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    document = cassette.to_dict() if isinstance(cassette, Cassette) else dict(cassette)
    from_dict(document, path)  # never write what we could not load back
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, dump(document).encode("utf-8"), overwrite=overwrite)
    return path


def _atomic_write(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write via a temp file in the same folder; a crash leaves the old file whole."""
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the target exists, with no window for a race
            except FileExistsError:
                raise CassetteExistsError(path, None, "already exists; pass overwrite (--force) to replace it") from None
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new hidden file beside ``path``, opened for writing.

    Not ``mkstemp``: its files are 0600, and a cassette is a shared file like any other. Created 0666, the
    kernel applies the process umask itself; reading the umask means setting it, which races with other threads
    (the proxy saves from a worker thread while it serves).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
