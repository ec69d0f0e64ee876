"""vcrpy matchers for ComfyUI requests: a recorded placeholder (prompt_id, filename) matches any value it could
have been rendered with, and volatile fields (seeds chosen by the client, timestamps) are ignored."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from vcr.request import Request  # type: ignore[import-untyped]

from ..cassette.templating import LBRACE, PLACEHOLDER
from ..comfy.nodes import VOLATILE_INPUTS, VOLATILE_KEYS
from ..comfy.routes import normalize
from ..record.session import json_or_none

@dataclass
class RecordedTemplate:
    """What a rendered request looked like in the cassette, so matchers can treat placeholders as wildcards."""

    uri: str
    own: dict[str, str]  # the values this interaction's placeholders were rendered with
    taken: frozenset[str] = frozenset()  # every prompt_id and filename handed to other recorded jobs
    offer: Callable[[bytes], None] | None = None  # told the body of a request matching a recorded POST /prompt
    judge: Callable[[str, str], bool | None] | None = None  # its job's names as played (vcr/live.py), asked first


def _template(request: Request) -> RecordedTemplate | None:
    found = getattr(request, "comfy_template", None)
    return found if isinstance(found, RecordedTemplate) else None


def _sides(r1: Request, r2: Request) -> tuple[Request, RecordedTemplate | None, Request]:
    """(incoming, template, recorded): vcrpy passes the incoming request first, but be safe both ways."""
    if _template(r2) is not None:
        return r1, _template(r2), r2
    return r2, _template(r1), r1


def _fits(template_text: str, value: str, template: RecordedTemplate) -> bool:
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
        verdict = template.judge(name, got) if template.judge is not None else None
        if verdict is not None:
            if not verdict:
                return False
            continue
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
    a, b = body_bytes(r1), body_bytes(r2)
    incoming, template, _ = _sides(r1, r2)
    if a != b:
        ja, jb = json_or_none(a), json_or_none(b)
        if ja is None or jb is None:
            if _is_multipart(r1) and _is_multipart(r2):
                return  # each upload draws a new random boundary
            raise AssertionError(f"bodies differ ({len(a)} bytes vs {len(b)} bytes recorded)")
        sa, sb = stable_json(ja), stable_json(jb)
        if sa != sb:
            raise AssertionError(_json_diff(sa, sb))
    if template is not None and template.offer is not None:
        template.offer(a if incoming is r1 else b)  # the answer names this job's outputs from the prompt it was sent


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


def body_bytes(request: Request) -> bytes:
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
