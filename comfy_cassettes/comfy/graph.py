"""ComfyUI's graph rules: links, structure, execution order and cache signatures."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def is_link(value: Any) -> bool:
    """comfy_execution.graph_utils.is_link: an input wired to ``[source node id, output slot]`` (slot int or float)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
    )


def structure(workflow: Mapping[str, Any]) -> str:
    """A key equal for workflows with the same node ids, classes and links (values ignored)."""
    shape = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        links = sorted((k, v[0], v[1]) for k, v in inputs.items() if is_link(v))
        shape[str(node_id)] = [node.get("class_type") if isinstance(node, dict) else None, links]
    return json.dumps(shape, sort_keys=True)


def signatures(workflow: Mapping[str, Any]) -> dict[str, str]:
    """Each node's cache signature: its class and values plus its ancestors' signatures, like ComfyUI's cache key."""
    done: dict[str, str] = {}

    def sig(node_id: str, seen: frozenset[str]) -> str:
        if node_id in done:
            return done[node_id]
        node = workflow.get(node_id)
        if not isinstance(node, dict) or node_id in seen:
            return f"missing:{node_id}"
        parts = []
        for key, value in sorted(node.get("inputs", {}).items()):
            parts.append([key, sig(value[0], seen | {node_id}) + f"#{value[1]}" if is_link(value) else value])
        done[node_id] = json.dumps([node.get("class_type"), parts], sort_keys=True, default=str)
        return done[node_id]

    for node_id in workflow:
        sig(str(node_id), frozenset())
    return done


def execution_order(
    prompt: Mapping[str, Any],
    outputs: Sequence[str],
    *,
    object_info: Mapping[str, Any] | None = None,
) -> list[str]:
    """Node ids in the order ComfyUI runs a validated prompt with nothing cached.

    Mirrors ComfyUI's ExecutionList: add each output with its ancestors, then repeatedly pick among the
    ready nodes an output node, else a node feeding an output, else one two links from an output, else
    the first. Output nodes come from ``object_info`` when given, else are the ids in ``outputs``.

    >>> execution_order({"1": {"class_type": "EmptyImage", "inputs": {}},
    ...                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}, ["2"])
    ['1', '2']
    """
    wanted = set(outputs)

    def is_output(node_id: str) -> bool:
        if object_info is None:
            return node_id in wanted
        return object_info.get(prompt[node_id]["class_type"], {}).get("output_node") is True

    pending: dict[str, None] = {}
    blockers: dict[str, set[str]] = {}
    blocking: dict[str, dict[str, None]] = {}

    def add_node(start: str) -> None:
        stack, links = [start], []
        while stack:
            node_id = stack.pop()
            if node_id in pending:
                continue
            pending[node_id] = None
            blockers[node_id] = set()
            blocking[node_id] = {}
            for value in prompt[node_id]["inputs"].values():
                if is_link(value):
                    stack.append(value[0])
                    links.append((value[0], node_id))
        for source, target in links:
            blocking[source][target] = None
            blockers[target].add(source)

    def pick(ready: list[str]) -> str:
        for node_id in ready:
            if is_output(node_id):
                return node_id
        for node_id in ready:
            if any(is_output(b) for b in blocking[node_id]):
                return node_id
        for node_id in ready:
            if any(is_output(b1) for b in blocking[node_id] for b1 in blocking[b]):
                return node_id
        return ready[0]

    for output in outputs:
        add_node(output)
    order: list[str] = []
    while pending:
        ready = [node_id for node_id in pending if not blockers[node_id]]
        if not ready:  # a cycle: ComfyUI stops here with a DependencyCycleError
            break
        node_id = pick(ready)
        order.append(node_id)
        del pending[node_id]
        for blocked in blocking.pop(node_id):
            blockers[blocked].discard(node_id)
    return order
