"""One contract for the admin API: every route reads its body and query strictly, the OpenAPI document is valid
and says what the server accepts and answers, ReplayControl's signatures are the models', the docs' tables
are rendered from them, and a server bound beyond loopback guards its admin API with a token."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
import time
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, TypeAdapter
from starlette.routing import Mount

from comfy_cassettes import ReplayControl
from comfy_cassettes.comfy.routes import ROUTES
from comfy_cassettes.contract import bodies as m
from comfy_cassettes.contract.comfy import OPERATIONS
from comfy_cassettes.contract.openapi import openapi_document
from comfy_cassettes.contract.readme import render
from comfy_cassettes.contract.routes import ADMIN_PREFIX, ADMIN_ROUTES, ROUTES_BY_NAME, AdminRoute
from comfy_cassettes.errors import AdminRequestError, FaultSpecError
from comfy_cassettes.replay.config import BUNDLED_DIR, ReplayConfig
from comfy_cassettes.replay.server import ReplayServer

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 7}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "contract"}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    root = tmp_path_factory.mktemp("contract")
    config = ReplayConfig(cassettes=(BUNDLED_DIR / "basic_save.yaml",), port=0, output_dir=root / "out",
                          input_dir=root / "in", temp_dir=root / "temp")
    with ReplayServer(config) as running:
        yield running


@pytest.fixture
def http(server: ReplayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post(f"{ADMIN_PREFIX}/reset")
        yield client


def _send(http: httpx.Client, route: AdminRoute, body: Any = None, params: dict[str, str] | None = None) -> httpx.Response:
    path = route.full_path.replace("{fault_id}", "f999")
    return http.request(route.method, path, json=body, params=params)


def _body_fields(route: AdminRoute) -> list[str]:
    return list(route.body.model_fields) if isinstance(route.body, type) and issubclass(route.body, BaseModel) else []


# ---------------------------------------------------------------- strict bodies and queries, every route


@pytest.mark.parametrize("route", [r for r in ADMIN_ROUTES if r.body is not None], ids=lambda r: r.label)
def test_an_unknown_body_key_is_a_400_naming_it_and_the_accepted_keys(http: httpx.Client, route: AdminRoute) -> None:
    body: Any = {"kind": "status", "stauts": 503} if route.body is m.FaultRules else {"timeout_s": 0.2}
    answer = _send(http, route, body)
    assert answer.status_code == 400, answer.text
    refusal = m.Refusal.model_validate(answer.json())
    unknown = "stauts" if route.body is m.FaultRules else "timeout_s"
    assert unknown in refusal.error and refusal.problems and refusal.problems[0].key == unknown
    expected = list(m.StatusRule.model_fields) if route.body is m.FaultRules else _body_fields(route)
    assert refusal.accepted == expected
    assert ", ".join(expected) in refusal.error or not expected


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: r.label)
def test_an_unknown_query_parameter_is_a_400_on_every_route(http: httpx.Client, route: AdminRoute) -> None:
    answer = _send(http, route, params={"verbose": "1"})
    assert answer.status_code == 400, answer.text
    assert "verbose" in answer.json()["error"]
    assert answer.json()["accepted"] == (list(route.query.model_fields) if route.query else [])


def _wrong_value(schema: dict[str, Any]) -> Any:
    """A JSON value of a type the field does not take."""
    types = {s.get("type") for s in schema.get("anyOf", [schema])} | {"object" if "$ref" in s else None for s in schema.get("anyOf", [schema])}
    return "text" if "object" in types or "array" in types else {"not": "this"}


@pytest.mark.parametrize(
    ("route", "field"),
    [(r, f) for r in ADMIN_ROUTES if r.body is not m.FaultRules for f in _body_fields(r)]
    + [(ROUTES_BY_NAME["add_faults"], f"{kind}.{f}") for kind, model in m.FAULT_MODELS.items() for f in model.model_fields if f != "kind"],
    ids=str,
)
def test_a_mistyped_value_is_a_400_naming_the_key(http: httpx.Client, route: AdminRoute, field: str) -> None:
    if route.body is m.FaultRules:
        kind, name = field.split(".")
        model: type[BaseModel] = m.FAULT_MODELS[kind]
        body: dict[str, Any] = {"kind": kind, **({"seconds": 0.01} if "seconds" in model.model_fields else {})}
    else:
        model, name, body = route.body, field, {}
    schema = model.model_json_schema()["properties"][name]
    body[name] = _wrong_value(schema)
    answer = _send(http, route, body)
    assert answer.status_code == 400, (body, answer.text)
    [problem] = answer.json()["problems"]
    assert problem["key"].split(".")[0] == name and problem["problem"]


@pytest.mark.parametrize("raw", [b"{nope", b"[1, 2]", b'"text"', b"3", b'{"timeout": NaN}', b'{"timeout": Infinity}', b"\xff\xfe"])
def test_bodies_that_are_not_a_json_object_are_400s(http: httpx.Client, raw: bytes) -> None:
    for path in ("/clock/wait", "/journal/find", "/journal/assert", "/reset", "/faults"):
        answer = http.post(ADMIN_PREFIX + path, content=raw)
        assert answer.status_code == 400, (path, raw, answer.text)
        assert answer.json()["error"]


def test_booleans_strings_and_bounds_are_not_coerced(http: httpx.Client) -> None:
    for path, body in [
        ("/clock/wait", {"timeout": "0.1"}), ("/clock/wait", {"timeout": True}), ("/clock/wait", {"timeout": -1}),
        ("/clock/wait", {"timeout": 1e9}), ("/journal/assert", {"count": True}), ("/journal/assert", {"count": -1}),
        ("/journal/find", {"status": "200"}), ("/faults", {"kind": "status", "count": 0}),
        ("/faults", {"kind": "status", "status": 200}), ("/faults", {"kind": "delay", "seconds": 0.2, "max_seconds": 0.1}),
        ("/faults", {"kind": "ws_disconnect", "code": 999}), ("/faults", {"kind": "down", "seconds": 1e12}),
        ("/clock/hold", {"at": "sometime"}), ("/clock/hold", {"node": ""}),
    ]:
        answer = http.post(ADMIN_PREFIX + path, json=body)
        assert answer.status_code == 400, (path, body, answer.text)


def test_the_issues_examples(http: httpx.Client) -> None:
    # /clock/wait {"timeout_s": 0.2} used to wait the default 5 s and answer 408.
    started = time.monotonic()
    refused = http.post(f"{ADMIN_PREFIX}/clock/wait", json={"timeout_s": 0.2})
    assert refused.status_code == 400 and time.monotonic() - started < 1
    assert refused.json()["accepted"] == ["prompt_id", "at", "timeout"]
    # /clock/hold with a misspelt key used to hold every job.
    assert http.post(f"{ADMIN_PREFIX}/clock/hold", json={"at": "node", "node": "2", "prompt": "x"}).status_code == 400
    assert http.get(f"{ADMIN_PREFIX}/clock").json()["holds"] == []
    # The docs' {pattern, count} form of /journal/assert works, as does the flat one; both at once is refused.
    http.get("/queue")
    nested = http.post(f"{ADMIN_PREFIX}/journal/assert", json={"pattern": {"method": "GET", "path": "/queue"}, "count": 1})
    assert nested.status_code == 200 and nested.json()["pattern"] == {"method": "GET", "path": "/queue"}
    assert http.post(f"{ADMIN_PREFIX}/journal/assert", json={"method": "GET", "path": "/queue", "count": 1}).status_code == 200
    assert http.post(f"{ADMIN_PREFIX}/journal/count", json={"pattern": {"path": "/queue"}}).json() == {"count": 1}
    both = http.post(f"{ADMIN_PREFIX}/journal/assert", json={"pattern": {"path": "/queue"}, "method": "GET"})
    assert both.status_code == 400 and "not both" in both.json()["error"]
    # A wait that times out says so with the timeout it was given.
    waited = http.post(f"{ADMIN_PREFIX}/clock/wait", json={"timeout": 0.05})
    assert waited.status_code == 408 and "0.05" in waited.json()["error"]


def test_replaycontrol_raises_the_servers_explanation(server: ReplayServer) -> None:
    with ReplayControl(server.url) as control:
        with pytest.raises(AdminRequestError, match="'at'") as refused:
            control.hold("sometime")
        assert refused.value.accepted == ["at", "node", "step", "prompt_id"]
        with pytest.raises(FaultSpecError, match="400-599"):
            control.fail("/prompt", 200)
        rule = control.fail("/prompt", 503, count=None)
        assert control.faults()[0]["remaining"] is None
        assert control.remove_fault(rule["id"]) and not control.remove_fault(rule["id"])


# ---------------------------------------------------------------- the OpenAPI document


def test_the_openapi_document_is_valid_and_served_and_printed(http: httpx.Client) -> None:
    document = openapi_document()
    validate(document)  # openapi-spec-validator: OpenAPI 3.1 + JSON Schema 2020-12
    assert document["openapi"] == "3.1.0"
    assert http.get(f"{ADMIN_PREFIX}/openapi.json").json() == document
    printed = subprocess.run([sys.executable, "-m", "comfy_cassettes", "openapi"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(printed.stdout) == document


def test_the_document_lists_every_route_the_server_has(server: ReplayServer) -> None:
    paths = openapi_document()["paths"]
    router = server._server.config.app.app  # the routes, under the replay's middleware
    mounts = [r for r in router.routes if isinstance(r, Mount) and r.path == ADMIN_PREFIX]
    assert len(mounts) == 1, "the admin API is one app mounted under its prefix"
    served = {(method, ADMIN_PREFIX + r.path) for r in mounts[0].routes for method in getattr(r, "methods", None) or ()}
    served -= {("HEAD", r.full_path) for r in ADMIN_ROUTES}
    documented = {(method.upper(), path) for path, operations in paths.items() if path.startswith(ADMIN_PREFIX) for method in operations}
    assert served == documented
    for route in ROUTES:
        assert route.method.lower() in paths[route.path.replace(":path}", "}")]
    # Every route of the captured ComfyUI (0.3.64) has its shapes; a newer version's (a profile's) may not yet.
    undescribed = [r.name for r in ROUTES if r.name not in OPERATIONS and r.name != "post_upload" and not getattr(r, "needs", None)]
    assert not undescribed, f"describe these ComfyUI routes in contract/comfy.py OPERATIONS (shapes from the captures): {undescribed}"
    assert "get" in paths["/ws"] and "WsMessage" in openapi_document()["components"]["schemas"]


def test_the_documents_bodies_are_what_the_server_accepts(http: httpx.Client) -> None:
    schemas = openapi_document()["components"]["schemas"]
    for route in ADMIN_ROUTES:
        if not (isinstance(route.body, type) and issubclass(route.body, BaseModel)) or route.body is m.NoBody:
            continue
        documented = schemas[route.body.__name__]
        assert set(documented["properties"]) == set(route.body.model_fields)
        assert documented["additionalProperties"] is False
    for kind, model in m.FAULT_MODELS.items():
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields)
        minimal = {name: 0 for name, info in model.model_fields.items() if info.is_required() and name != "kind"}  # down for 0 s
        added = http.post(f"{ADMIN_PREFIX}/faults", json={"kind": kind, **minimal})
        assert added.status_code == 201, added.text
        http.delete(f"{ADMIN_PREFIX}/faults")


def _check(route_name: str, response: httpx.Response) -> Any:
    """The answer, validated against the model the contract gives for its status."""
    route = ROUTES_BY_NAME[route_name]
    assert response.status_code in route.answers, (route.label, response.status_code, response.text)
    return TypeAdapter(route.answers[response.status_code]).validate_python(response.json())


def test_every_answer_has_the_documented_shape(http: httpx.Client, server: ReplayServer) -> None:
    admin = ADMIN_PREFIX
    _check("reset", http.post(f"{admin}/reset"))
    _check("clock_hold", http.post(f"{admin}/clock/hold", json={"at": "node:2"}))
    prompt_id = http.post("/prompt", json={"prompt": WORKFLOW, "client_id": "c"}).json()["prompt_id"]
    _check("clock_wait", http.post(f"{admin}/clock/wait", json={"prompt_id": prompt_id}))
    _check("clock", http.get(f"{admin}/clock"))
    _check("state", http.get(f"{admin}/state"))
    _check("clock_advance", http.post(f"{admin}/clock/advance", json={"prompt_id": prompt_id}))
    _check("clock_advance", http.post(f"{admin}/clock/advance", json={"timeout": 0.01}))  # 409
    _check("clock_wait", http.post(f"{admin}/clock/wait", json={"timeout": 0.01}))  # 408
    _check("clock_release", http.post(f"{admin}/clock/release"))
    _check("add_faults", http.post(f"{admin}/faults", json=[{"kind": "status", "route": "/view"}, {"kind": "delay", "seconds": 0}]))
    _check("get_faults", http.get(f"{admin}/faults"))
    _check("remove_fault", http.delete(f"{admin}/faults/f1"))
    _check("remove_fault", http.delete(f"{admin}/faults/nope"))  # 404
    _check("clear_faults", http.delete(f"{admin}/faults"))
    http.get("/no/such/route")
    http.post("/prompt", json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})  # refused: its answer kept
    _check("journal", http.get(f"{admin}/journal", params={"status": "404"}))
    assert _check("journal", http.get(f"{admin}/journal", params={"status": "400"})).entries[0].answer["node_errors"] == {}
    _check("journal_find", http.post(f"{admin}/journal/find", json={"path": "/prompt"}))
    _check("journal_count", http.post(f"{admin}/journal/count", json={}))
    _check("journal_assert", http.post(f"{admin}/journal/assert", json={"path": "/prompt"}))
    _check("journal_assert", http.post(f"{admin}/journal/assert", json={"path": "/nothing"}))  # 409
    _check("problems", http.get(f"{admin}/problems"))
    _check("clear_journal", http.delete(f"{admin}/journal"))
    _check("openapi", http.get(f"{admin}/openapi.json"))


# ---------------------------------------------------------------- ReplayControl and the docs come from the models


def _annotation(hint: Any) -> Any:
    """A type with Annotated[...] metadata and Mapping/dict differences left out, for comparison."""
    if typing.get_origin(hint) is typing.Annotated:
        return _annotation(typing.get_args(hint)[0])
    args = typing.get_args(hint)
    if args:
        origin = typing.Union if typing.get_origin(hint) is types.UnionType else typing.get_origin(hint)
        parts = {_annotation(a) for a in args}
        if origin is typing.Union:  # Optional[Union[a, b]] is Union[a, b, None]
            parts = {p for part in parts for p in (part[1] if isinstance(part, tuple) and part[0] is typing.Union else (part,))}
        return (origin, frozenset(parts))
    return hint


def test_replaycontrol_methods_take_exactly_their_bodys_keys() -> None:
    checked = set()
    for name, method in inspect.getmembers(ReplayControl, inspect.isfunction):
        found = getattr(method, "__admin_route__", None)
        if found is None:
            continue
        route, body = found
        checked.add(name)
        assert name in route.control, (name, route.label)
        if not (isinstance(body, type) and issubclass(body, BaseModel)) or body is m.FaultRules:
            continue
        fields = {k: v for k, v in body.model_fields.items() if k not in ("kind", "pattern")}
        parameters = {k: p for k, p in inspect.signature(method).parameters.items() if k != "self" and p.kind is not p.VAR_POSITIONAL}
        assert set(parameters) == set(fields) | set(route.path_params), (name, set(parameters) ^ set(fields))
        hints = typing.get_type_hints(method)
        for key, parameter in parameters.items():
            if key in route.path_params:
                continue
            info = fields[key]
            if parameter.default is not parameter.empty:  # a default, where given, is the server's
                assert parameter.default == info.default, (name, key)
            assert _annotation(hints[key]) == _annotation(info.annotation) or _annotation(hints[key]) == _annotation(info.annotation | None), (name, key, hints[key], info.annotation)
            assert f"``{key}``" in (method.__doc__ or ""), (name, key)  # documented from the model
    assert checked >= {n for route in ADMIN_ROUTES for n in route.control} - {"check", "assert_not_requested", "configure"}


def test_the_docs_tables_are_rendered_from_the_contract() -> None:
    pages = {path: path.read_text() for path in sorted((ROOT / "docs").rglob("*.md"))}
    for block in ("admin-routes", "fault-rules", "journal-pattern", "clock-bodies"):
        assert f"<!-- contract:{block} -->" in pages[ROOT / "docs" / "control.md"], block
    for path, text in pages.items():
        assert text == render(text), f"{path.name}'s tables are stale: run `python -m comfy_cassettes.contract.readme`"


# ---------------------------------------------------------------- beyond loopback: the admin token


def test_bound_to_every_address_the_admin_api_needs_the_token(tmp_path: Path) -> None:
    config = ReplayConfig(cassettes=(BUNDLED_DIR / "basic_save.yaml",), host="0.0.0.0", port=0, output_dir=tmp_path / "o",
                          input_dir=tmp_path / "i", temp_dir=tmp_path / "t")
    with ReplayServer(config) as server:
        token = server.config.admin_token
        assert token  # generated: none was given
        url = f"http://127.0.0.1:{server.port}"
        refused = httpx.post(f"{url}{ADMIN_PREFIX}/reset")
        assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"] and refused.json()["error"]
        assert httpx.get(f"{url}{ADMIN_PREFIX}/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}{ADMIN_PREFIX}/state", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{url}/queue").status_code == 200  # ComfyUI's routes stay as open as ComfyUI's
        assert httpx.get(f"{url}{ADMIN_PREFIX}/openapi.json").status_code == 200
        with ReplayControl(url, token=token) as control:
            control.reset()
            assert control.state()["mode"] == "static"
        with ReplayControl(url) as anonymous, pytest.raises(httpx.HTTPStatusError, match="401"):
            anonymous.state()


def test_on_loopback_the_admin_api_stays_open_unless_given_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ReplayConfig(host="127.0.0.1").validated().admin_token is None
    config = ReplayConfig(cassettes=(BUNDLED_DIR / "basic_save.yaml",), port=0, admin_token="s3cret", output_dir=tmp_path / "o",
                          input_dir=tmp_path / "i", temp_dir=tmp_path / "t")
    with ReplayServer(config) as server:
        assert httpx.post(f"{server.url}{ADMIN_PREFIX}/reset").status_code == 401
        monkeypatch.setenv("COMFY_CASSETTES_ADMIN_TOKEN", "s3cret")
        with ReplayControl(server.url) as control:
            control.reset()


# ---------------------------------------------------------------- serve for harnesses: ready file, first line, down


def test_serve_writes_a_ready_file_and_a_parseable_first_line(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen([sys.executable, "-m", "comfy_cassettes", "serve", "--port", "0", "--ready-file", str(ready),
                                "--output-dir", str(tmp_path / "o")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("serving http://127.0.0.1:") and f"(pid {process.pid})" in first, first
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["pid"] == process.pid and info["url"] == f"http://127.0.0.1:{info['port']}" and info["url"] in first
        assert httpx.get(info["url"] + "/queue").status_code == 200  # ready means serving
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_down_refuses_connections_from_the_first_instant(server: ReplayServer) -> None:
    with ReplayControl(server.url) as control:
        try:
            control.down(2.0)
            refused = 0
            for _ in range(5):
                with socket.socket() as probe:
                    try:
                        probe.connect(("127.0.0.1", server.port))
                    except ConnectionRefusedError:
                        refused += 1
            assert refused == 5
        finally:
            server.end_down()
        assert httpx.get(server.url + "/queue").status_code == 200


def test_environment_token_is_read_by_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, "COMFY_CASSETTES_ADMIN_TOKEN": "from-env"}
    process = subprocess.Popen([sys.executable, "-m", "comfy_cassettes", "serve", "--port", "0", "--output-dir", str(tmp_path / "o")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[1]
        assert "from-env" in process.stdout.readline()  # the admin token line
        deadline = time.monotonic() + 20
        while True:
            try:
                status = httpx.get(f"{url}{ADMIN_PREFIX}/state").status_code
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 401
        assert httpx.get(f"{url}{ADMIN_PREFIX}/state", headers={"Authorization": "Bearer from-env"}).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)


# ---------------------------------------------------------------- the clock at node boundaries, as docs/control.md says


def _events(control: ReplayControl, http: httpx.Client, prompt_id: str) -> list[str]:
    entry = control.wait_for_job(prompt_id)
    return [kind for kind, _ in entry["status"]["messages"]] + [entry["status"]["status_str"]]


def test_an_interrupt_while_held_at_the_last_node_lets_it_complete(server: ReplayServer, http: httpx.Client) -> None:
    with ReplayControl(server.url) as control:
        control.hold("node:2")  # SaveImage, the last node: it never looks at the interrupt flag
        prompt_id = http.post("/prompt", json={"prompt": WORKFLOW, "client_id": "c"}).json()["prompt_id"]
        control.wait_held(prompt_id)
        http.post("/interrupt", json={"prompt_id": prompt_id})
        control.release()
        assert _events(control, http, prompt_id)[-2:] == ["execution_success", "success"]


def test_an_interrupt_while_held_at_the_node_before_lands_on_the_next_node(server: ReplayServer, http: httpx.Client) -> None:
    with ReplayControl(server.url) as control:
        control.hold("node:1")
        prompt_id = http.post("/prompt", json={"prompt": {**WORKFLOW, "1": {**WORKFLOW["1"], "inputs": {**WORKFLOW["1"]["inputs"], "color": 9}}},
                                               "client_id": "c"}).json()["prompt_id"]
        control.wait_held(prompt_id)
        http.post("/interrupt", json={"prompt_id": prompt_id})
        control.release()
        entry = control.wait_for_job(prompt_id)
        kind, data = entry["status"]["messages"][-1]
        assert (kind, data["node_id"], entry["status"]["status_str"]) == ("execution_interrupted", "2", "error")


def test_a_misspelt_admin_path_is_a_404_listing_the_routes(http: httpx.Client) -> None:
    # A harness in another language prints the answer as it is: a bare "Not Found" does not say what to call.
    answer = http.post(f"{ADMIN_PREFIX}/fault", json={"kind": "status"})
    assert answer.status_code == 404
    routes = [route.label for route in ADMIN_ROUTES]
    assert answer.json() == {"error": f"POST {ADMIN_PREFIX}/fault: no such admin route; the admin routes are {', '.join(routes)}",
                             "routes": routes}
    assert f"POST {ADMIN_PREFIX}/faults" in routes
