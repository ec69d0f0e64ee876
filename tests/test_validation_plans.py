"""Tests for comfy_cassettes.comfy.validation_plans: a prompt whose structure was accepted before gets exactly what
validate_prompt answers it (status, body, node errors, outputs, the values written back), whatever its values."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from comfy_cassettes.comfy import validation_plans
from comfy_cassettes.comfy.graph import structure
from comfy_cassettes.comfy.profiles import DEFAULT, profile
from comfy_cassettes.comfy.validation import NodeSpecs, validate_prompt
from comfy_cassettes.comfy.validation_plans import ValidationPlans
from helpers import http_entries, request_json, request_path, response_json


@pytest.fixture(scope="module")
def object_info() -> dict[str, Any]:
    entry = next(e for e in http_entries("snapshots") if request_path(e) == "/object_info")
    catalogue: dict[str, Any] = response_json(entry)
    return catalogue


def _empty_image(**values: Any) -> dict[str, Any]:
    inputs = {"width": 64, "height": 64, "batch_size": 1, "color": 0, **values}
    return {"1": {"class_type": "EmptyImage", "inputs": inputs},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


def _load_image(image: Any) -> dict[str, Any]:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}


def _scaled(method: Any, width: Any = 8) -> dict[str, Any]:
    scale = {"image": ["1", 0], "upscale_method": method, "width": width, "height": 8, "crop": "disabled"}
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "3": {"class_type": "ImageScale", "inputs": scale},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}


# Each starts from a valid prompt of its structure, so the variant meets a kept plan when its structure is the same.
VARIANTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (_empty_image(), _empty_image(width=512, color=7)),
    (_empty_image(), _empty_image(width="64", height=64.9, batch_size=True, color={"__value__": 3})),
    (_empty_image(), _empty_image(width=0)),
    (_empty_image(), _empty_image(height=10**9)),
    (_empty_image(), _empty_image(width="wide")),
    (_empty_image(), _empty_image(width=[1, 2, 3])),
    (_empty_image(), _empty_image(width={"__value__": {"__value__": 8}})),
    (_empty_image(), _empty_image(color={"__value__": "x"}, width=0)),
    (_empty_image(), {**_empty_image(), "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0.0], "filename_prefix": 5}}}),
    (_empty_image(), {**_empty_image(), "2": {"class_type": "SaveImage", "inputs": {"images": ["1", True], "filename_prefix": "y"}}}),
    (_empty_image(), {**_empty_image(), "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": {"__value__": 5}}}}),
    (_scaled("area"), _scaled("bicubic", width="16")),
    (_scaled("area"), _scaled("bogus")),
    (_scaled("area"), _scaled({"__value__": "area"}, width=20000)),
    (_scaled("area"), _scaled(["area"])),
    (_load_image("here.png"), _load_image("there.png")),
    (_load_image("here.png"), _load_image({"__value__": "here.png"})),
    (_load_image("here.png"), _load_image({"__value__": {"__value__": "here.png"}})),
    (_load_image("here.png"), _load_image(5)),
]


@pytest.mark.parametrize("version", [None, "0.8.0"])
@pytest.mark.parametrize(("first", "then"), VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_a_kept_structure_answers_as_validate_prompt(first: dict[str, Any], then: dict[str, Any], version: str | None,
                                                      object_info: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    rules = profile(version)
    plans = ValidationPlans(NodeSpecs(object_info), rules)
    exists = {"here.png"}.__contains__
    accepted, shape = plans.validate(copy.deepcopy(first), input_file_exists=exists)
    assert (accepted.status, accepted.node_errors, shape) == (200, {}, structure(first))  # the first: in full, kept
    in_full: list[Any] = []
    monkeypatch.setattr(validation_plans, "validate_prompt", lambda *a, **k: in_full.append(a) or validate_prompt(*a, **k))
    full_runs = []
    for _ in range(2):
        ours, theirs = copy.deepcopy(then), copy.deepcopy(then)
        before = len(in_full)
        result, shape = plans.validate(ours, input_file_exists=exists)
        full_runs.append(len(in_full) - before)
        expected = validate_prompt(theirs, object_info, input_file_exists=exists, profile=rules)
        assert json.dumps([result.status, result.body, result.node_errors, result.outputs_to_execute, ours]) == json.dumps(
            [expected.status, expected.body, expected.node_errors, expected.outputs_to_execute, theirs])
        assert shape is None or shape == structure(then)
    whole = expected.status == 200 and not expected.node_errors
    assert (shape is not None) == whole
    # A prompt accepted whole is answered from its structure's plan without a full validation: at once when the
    # first prompt's structure is its own, else from the second time. Any other is validated in full each time.
    assert full_runs == ([0, 0] if whole and _key_types(first) == _key_types(then) else [1, 0] if whole else [1, 1])


def _key_types(prompt: dict[str, Any]) -> list[Any]:
    """The structure as the plans key it: ids, classes, input names, links with their exact types."""
    return [(node_id, node["class_type"], [(name, (value, [type(v) for v in value]) if isinstance(value, list) else None)
                                           for name, value in node["inputs"].items()]) for node_id, node in prompt.items()]


def test_partial_targets_and_catalogues_are_part_of_the_key(object_info: dict[str, Any]) -> None:
    graph = {**_empty_image(), "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "y"}}}
    plans = ValidationPlans(NodeSpecs(object_info), DEFAULT)
    assert plans.validate(copy.deepcopy(graph), partial_execution_targets=["3"])[0].outputs_to_execute == ["3"]
    result, shape = plans.validate(copy.deepcopy(graph), partial_execution_targets=["3"])
    assert (result.outputs_to_execute, shape) == (["3"], structure(graph))
    result, shape = plans.validate(copy.deepcopy(graph))
    assert (result.outputs_to_execute, shape) == (["2", "3"], structure(graph))  # validated in full, then kept
    assert plans.validate(copy.deepcopy(graph))[1] == structure(graph)
    result, shape = plans.validate(copy.deepcopy(graph), partial_execution_targets=["1"])
    assert result.body is not None and result.body["error"]["type"] == "prompt_no_outputs"


def test_captured_prompts_twice_over(object_info: dict[str, Any]) -> None:
    """Every POST /prompt body the captures hold, twice through one ValidationPlans: as validate_prompt each time."""
    bodies = [request_json(e) for scenario in ("error_invalid_prompt", "snapshots")
              for e in http_entries(scenario) if e["request"]["method"] == "POST" and request_path(e).endswith("/prompt")
              and _parses(e)]
    bodies = [b for b in bodies if isinstance(b, dict) and b.get("prompt") is not None]
    assert len(bodies) > 10
    plans = ValidationPlans(NodeSpecs(object_info), DEFAULT)
    kept = 0
    for body in bodies * 2:
        ours, theirs = copy.deepcopy(body["prompt"]), copy.deepcopy(body["prompt"])
        partial = body.get("partial_execution_targets")
        result, shape = plans.validate(ours, partial_execution_targets=partial)
        expected = validate_prompt(theirs, object_info, partial_execution_targets=partial)
        assert json.dumps([result.status, result.body, result.node_errors, result.outputs_to_execute, ours]) == json.dumps(
            [expected.status, expected.body, expected.node_errors, expected.outputs_to_execute, theirs])
        kept += shape is not None
    assert kept > 0


def _parses(entry: dict[str, Any]) -> bool:
    try:
        request_json(entry)
    except ValueError:
        return False
    return True


def test_structures_with_the_same_node_ids_are_told_apart(object_info: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Plans are found by node ids, then compared node by node: graphs sharing their ids each keep their own plan,
    and a link where a kept structure has a value (in a node no output reaches) is another structure."""
    spare = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
    graphs = [_empty_image(), _load_image("here.png"), {**_empty_image(), "3": spare},
              {**_empty_image(), "3": {**spare, "inputs": {**spare["inputs"], "width": ["1", 0]}}}]
    plans = ValidationPlans(NodeSpecs(object_info), DEFAULT)
    exists = {"here.png"}.__contains__
    in_full: list[Any] = []
    monkeypatch.setattr(validation_plans, "validate_prompt", lambda *a, **k: in_full.append(a) or validate_prompt(*a, **k))
    for _ in range(3):
        for graph in graphs:
            ours, theirs = copy.deepcopy(graph), copy.deepcopy(graph)
            result, shape = plans.validate(ours, input_file_exists=exists)
            expected = validate_prompt(theirs, object_info, input_file_exists=exists)
            assert [result.status, result.node_errors, result.outputs_to_execute, ours] == [
                expected.status, expected.node_errors, expected.outputs_to_execute, theirs]
            assert shape == structure(graph)
            assert plans.accepted(copy.deepcopy(graph), None, exists) == (expected.outputs_to_execute, structure(graph))
    assert len(in_full) == len(graphs)  # each validated in full once, then answered by its plan
