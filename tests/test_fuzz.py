"""schemathesis against a live `comfy-cassettes serve`, over its own OpenAPI document: every admin and ComfyUI
operation with valid and invalid bodies, wrong types, huge and odd values; then hostile paths by hand.

No 5xx but ComfyUI's own documented 500s, admin answers in their documented shapes, admin bodies that break the
contract refused, the server still serving afterwards, nothing written outside its folders. Bounded: a fixed
number of examples per operation, generated deterministically; valid time values are capped at 50 ms in the cases
sent (so a generated delay, outage or wait cannot stall the run; their bounds are tested in test_admin_contract).
"""

from __future__ import annotations


import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from comfy_cassettes.contract.openapi import openapi_document
from comfy_cassettes.replay.config import ADMIN_PREFIX

# Per operation, valid and invalid data. The suite runs a deterministic 12 (the bugs fuzzing found so far showed
# within the first few); COMFY_CASSETTES_FUZZ_EXAMPLES=200 digs deeper by hand.
EXAMPLES = int(os.environ.get("COMFY_CASSETTES_FUZZ_EXAMPLES", "12"))
CAP_S = 0.05
WAITING = (f"{ADMIN_PREFIX}/clock/wait", f"{ADMIN_PREFIX}/clock/advance")
SENT = {"requests": 0, "by_status": {}}


def _without_ws(document: dict[str, Any]) -> dict[str, Any]:
    """The document less /ws: a WebSocket upgrade is not an HTTP operation schemathesis can call."""
    document["paths"].pop("/ws")
    return document


def _capped(value: Any) -> Any:
    """A case's body with valid time values (seconds, max_seconds, timeout: 0-3600) capped for the run; invalid
    ones are left as generated, so the server must still refuse them."""
    if isinstance(value, list):
        return [_capped(v) for v in value]
    if not isinstance(value, dict):
        return value
    capped = {k: _capped(v) for k, v in value.items()}
    for key in ("seconds", "max_seconds", "timeout"):
        number = capped.get(key)
        if isinstance(number, (int, float)) and not isinstance(number, bool) and CAP_S < number <= 3600:
            capped[key] = CAP_S
    return capped


schema = schemathesis.openapi.from_dict(_without_ws(openapi_document()))
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES, deterministic=True)
# The fuzzing phase only: schemathesis's exhaustive "coverage" phase alone takes minutes over this document.
schema.config.phases.update(phases=["examples", "fuzzing"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `serve` subprocess with its folders under one root; at the end: still serving, nothing written elsewhere."""
    root = tmp_path_factory.mktemp("fuzz")
    cwd = root / "cwd"
    cwd.mkdir()
    ready = root / "ready.json"
    folders = {name: root / name for name in ("output", "input", "temp", "user")}
    # Its log goes to a file, read at the end: a pipe nobody reads meanwhile fills up with the refused prompts it
    # logs (a 100 KB class_type among them) and the server blocks writing the next line.
    log = tmp_path_factory.mktemp("fuzz-log") / "serve.log"
    with log.open("w") as log_file:  # (the child has its own copy of the descriptor)
        process = subprocess.Popen(
            [sys.executable, "-m", "comfy_cassettes", "serve", "--port", "0", "--ready-file", str(ready),
             *(arg for name, path in folders.items() if name != "user" for arg in (f"--{name}-dir", str(path)))],
            cwd=cwd, stdout=subprocess.DEVNULL, stderr=log_file, text=True,
        )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.02)
    url = json.loads(ready.read_text())["url"]
    try:
        yield url
        assert process.poll() is None, "the server died during the fuzz run"
        _reset(url)
        assert httpx.get(url + "/queue", timeout=5).status_code == 200
        problems = httpx.get(f"{url}{ADMIN_PREFIX}/problems", timeout=5).json()
        assert not problems["errors"], problems["errors"]
        written = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                         if p != ready and p != cwd and not any(p == f or f in p.parents for f in folders.values()))
        assert written == [], f"the server wrote outside its folders: {written}"
        print(f"\nfuzz: {SENT['requests']} requests, statuses {dict(sorted(SENT['by_status'].items()))}")
    finally:
        process.terminate()
        process.communicate(timeout=10)
        errors = log.read_text(errors="replace")
        assert "Traceback" not in errors, errors[-4000:]


def _reset(url: str) -> None:
    """Forget what a case left (faults, holds, queue): a capped `down` may still be ending, so retry briefly."""
    for _ in range(50):
        try:
            httpx.post(f"{url}{ADMIN_PREFIX}/reset", timeout=5).raise_for_status()
            httpx.post(f"{url}{ADMIN_PREFIX}/clock/release", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(CAP_S / 2)
    raise AssertionError("the server did not come back after a case")


def _count(status: int) -> None:
    SENT["requests"] = int(SENT["requests"]) + 1
    by_status: dict[int, int] = SENT["by_status"]  # type: ignore[assignment]
    by_status[status] = by_status.get(status, 0) + 1


def only_documented_server_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 5xx only where the document lists it (ComfyUI's own crashes), with aiohttp's crash body."""
    if response.status_code >= 500:
        documented = case.operation.definition.raw.get("responses", {})
        assert str(response.status_code) in documented, f"undocumented {response.status_code} from {case.method} {case.path}"
        assert response.text == "500 Internal Server Error\n\nServer got itself in trouble", response.text[:500]
    return None


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_fuzz(case: Any, served: str) -> None:
    admin = case.path.startswith(ADMIN_PREFIX)
    checks = [only_documented_server_errors, content_type_conformance, response_schema_conformance]
    if admin:  # the contract is ours: every answer documented, every invalid body refused
        checks += [not_a_server_error, status_code_conformance]
        if case.body is not NOT_SET:  # (without a body schemathesis may call a positive case negative)
            checks.append(negative_data_rejection)
    if admin and case.body is not NOT_SET and not isinstance(case.body, (str, bytes)):
        case.body = _capped(case.body)
    if case.path in WAITING and (case.body is NOT_SET or (isinstance(case.body, dict) and "timeout" not in case.body)):
        case.body = {**(case.body if isinstance(case.body, dict) else {}), "timeout": CAP_S}  # not the 5 s default
    try:
        response = case.call(base_url=served, timeout=10)
        _count(response.status_code)
        case.validate_response(response, checks=checks)
    finally:
        if admin and case.method != "GET":  # faults, holds and outages live on the admin side: forget them
            _reset(served)


HOSTILE = [
    "/view?filename=../../../../etc/passwd", "/view?filename=..%2F..%2Fetc%2Fpasswd&type=output",
    "/view?filename=x.png&subfolder=../../..", "/view?filename=%00.png", "/view?filename=" + "a" * 10_000,
    "/history/..%2F..%2Fetc%2Fpasswd", "/history/" + "%FF" * 100, "/object_info/..%2F..", "/api/../../etc/passwd",
    "/__cassettes__/faults/..%2F..", "/__cassettes__/../__cassettes__/reset", "/%2e%2e/%2e%2e/etc/passwd",
    "/" + "x/" * 2000, "/view?type=output&filename=C:%5Cwindows%5Cwin.ini", "/upload/image?subfolder=../../x",
]


def test_hostile_paths_and_bodies(served: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as http:
        for path in HOSTILE:
            for method in ("GET", "POST"):
                response = http.request(method, path)
                _count(response.status_code)
                assert response.status_code < 500 or response.text.startswith("500 Internal Server Error"), (method, path, response.status_code)
        for body in (b"\x00" * 10, b"{" * 100_000, b"[" * 5000 + b"]" * 5000, json.dumps({"prompt": {"1": {"class_type": "x" * 100_000}}}).encode()):
            for path in ("/prompt", "/queue", "/history", "/interrupt", "/free", f"{ADMIN_PREFIX}/journal/find", f"{ADMIN_PREFIX}/faults"):
                response = http.post(path, content=body)
                _count(response.status_code)
                # ComfyUI's own handlers crash on a body request.json() cannot read: its plain 500, never ours.
                crashes = not path.startswith(ADMIN_PREFIX) and response.text == "500 Internal Server Error\n\nServer got itself in trouble"
                assert response.status_code < 500 or crashes, (path, body[:20], response.status_code)
        multipart = http.post("/upload/image", files={"image": ("../../escape.png", b"\x89PNG\r\n\x1a\n")}, data={"subfolder": "../../.."})
        _count(multipart.status_code)
        assert multipart.status_code in (200, 400, 403)
