"""The comparator the conformance tests rely on reports what differs, and only that."""

from __future__ import annotations

import json

from value_compare import ValueComparer

PID, OTHER = "0b6f4bd2-1d2e-4c37-9a53-6a3c1e2f7b10", "5c2a9e0f-4b7d-4d0e-8f61-2b9c7a1d3e54"


def test_volatile_values_map_consistently_and_fixed_values_must_be_equal() -> None:
    comparer = ValueComparer()
    captured = {PID: {"status": {"status_str": "success", "completed": True}, "outputs": {"2": {"images": [{"filename": "ComfyUI_00001_.png"}]}}}}
    comparer.compare(captured, {OTHER: {"status": {"status_str": "success", "completed": True}, "outputs": {"2": {"images": [{"filename": "ComfyUI_00007_.png"}]}}}}, "GET /history")
    assert comparer.problems == [] and comparer.mapping == {PID: OTHER, "ComfyUI_00001_.png": "ComfyUI_00007_.png"}
    comparer.compare({"prompt_id": PID, "node": "2", "max": 20}, {"prompt_id": "4e1d6b0c-8a3f-4f5e-9c2d-7b8a6e5f4d3c", "node": "3", "max": 5}, "ws progress")
    assert comparer.problems == [
        "ws progress.prompt_id: '4e1d6b0c-8a3f-4f5e-9c2d-7b8a6e5f4d3c' != mapped '5c2a9e0f-4b7d-4d0e-8f61-2b9c7a1d3e54'",
        "ws progress.node: '3' != '2'",
        "ws progress.max: 5 != 20",
    ]


def test_keys_types_and_list_lengths() -> None:
    comparer = ValueComparer()
    comparer.compare({"a": 1, "b": [1, 2], "c": "x"}, {"a": "1", "b": [1], "d": "x"}, "body")
    assert comparer.problems == ["body: keys differ: missing ['c'] extra ['d']", "body.a: expected number, got '1'", "body.b: list length 1 != 2"]


def test_a_socket_needs_the_same_messages_in_the_same_order() -> None:
    frame = lambda kind, **data: json.dumps({"type": kind, "data": data})  # noqa: E731
    captured = [(0.0, frame("status", sid="a" * 32)), (0.1, frame("execution_start", prompt_id=PID)), (0.2, frame("executing", node=None, prompt_id=PID))]
    same = [frame("status", sid="b" * 32), frame("execution_start", prompt_id=OTHER), frame("executing", node=None, prompt_id=OTHER)]
    comparer = ValueComparer()
    comparer.compare_socket("0", captured, same)
    assert comparer.problems == []
    comparer.compare_socket("0", captured, [same[0], same[2], same[1]])
    assert comparer.problems and "message types differ" in comparer.problems[0]


def test_a_status_may_follow_frames_sent_before_a_late_client_asked_for_it() -> None:
    frame = lambda kind, **data: json.dumps({"type": kind, "data": data})  # noqa: E731
    captured = [(0.0, frame("execution_start", prompt_id=PID)), (0.1, frame("status", queue_remaining=2)),
                (0.3, frame("executing", node=None, prompt_id=PID))]
    ours = [captured[0][1], captured[2][1], captured[1][1]]
    seen: list[tuple[float, range]] = []
    for late, problems in ((True, 0), (False, 1)):
        comparer = ValueComparer()
        comparer.compare_socket("0", captured, ours, lambda at, crossed: seen.append((at, crossed)) is None and late)
        assert len(comparer.problems) == problems
    assert seen[0] == (0.1, range(1, 2))
