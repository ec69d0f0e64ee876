"""Tests for comfy_cassettes.comfy.validation (and graph order) against the real ComfyUI captures."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from comfy_cassettes.comfy import model_files as models
from comfy_cassettes.comfy.graph import execution_order
from comfy_cassettes.comfy.validation import NodeSpecs, ValidationResult, no_prompt_body, validate_prompt
from helpers import SESSIONS, http_entries, request_json, request_path, response_json, ws_received


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    """The full /object_info catalogue recorded in the snapshots scenario."""
    entry = next(e for e in http_entries("snapshots") if request_path(e) == "/object_info")
    catalogue: dict[str, Any] = response_json(entry)
    return catalogue


def _prompt_posts(scenario: str) -> list[tuple[dict[str, Any], int, dict[str, Any]]]:
    """(request body, status, response body) of every POST /prompt whose body parses as JSON."""
    posts = []
    for entry in http_entries(scenario):
        if entry["request"]["method"] != "POST" or not request_path(entry).endswith("/prompt"):
            continue
        try:
            body, captured = request_json(entry), response_json(entry)
        except ValueError:
            continue  # the malformed-JSON 500 and the Origin-mismatch 403 never reach validation
        posts.append((body, entry["response"]["status"], captured))
    return posts


_INVALID = _prompt_posts("error_invalid_prompt")


def _validate(body: dict[str, Any], object_info: dict[str, Any]) -> ValidationResult:
    return validate_prompt(
        body.get("prompt"), object_info, partial_execution_targets=body.get("partial_execution_targets")
    )


@pytest.mark.parametrize(
    ("body", "status", "captured"),
    _INVALID,
    ids=[f"{i}-{c.get('error', {}).get('type', 'accepted')}" for i, (_, _, c) in enumerate(_INVALID)],
)
def test_matches_capture(
    body: dict[str, Any], status: int, captured: dict[str, Any], object_info: dict[str, Any]
) -> None:
    result = _validate(body, object_info)
    assert result.status == status
    if status == 200:
        assert result.body is None
        assert result.node_errors == captured["node_errors"]
        return
    assert result.body is not None
    assert result.body["error"] == captured["error"]
    assert list(result.body["node_errors"]) == list(captured["node_errors"])
    for node_id, expected in captured["node_errors"].items():
        actual = result.body["node_errors"][node_id]
        assert actual["class_type"] == expected["class_type"]
        assert actual["dependent_outputs"] == expected["dependent_outputs"]
        assert len(actual["errors"]) == len(expected["errors"])
        for ours, theirs in zip(actual["errors"], expected["errors"]):
            assert {k: ours[k] for k in ("type", "message", "details")} == {
                k: theirs[k] for k in ("type", "message", "details")
            }
            assert list(ours["extra_info"]) == list(theirs["extra_info"])
    # Byte-for-byte, as ComfyUI serialises it (including the KeyError traceback of a dangling link).
    assert json.dumps(result.body) == json.dumps(captured)


def test_every_kind_is_covered() -> None:
    kinds = {c["error"]["type"] for _, s, c in _INVALID if s == 400}
    node_kinds = {e["type"] for _, _, c in _INVALID for n in c["node_errors"].values() for e in n["errors"]}
    assert kinds == {"invalid_prompt", "prompt_no_outputs", "no_prompt", "prompt_outputs_failed_validation"}
    assert len(node_kinds) == 9
    assert any(s == 200 and c["node_errors"] for _, s, c in _INVALID)


def test_kept_node_specs_answer_as_a_fresh_catalogue(object_info: dict[str, Any]) -> None:
    """The replay keeps one NodeSpecs for every prompt: what one prompt's validation converts or reports never
    reaches the catalogue, so each later prompt gets what a fresh catalogue gives it (every capture, twice over)."""
    before = json.dumps(object_info)
    kept = NodeSpecs(object_info)
    bodies = [body for body, _, _ in _INVALID if body.get("prompt") is not None] * 2
    for body in bodies:
        fresh_prompt, kept_prompt = copy.deepcopy(body["prompt"]), copy.deepcopy(body["prompt"])
        fresh = validate_prompt(fresh_prompt, object_info, partial_execution_targets=body.get("partial_execution_targets"))
        again = validate_prompt(kept_prompt, kept, partial_execution_targets=body.get("partial_execution_targets"))
        assert json.dumps([again.status, again.body, again.node_errors, again.outputs_to_execute, kept_prompt]) == json.dumps(
            [fresh.status, fresh.body, fresh.node_errors, fresh.outputs_to_execute, fresh_prompt])
        if again.body is not None:  # an error's input_config is a copy: changing it leaves the catalogue alone
            for node in again.body["node_errors"].values():
                for error in node["errors"]:
                    config = error["extra_info"].get("input_config")
                    for part in config or []:
                        if isinstance(part, list):
                            part.append("changed")
                        elif isinstance(part, dict):
                            part["changed"] = True
    assert json.dumps(object_info) == before


def test_partial_acceptance_runs_only_the_valid_branch(object_info: dict[str, Any]) -> None:
    body = next(b for b, s, c in _INVALID if s == 200)
    result = _validate(body, object_info)
    assert result.outputs_to_execute == ["2"]
    assert result.node_errors["3"]["dependent_outputs"] == ["4"]


def test_no_prompt_body_matches_capture(object_info: dict[str, Any]) -> None:
    captured = next(c for b, _, c in _INVALID if "prompt" not in b)
    assert no_prompt_body() == captured
    assert validate_prompt(None, object_info) == ValidationResult(400, captured, {}, [])


def _history_outputs() -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    """(request body, prompt graph, outputs_to_execute) from every /history entry of every capture."""
    found = []
    for scenario in sorted(p.name for p in SESSIONS.iterdir() if (p / "session.har").exists()):
        bodies = {}
        for body, status, captured in _prompt_posts(scenario):
            if status == 200:
                bodies[captured["prompt_id"]] = body
        for entry in http_entries(scenario):
            if entry["request"]["method"] == "GET" and "/history" in request_path(entry):
                if entry["response"]["status"] != 200:
                    continue
                for prompt_id, item in response_json(entry).items():
                    if prompt_id in bodies:
                        found.append((bodies[prompt_id], item["prompt"][2], item["prompt"][4]))
    return found


def test_outputs_to_execute_match_history(object_info: dict[str, Any]) -> None:
    seen = _history_outputs()
    assert len(seen) > 20
    for body, graph, outputs in seen:
        # The snapshots server had no checkpoint; the txt2img server had the one its graphs load.
        catalogue = models.declare(object_info, models.used_by([graph]))
        result = validate_prompt(
            copy.deepcopy(graph), catalogue,
            input_file_exists=lambda name: True,
            partial_execution_targets=body.get("partial_execution_targets"),
        )
        assert result.status == 200
        # ComfyUI's order comes from a set; only membership is reproducible.
        assert sorted(result.outputs_to_execute) == sorted(outputs)


def _executed_runs(scenario: str) -> list[tuple[dict[str, Any], list[str], list[str], list[str]]]:
    """(prompt, outputs_to_execute, cached ids, `executing` node ids) per prompt_id used once."""
    posts: dict[str, list[dict[str, Any]]] = {}
    for body, status, captured in _prompt_posts(scenario):
        if status == 200:
            posts.setdefault(captured["prompt_id"], []).append(body)
    executing: dict[str, list[str]] = {}
    cached: dict[str, list[str]] = {}
    for message in ws_received(scenario):
        data = message["data"]
        if message["type"] == "executing" and data.get("node") and "prompt_id" in data:
            executing.setdefault(data["prompt_id"], []).append(data["node"])
        elif message["type"] == "execution_cached":
            cached[data["prompt_id"]] = data["nodes"]
    runs = []
    for prompt_id, bodies in posts.items():
        if len(bodies) == 1 and prompt_id in executing:
            body = bodies[0]
            outputs = list(body.get("partial_execution_targets") or [])
            runs.append((body["prompt"], outputs, cached.get(prompt_id, []), executing[prompt_id]))
    return runs


@pytest.mark.parametrize(
    "scenario",
    ["load_transform_save", "two_save_nodes", "basic_save", "cached_rerun", "interrupt", "snapshots",
     "prompt_options", "error_invalid_prompt", "ws_reconnect", "preview_image", "error_execution"],
)
def test_execution_order_matches_executing_events(scenario: str, object_info: dict[str, Any]) -> None:
    runs = _executed_runs(scenario)
    assert runs
    for prompt, targets, cached, executed in runs:
        result = validate_prompt(
            copy.deepcopy(prompt), object_info, input_file_exists=lambda name: True,
            partial_execution_targets=targets or None,
        )
        order = execution_order(prompt, result.outputs_to_execute, object_info=object_info)
        expected = [node for node in order if node not in cached]
        # Interrupted and failed runs stop early, so their events are a prefix of the order.
        assert executed == expected[: len(executed)], (prompt, executed)
        assert order == execution_order(prompt, result.outputs_to_execute)


def test_load_transform_save_chain_is_source_first(object_info: dict[str, Any]) -> None:
    prompt, _, _, executed = _executed_runs("load_transform_save")[0]
    assert [prompt[n]["class_type"] for n in execution_order(prompt, ["14"])] == [
        "LoadImage", "ImageScale", "ImageInvert", "ImageBlur", "SaveImage",
    ]
    assert executed == ["10", "11", "12", "13", "14"]


def test_execution_order_prefers_the_branch_closest_to_an_output() -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
        "5": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}},
    }
    # After "1", node "5" feeds an output directly, so ComfyUI runs that branch first.
    assert execution_order(prompt, ["4", "6"]) == ["1", "5", "6", "2", "3", "4"]
    assert execution_order(prompt, ["6", "4"]) == ["1", "5", "6", "2", "3", "4"]


# --- shapes the captures do not show, derived from ComfyUI's validate_inputs ------------------


def _graph(nodes: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {node_id: {"class_type": cls, "inputs": inputs} for node_id, (cls, inputs) in nodes.items()}


def _only_error(result: ValidationResult) -> dict[str, Any]:
    (node,) = result.node_errors.values()
    (error,) = node["errors"]
    assert isinstance(error, dict)
    return error


def test_string_values_are_converted_before_range_checks(object_info: dict[str, Any]) -> None:
    graph = _graph(
        {"1": ("EmptyImage", {"width": "64", "height": 64.9, "batch_size": True, "color": {"__value__": 3}}),
           "2": ("SaveImage", {"images": ["1", 0], "filename_prefix": 7})}
    )
    result = validate_prompt(graph, object_info)
    assert result == ValidationResult(200, None, {}, ["2"])
    # ComfyUI writes each converted value back into the prompt it validates (more_sessions_0.8/coerced_inputs).
    assert graph["1"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1, "color": 3}
    assert graph["2"]["inputs"]["filename_prefix"] == "7"


def test_bad_link_shapes(object_info: dict[str, Any]) -> None:
    def link(value: Any) -> ValidationResult:
        graph = _graph({"1": ("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0}),
                          "2": ("SaveImage", {"images": value, "filename_prefix": "x"})})
        return validate_prompt(graph, object_info)

    error = _only_error(link(["1", 3]))
    assert (error["type"], error["details"]) == ("exception_during_validation", "tuple index out of range")
    assert error["extra_info"]["exception_type"] == "IndexError"
    assert error["extra_info"]["traceback"][-1].endswith("received_type = r[val[1]]\n                    ~^^^^^^^^\n")
    error = _only_error(link(["1", "0"]))
    assert error["details"] == "tuple indices must be integers or slices, not str"
    error = _only_error(link([1, 0]))
    assert (error["details"], error["extra_info"]["exception_type"]) == ("1", "KeyError")
    assert link(["1", -1]).status == 200  # a Python index, so the last output


def test_inner_exception_is_charged_to_the_upstream_node(object_info: dict[str, Any]) -> None:
    graph = _graph({"1": ("ImageInvert", {"image": ["99", 0]}),
                    "2": ("SaveImage", {"images": ["1", 0], "filename_prefix": "x"})})
    result = validate_prompt(graph, object_info)
    assert result.body is not None and result.body["error"]["details"] == ""
    error = _only_error(result)
    assert error["type"] == "exception_during_inner_validation"
    assert error["message"] == "Exception when validating inner node"
    assert list(error["extra_info"]) == [
        "input_name", "input_config", "exception_message", "exception_type", "traceback", "linked_node",
    ]
    assert error["extra_info"]["linked_node"] == ["1", 0]
    assert len(error["extra_info"]["traceback"]) == 2


def test_long_option_lists_are_summarised(object_info: dict[str, Any]) -> None:
    graph = _graph({"1": ("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0}),
                      "2": ("SaveImage", {"images": ["1", 0], "filename_prefix": "x"})})
    info = copy.deepcopy(object_info)
    info["SaveImage"]["input"]["required"]["filename_prefix"] = [[f"p{i}" for i in range(21)]]
    error = _only_error(validate_prompt(graph, info))
    assert error["details"] == "filename_prefix: 'x' not in (list of length 21)"
    assert error["extra_info"]["input_config"] is None


def test_load_image_file_check(object_info: dict[str, Any]) -> None:
    def load(value: Any, exists: Any = None) -> ValidationResult:
        graph = _graph({"1": ("LoadImage", {"image": value}) if value is not None else ("LoadImage", {}),
                          "2": ("SaveImage", {"images": ["1", 0], "filename_prefix": "x"})})
        return validate_prompt(graph, object_info, input_file_exists=exists)

    assert load("uploads/sub_input.png", lambda name: name == "uploads/sub_input.png").status == 200
    error = _only_error(load("uploads/sub_input.png", lambda name: False))
    assert error["details"] == "image - Invalid image file: uploads/sub_input.png"
    error = _only_error(load(5))
    # LoadImage is not the output, so its crash is caught one level up, as an inner-validation error.
    assert error["type"] == "exception_during_inner_validation"
    assert error["details"] == "'int' object has no attribute 'endswith'"
    assert error["extra_info"]["exception_type"] == "AttributeError"
    error = _only_error(load(None))
    assert error["details"] == "LoadImage.VALIDATE_INPUTS() missing 1 required positional argument: 'image'"


def test_partial_execution_targets(object_info: dict[str, Any]) -> None:
    graph = _graph({"1": ("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0}),
                      "2": ("SaveImage", {"images": ["1", 0], "filename_prefix": "x"}),
                      "3": ("SaveImage", {"images": ["1", 0], "filename_prefix": "y"})})
    assert validate_prompt(graph, object_info, partial_execution_targets=["3"]).outputs_to_execute == ["3"]
    result = validate_prompt(graph, object_info, partial_execution_targets=["1"])
    assert result.body is not None and result.body["error"]["type"] == "prompt_no_outputs"


def test_cycles_fail_without_reasons(object_info: dict[str, Any]) -> None:
    graph = _graph({"1": ("ImageInvert", {"image": ["2", 0]}), "2": ("ImageInvert", {"image": ["1", 0]}),
                      "3": ("SaveImage", {"images": ["2", 0], "filename_prefix": "x"})})
    result = validate_prompt(graph, object_info)
    assert result.status == 400
    assert result.node_errors == {}


@pytest.mark.parametrize("prompt", [[{"class_type": "SaveImage"}], "abc", 5, {"1": None}, {"1": {"class_type": ["x"]}}])
def test_shapes_comfyui_crashes_on(prompt: Any, object_info: dict[str, Any]) -> None:
    assert validate_prompt(prompt, object_info) == ValidationResult(500, None, {}, [])


@pytest.mark.parametrize(
    ("prompt", "kind"), [({}, "prompt_no_outputs"), ([], "prompt_no_outputs"), ({"1": "text"}, "invalid_prompt")]
)
def test_odd_shapes_comfyui_rejects(prompt: Any, kind: str, object_info: dict[str, Any]) -> None:
    result = validate_prompt(prompt, object_info)
    assert result.status == 400 and result.body is not None
    assert result.body["error"]["type"] == kind
