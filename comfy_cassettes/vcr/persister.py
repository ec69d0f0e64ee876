"""A vcrpy persister for templated ComfyUI cassettes: loading renders each job with fresh, consistent values;
saving writes what vcrpy recorded as a templated, scrubbed cassette that ``serve`` replays too."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any

import yaml
from vcr.persisters.filesystem import CassetteNotFoundError, FilesystemPersister  # type: ignore[import-untyped]
from vcr.request import Request  # type: ignore[import-untyped]
from vcr.serialize import deserialize  # type: ignore[import-untyped]

from ..cassette import load as cassette_io
from ..cassette.load import yaml_loader
from ..cassette.model import Cassette, Interaction, Job
from ..cassette.naming import bind_job
from ..cassette.templating import json_escape, names_in, render_text, url_escape
from ..comfy.folders import FileRoots, OutputNamer
from ..comfy.routes import is_comfy_path, normalize
from ..record.modes import RecordMode
from ..record.scrub import Scrubber
from ..record.session import TRANSFER_HEADERS, HttpExchange, RawSession
from ..record.writer import write_session
from .live import LiveJob, LiveResponse
from .matchers import RecordedTemplate, body_bytes

class ComfyPersister:
    """vcrpy persister: loads our cassettes (rendered) and plain vcrpy ones; saves ComfyUI traffic in our format.

    ``extra_paths`` are more cassettes to load with the one vcrpy names (pytest-recording's
    ``@pytest.mark.vcr("other.yaml")``); saving writes only the named one, as pytest-recording does, scrubbed by
    ``scrubber`` (default :class:`Scrubber`).
    """

    def __init__(self, extra_paths: Sequence[str] = (), *, seed: int = 0, scrubber: Scrubber | None = None) -> None:
        self.extra_paths = list(extra_paths)
        self.seed = seed
        self.scrubber = scrubber
        self.searched: dict[str, list[str]] = {}  # cassette path vcrpy asked for -> the files actually read for it

    def load_cassette(self, cassette_path: str | Path, serializer: Any) -> tuple[Any, ...]:
        renderer = _Renderer(self.seed)
        requests: list[Request] = []
        responses: list[dict[str, Any]] = []
        metadata: dict[str, Any] = {}
        found = False
        searched = self.searched[str(cassette_path)] = []
        for path in dict.fromkeys(str(p) for p in (cassette_path, *self.extra_paths)):
            if not Path(path).is_file():
                continue
            text = Path(path).read_text(encoding="utf-8")
            if not text.strip():
                continue
            found = True
            searched.append(str(Path(path).resolve()))
            try:
                data = yaml.load(text, Loader=yaml_loader())
            except yaml.YAMLError:
                data = None
            if isinstance(data, dict) and "comfy" in data:
                loaded = cassette_io.from_dict(data, Path(path).resolve())
                for request, response in renderer.render(loaded):
                    requests.append(request)
                    responses.append(response)
                if isinstance(data.get("metadata"), dict):
                    metadata = {**data["metadata"], **metadata}
            else:
                plain = deserialize(text, serializer)
                requests.extend(plain[0])
                responses.extend(plain[1])
                if len(plain) > 2:
                    metadata = {**plain[2], **metadata}
        if not found:
            raise CassetteNotFoundError(f"no cassette at {cassette_path}")
        renderer.seal()
        return (requests, responses, metadata) if metadata else (requests, responses)

    def save_cassette(self, cassette_path: str | Path, cassette_dict: Mapping[str, Any], serializer: Any) -> None:
        session = to_session(cassette_dict["requests"], cassette_dict["responses"], source=str(cassette_path))
        if not any(is_comfy_path(x.path) for x in session.exchanges):
            FilesystemPersister.save_cassette(cassette_path, cassette_dict, serializer)
            return
        # vcrpy asks to save only what it loaded plus what it recorded, so replacing the file loses nothing.
        write_session(session, Path(cassette_path), mode=RecordMode.ALL, recorded={"recorder": "vcrpy"}, via=None, scrubber=self.scrubber,
                      overwrite=True, metadata=dict(cassette_dict.get("metadata") or {}) or None)


def explain_miss(error: BaseException) -> None:
    """Make vcrpy's "no recorded interaction matches" error name the cassette files that were searched (with
    pytest-recording, ``@pytest.mark.vcr("file.yaml")`` loads files beside the default path vcrpy names)."""
    cassette = getattr(error, "cassette", None)
    persister = getattr(cassette, "_persister", None)
    if not isinstance(persister, ComfyPersister) or not error.args:
        return
    path = str(getattr(cassette, "_path", ""))
    searched = persister.searched.get(path)
    if searched is None or searched == [str(Path(path).resolve())]:
        return
    files = ", ".join(searched) if searched else "(none: no cassette file was found)"
    message, named = str(error.args[0]), f"Cassette: {path}"
    # vcrpy 9 names the cassette on a line of its own; earlier versions in one sentence: add the line after it.
    message = message.replace(named, f"{named}\n  searched: {files}", 1) if named in message else f"{message}\n  searched: {files}"
    error.args = (message, *error.args[1:])


def to_session(requests: Sequence[Request], responses: Sequence[Mapping[str, Any]], *, source: str = "") -> RawSession:
    """What vcrpy recorded, as the RawSession every recording source yields (no WebSocket: vcrpy has none)."""
    session = RawSession(source=source, comment="recorded in-process by vcrpy")
    start = time.time()
    for i, (request, response) in enumerate(zip(requests, responses)):
        body = (response.get("body") or {}).get("string", b"")
        status = response.get("status") or {}
        session.exchanges.append(
            HttpExchange(
                t=start + i * 0.001,  # vcrpy keeps order, not time
                method=str(request.method).upper(),
                url=request.uri,
                request_headers=[(str(k), str(v)) for k, v in request.headers.items()],
                request_body=body_bytes(request),
                status=int(status.get("code", 200)),
                reason=str(status.get("message", "")),
                response_headers=[(k, v) for k, values in (response.get("headers") or {}).items() for v in _listed(values)],
                response_body=body.encode("utf-8") if isinstance(body, str) else bytes(body or b""),
            )
        )
    return session


def _listed(values: Any) -> list[str]:
    return [str(v) for v in values] if isinstance(values, (list, tuple)) else [str(values)]


class _Renderer:
    """Renders loaded cassettes with one set of stable fake values: job K keeps its prompt_id and filenames."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        # Names are allocated as if into an empty output folder: ComfyUI's rule, nothing on disk.
        nowhere = Path("/nonexistent/comfy-cassettes-vcr")
        roots = FileRoots(nowhere / "output", nowhere / "input", nowhere / "temp")
        self._namer = OutputNamer(roots, rng=random.Random(seed + 1))  # names as loaded: the recorded prefixes
        self._played = OutputNamer(roots, rng=random.Random(seed + 1))  # names as played: the submitted prefixes
        self._number = 0
        self._common: dict[str, Any] = {
            "client_id": uuid.UUID(int=self._rng.getrandbits(128)).hex,
            "now_ms": int(time.time() * 1000),
            "http_date": formatdate(usegmt=True),
        }
        self._templates: list[RecordedTemplate] = []
        self._taken: set[str] = set()
        self._version = 0  # bumped whenever a job's names change (live.LiveJob.settle)
        self._live: list[LiveJob] = []  # every job of every cassette of this load

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _bind_job(self, job: Job) -> dict[str, Any]:
        binding = bind_job(prompt_id=self._uuid(), number=self._number, workflow=job.workflow, images=job.outputs,
                           namer=self._namer, refuse_outside=False)
        self._number += 1
        self._taken.update(v for v in binding.values.values() if isinstance(v, str) and v)
        return dict(binding.values)

    def render(self, cassette: Cassette) -> list[tuple[Request, dict[str, Any]]]:
        jobs = [LiveJob(job, self._bind_job(job), self._played, self._changed, self._live) for job in cassette.jobs]
        out: list[tuple[Request, dict[str, Any]]] = []
        current = self._current(jobs)
        for item in cassette.interactions:
            k = item.job
            live = jobs[k] if k is not None and 0 <= k < len(jobs) else None
            bindings = {**current, **(live.values if live is not None else {})}
            names = names_in(item.to_dict())
            for name in names:
                if name not in bindings:
                    bindings[name] = self._fallback(name)
            request, response = self._interaction(cassette, item, bindings)
            if live is not None or any(name.startswith(("out.", "job.")) for name in names):
                response = self._follow(cassette, item, request, response, live, jobs, {n: bindings[n] for n in names})
            out.append((request, response))
        return out

    def _current(self, jobs: list[LiveJob]) -> dict[str, Any]:
        """Every job's values as other interactions' placeholders see them (``job.<k>.*``), as they are now."""
        values = dict(self._common)
        for index, live in enumerate(jobs):
            values.update({f"job.{index}.{name}": value for name, value in live.values.items()})
        return values

    def _follow(self, cassette: Cassette, item: Interaction, request: Request, response: dict[str, Any], live: LiveJob | None,
                jobs: list[LiveJob], fixed: dict[str, Any]) -> LiveResponse:
        """The answer rendered again when names change (live.py); a job's ``POST /prompt`` names the job's outputs
        from the prompt it matched, and the job's requests are matched with those names."""
        def parts() -> tuple[dict[str, Any], dict[str, Any]]:
            return self._response_parts(cassette, item, {**fixed, **self._current(jobs), **(live.values if live is not None else {})})

        settle = None
        template = request.comfy_template
        if live is not None:
            template.judge = live.judge
            if item.method == "POST" and normalize(item.path) == "/prompt":
                template.offer, settle = live.offer, live.settle
        return LiveResponse(response, parts, self._version_now, settle)

    def _version_now(self) -> int:
        return self._version

    def _changed(self) -> None:
        self._version += 1

    def _fallback(self, name: str) -> Any:
        """A value for a placeholder no recorded job explains (a sid, an output of a job we do not know)."""
        if name.startswith("sid."):
            return uuid.UUID(int=self._rng.getrandbits(128)).hex
        if name.endswith(".subfolder"):
            return ""
        if name.endswith(".filename"):
            return self._namer.save_names("ComfyUI", width=512, height=512, count=1)[0].filename
        if name.endswith("number"):
            return 0
        return self._uuid()

    def _interaction(self, cassette: Cassette, item: Interaction, bindings: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        body = item.request_body
        if isinstance(body, str):
            body = _render_body(body, bindings)
        headers = {k: [render_text(v, bindings) for v in values] for k, values in item.request_headers.items()}
        request = Request(item.method, render_text(item.uri, bindings, url_escape), body, headers)
        own = {name: bindings[name] for name in names_in(item.uri) if isinstance(bindings.get(name), str)}
        template = RecordedTemplate(item.uri, own)
        self._templates.append(template)
        request.comfy_template = template
        answer, answer_headers = self._response_parts(cassette, item, bindings)
        return request, {"status": {"code": item.status, "message": item.reason}, "headers": answer_headers, "body": answer}

    @staticmethod
    def _response_parts(cassette: Cassette, item: Interaction, bindings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The answer's body and headers rendered with ``bindings`` (bodies stored decoded, re-measured on replay)."""
        if item.body_file is not None:
            content = cassette.read_blob(item.body_file)
        elif isinstance(item.body, str):
            content = _render_body(item.body, bindings).encode("utf-8")
        else:
            content = bytes(item.body)
        headers = {k: [render_text(v, bindings) for v in values] for k, values in item.response_headers.items()
                   if k.lower() not in TRANSFER_HEADERS}
        return {"string": content}, headers

    def seal(self) -> None:
        """Give every template the full set of values handed out, once all cassettes are rendered."""
        taken = frozenset(self._taken)
        for template in self._templates:
            template.taken = taken


def _render_body(text: str, bindings: Mapping[str, Any]) -> str:
    """JSON text gets JSON-escaped values; anything else plain substitution."""
    escape = json_escape if text.lstrip()[:1] in ("{", "[") else None
    return render_text(text, bindings, escape)
