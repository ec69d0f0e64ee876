"""vcrpy integration: a persister for our templated cassettes, matchers that ignore volatile fields, recording filters.

pytest-recording users get all of it from the plugin (``pytest_recording_configure``); plain vcrpy users call
:func:`configure_vcr` on their ``vcr.VCR``::

    my_vcr = vcr.VCR()
    configure_vcr(my_vcr)
    with my_vcr.use_cassette(bundled_cassette("basic_save"), record_mode="none"):
        ...  # httpx / requests calls to any ComfyUI URL replay the recording

Loading renders every ``{{placeholder}}`` with stable fake values per recorded job, so the prompt_id a
replayed ``POST /prompt`` answers is the one the next ``GET /history/<id>`` expects, and the filenames the
history lists are the ones ``/view`` serves. Saving turns what vcrpy recorded into a RawSession and writes it
as a templated, scrubbed cassette (record/build.py), so a cassette recorded in-process also replays in ``serve``.
"""

from __future__ import annotations

import difflib
import json
import random
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from vcr.persisters.filesystem import CassetteNotFoundError, FilesystemPersister  # type: ignore[import-untyped]
from vcr.request import Request  # type: ignore[import-untyped]
from vcr.serialize import deserialize  # type: ignore[import-untyped]

from .cassette import load as cassette_io
from .cassette.load import YAML_LOADER
from .cassette.model import Cassette, Interaction, Job
from .comfy.folders import FileRoots, OutputNamer
from .comfy.nodes import VOLATILE_INPUTS, VOLATILE_KEYS
from .comfy.routes import is_comfy_path, normalize
from .record.modes import RecordMode
from .record.scrub import DEFAULT_HEADERS, Scrubber
from .record.session import TRANSFER_HEADERS, HttpExchange, RawSession, json_or_none
from .record.writer import write_session
from .replay.config import ADMIN_PREFIX, BUNDLED_DIR
from .cassette.templating import LBRACE, PLACEHOLDER, bind_job, json_escape, names_in, render_text, url_escape

MATCH_ON = ("method", "comfy_path", "comfy_query", "comfy_body")


def bundled_cassette(name: str) -> str:
    """Absolute path of a cassette shipped with comfy-cassettes, e.g. ``bundled_cassette("basic_save")``."""
    path = BUNDLED_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no bundled cassette {name!r}; bundled: {known}")
    return str(path)


def vcr_config() -> dict[str, Any]:
    """Our defaults as ``vcr.use_cassette`` keywords (what pytest-recording's ``vcr_config`` returns)."""
    return {
        "match_on": MATCH_ON,
        # vcrpy drops these before anything else sees them; build_cassette scrubs our cassettes again, bodies too.
        "filter_headers": DEFAULT_HEADERS,
        "before_record_request": skip_admin_requests,
        "before_record_response": drop_set_cookie,
        "decode_compressed_response": True,
    }


def configure_vcr(vcr: Any, *, seed: int = 0, scrubber: Scrubber | None = None) -> None:
    """Register our matchers and persister on a ``vcr.VCR`` and make :func:`vcr_config` its defaults.

    Keeps the extra cassettes pytest-recording's persister was given (``@pytest.mark.vcr("a.yaml")``).
    Keywords passed to ``use_cassette`` (a user's ``vcr_config``) still override these defaults. ``scrubber``
    says what to remove from ComfyUI cassettes before they are written (default :class:`Scrubber`).
    """
    for matcher in (comfy_path, comfy_query, comfy_body):
        vcr.register_matcher(matcher.__name__, matcher)
    extra = [str(p) for p in getattr(vcr.persister, "extra_paths", []) or []]
    vcr.register_persister(ComfyPersister(extra, seed=seed, scrubber=scrubber))
    vcr.match_on = MATCH_ON
    vcr.filter_headers = DEFAULT_HEADERS
    vcr.before_record_request = skip_admin_requests
    vcr.before_record_response = drop_set_cookie
    vcr.decode_compressed_response = True


# ---------------------------------------------------------------- filters


def skip_admin_requests(request: Request) -> Request | None:
    """Calls to the replay server's admin API (the pytest fixtures' resets) go to the network, unrecorded."""
    return None if urlsplit(request.uri).path.startswith(ADMIN_PREFIX) else request


def drop_set_cookie(response: dict[str, Any]) -> dict[str, Any]:
    """Session cookies are secrets too."""
    headers = response.get("headers") or {}
    for key in [k for k in headers if k.lower() == "set-cookie"]:
        del headers[key]
    return response


# ---------------------------------------------------------------- matchers


@dataclass
class _Template:
    """What a rendered request looked like in the cassette, so matchers can treat placeholders as wildcards."""

    uri: str
    own: dict[str, str]  # the values this interaction's placeholders were rendered with
    taken: frozenset[str] = frozenset()  # every prompt_id and filename handed to other recorded jobs


def _template(request: Request) -> _Template | None:
    found = getattr(request, "comfy_template", None)
    return found if isinstance(found, _Template) else None


def _sides(r1: Request, r2: Request) -> tuple[Request, _Template | None, Request]:
    """(incoming, template, recorded): vcrpy passes the incoming request first, but be safe both ways."""
    if _template(r2) is not None:
        return r1, _template(r2), r2
    return r2, _template(r1), r1


def _fits(template_text: str, value: str, template: _Template) -> bool:
    """True when ``value`` fits ``template_text`` with each placeholder standing for a plausible value."""
    names: list[str] = []
    pattern = ""
    last = 0
    for match in PLACEHOLDER.finditer(template_text):
        pattern += re.escape(template_text[last : match.start()])
        if match.group(1) == LBRACE:
            pattern += re.escape("{{")  # recorded literal text, not a value
        else:
            pattern += "(.*?)"
            names.append(match.group(1))
        last = match.end()
    found = re.fullmatch(pattern + re.escape(template_text[last:]), value)
    if found is None:
        return False
    for name, got in zip(names, found.groups()):
        # Another job's prompt_id or filename means another recorded request; anything unknown is fine.
        if got != template.own.get(name) and got in template.taken:
            return False
    return True


def comfy_path(r1: Request, r2: Request) -> None:
    """Same ComfyUI route (``/api/x`` is ``/x``; host and port ignored); prompt_ids and filenames are wildcards."""
    incoming, template, recorded = _sides(r1, r2)
    got = normalize(unquote(incoming.path))
    if template is None:
        want = normalize(unquote(recorded.path))
        if got != want:
            raise AssertionError(f"{got} != {want}")
        return
    want = normalize(urlsplit(template.uri).path)
    if not _fits(want, got, template):
        raise AssertionError(f"{got} does not fit recorded {want}")


def comfy_query(r1: Request, r2: Request) -> None:
    """Same query parameters; templated values (filenames, subfolders) are wildcards."""
    incoming, template, recorded = _sides(r1, r2)
    got = sorted(parse_qsl(urlsplit(incoming.uri).query, keep_blank_values=True))
    source = template.uri if template is not None else recorded.uri
    want = sorted(parse_qsl(urlsplit(source).query, keep_blank_values=True))
    if [k for k, _ in got] != [k for k, _ in want]:
        raise AssertionError(f"query keys {[k for k, _ in got]} != recorded {[k for k, _ in want]}")
    for (key, value), (_, expected) in zip(got, want):
        ok = _fits(expected, value, template) if template is not None and "{{" in expected else value == expected
        if not ok:
            raise AssertionError(f"query {key}: {value!r} != recorded {expected!r}")


def comfy_body(r1: Request, r2: Request) -> None:
    """Same body; JSON is compared without client_id, prompt_id, ids to delete, and the inputs the replay server
    ignores when it matches a prompt: seeds, texts and filename prefixes (a per-job ``gen_job_<id>``)."""
    a, b = _body_bytes(r1), _body_bytes(r2)
    if a == b:
        return
    ja, jb = json_or_none(a), json_or_none(b)
    if ja is not None and jb is not None:
        sa, sb = stable_json(ja), stable_json(jb)
        if sa != sb:
            raise AssertionError(_json_diff(sa, sb))
        return
    if _is_multipart(r1) and _is_multipart(r2):
        return  # each upload draws a new random boundary
    raise AssertionError(f"bodies differ ({len(a)} bytes vs {len(b)} bytes recorded)")


def stable_json(value: Any) -> Any:
    """A request body without the fields that change from run to run."""
    if not isinstance(value, dict):
        return value
    out = {k: v for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(out.get("extra_data"), dict):
        out["extra_data"] = {k: v for k, v in out["extra_data"].items() if k not in VOLATILE_KEYS}
    if isinstance(out.get("delete"), list):
        out["delete"] = len(out["delete"])
    prompt = out.get("prompt")
    if isinstance(prompt, dict):
        out["prompt"] = {
            node_id: (
                {**node, "inputs": {k: v for k, v in node["inputs"].items() if k not in VOLATILE_INPUTS}}
                if isinstance(node, dict) and isinstance(node.get("inputs"), dict)
                else node
            )
            for node_id, node in prompt.items()
        }
    return out


def _body_bytes(request: Request) -> bytes:
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    elif isinstance(body, Iterable) and not isinstance(body, (bytes, bytearray, str)):
        body = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in body)
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _json_diff(got: Any, recorded: Any) -> str:
    lines = difflib.unified_diff(
        json.dumps(recorded, indent=1, sort_keys=True).splitlines(),
        json.dumps(got, indent=1, sort_keys=True).splitlines(),
        "recorded", "this request", n=0, lineterm="",
    )
    return "JSON bodies differ (client_id, prompt_id, seeds, texts and filename prefixes ignored):\n" + "\n".join(list(lines)[:20])


def _is_multipart(request: Request) -> bool:
    return "multipart/" in str(request.headers.get("Content-Type", "")).lower()


# ---------------------------------------------------------------- the persister


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
                data = yaml.load(text, Loader=YAML_LOADER)
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
                request_body=_body_bytes(request),
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
        self._namer = OutputNamer(FileRoots(nowhere / "output", nowhere / "input", nowhere / "temp"), rng=random.Random(seed + 1))
        self._number = 0
        self._common: dict[str, Any] = {
            "client_id": uuid.UUID(int=self._rng.getrandbits(128)).hex,
            "now_ms": int(time.time() * 1000),
            "http_date": formatdate(usegmt=True),
        }
        self._templates: list[_Template] = []
        self._taken: set[str] = set()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _bind_job(self, job: Job) -> dict[str, Any]:
        binding = bind_job(prompt_id=self._uuid(), number=self._number, workflow=job.workflow, images=job.outputs,
                           namer=self._namer, refuse_outside=False)
        self._number += 1
        self._taken.update(v for v in binding.values.values() if isinstance(v, str) and v)
        return dict(binding.values)

    def render(self, cassette: Cassette) -> list[tuple[Request, dict[str, Any]]]:
        jobs = [self._bind_job(job) for job in cassette.jobs]
        common = dict(self._common)
        for index, bound in enumerate(jobs):
            common[f"job.{index}.prompt_id"] = bound["prompt_id"]
            common[f"job.{index}.number"] = bound["number"]
        out = []
        for item in cassette.interactions:
            k = item.job
            bindings = {**common, **(jobs[k] if k is not None and 0 <= k < len(jobs) else {})}
            for name in names_in(item.to_dict()):
                if name not in bindings:
                    bindings[name] = self._fallback(name)
            out.append(self._interaction(cassette, item, bindings))
        return out

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
        template = _Template(item.uri, own)
        self._templates.append(template)
        request.comfy_template = template
        if item.body_file is not None:
            content = cassette.read_blob(item.body_file)
        elif isinstance(item.body, str):
            content = _render_body(item.body, bindings).encode("utf-8")
        else:
            content = bytes(item.body)
        response = {
            "status": {"code": item.status, "message": item.reason},
            # Our bodies are stored decoded and re-measured on replay.
            "headers": {k: [render_text(v, bindings) for v in values] for k, values in item.response_headers.items()
                        if k.lower() not in TRANSFER_HEADERS},
            "body": {"string": content},
        }
        return request, response

    def seal(self) -> None:
        """Give every template the full set of values handed out, once all cassettes are rendered."""
        taken = frozenset(self._taken)
        for template in self._templates:
            template.taken = taken


def _render_body(text: str, bindings: Mapping[str, Any]) -> str:
    """JSON text gets JSON-escaped values; anything else plain substitution."""
    escape = json_escape if text.lstrip()[:1] in ("{", "[") else None
    return render_text(text, bindings, escape)
