"""What a failing test is told about the requests the replay answered with an error: each error answer the journal
kept, a refused prompt read the way ComfyUI's console shows one, and the recorded prompt closest to it. A client
that raises a bare "400 Bad Request" shows none of it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .comfy.refusals import is_refusal, node_error_lines, request_line
from .comfy.routes import aliases

SHOWN = 10  # error answers a report lists (the journal has them all)
TEXT_SHOWN = 500  # characters shown of a body that is not ComfyUI's refusal
DIFFERENCES_SHOWN = 6  # differences shown from the closest recorded prompt
PROMPT_PATHS = aliases("/prompt")


def errors_report(entries: Iterable[Mapping[str, Any]], recorded: Sequence[tuple[str, Any]] = (), *,
                  heading: str = "the replay server answered {} request(s) with an error:") -> str:
    """The journal entries (``as_dict()`` / the admin API's) answered with an error, each with why, under
    ``heading`` (given their count); "" when none. ``recorded``: the cassettes' prompts as (name, workflow), to
    name the one closest to a refused prompt."""
    errors = [entry for entry in entries if int(entry.get("status") or 0) >= 400]
    if not errors:
        return ""
    lines = [heading.format(len(errors))]
    for entry in errors[:SHOWN]:
        lines += _described(entry, recorded)
    if len(errors) > SHOWN:
        lines.append(f"... and {len(errors) - SHOWN} more (the journal lists each with its answer)")
    return "\n".join(lines)


def _described(entry: Mapping[str, Any], recorded: Sequence[tuple[str, Any]]) -> list[str]:
    answer = entry.get("answer")
    head = request_line(entry.get("method"), entry.get("path"), entry.get("query"), entry.get("status"), answer)
    if is_refusal(answer):
        lines = [head, *(f"    {line}" for line in node_error_lines(answer["node_errors"]))]
        if entry.get("method") == "POST" and entry.get("path") in PROMPT_PATHS:
            lines += _closest_lines(_sent_workflow(str(entry.get("body") or "")), recorded)
        return lines
    if answer is None or answer == "":
        return [f"{head} (no body)"]
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return [f"{head}: {text[:TEXT_SHOWN]}{'...' if len(text) > TEXT_SHOWN else ''}"]


def _sent_workflow(body: str) -> Any:
    try:
        sent = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return sent.get("prompt") if isinstance(sent, dict) else None


def _closest_lines(workflow: Any, recorded: Sequence[tuple[str, Any]]) -> list[str]:
    found = closest_prompt(workflow, recorded)
    if found is None:
        return []
    name, differences = found
    if not differences:
        return [f"    the same graph as recorded prompt {name}"]
    shown = differences[:DIFFERENCES_SHOWN]
    more = [f"      ... and {len(differences) - len(shown)} more"] if len(differences) > len(shown) else []
    return [f"    closest recorded prompt: {name}, which differs in:", *(f"      {d}" for d in shown), *more]


def closest_prompt(workflow: Any, recorded: Sequence[tuple[str, Any]]) -> tuple[str, list[str]] | None:
    """The recorded prompt (name, workflow) with the fewest differences from ``workflow``, and those differences;
    None when there is nothing to compare."""
    if not isinstance(workflow, dict):
        return None
    best: tuple[str, list[str]] | None = None
    for name, theirs in recorded:
        if not isinstance(theirs, dict):
            continue
        differences = prompt_differences(workflow, theirs)
        if best is None or len(differences) < len(best[1]):
            best = (name, differences)
    return best


def prompt_differences(sent: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[str]:
    """How a sent graph differs from a recorded one, node by node: nodes missing or extra, another class, inputs
    with other values (a link is ``[node, output]``)."""
    differences = []
    for node_id in sorted(set(sent) | set(recorded), key=str):
        ours, theirs = sent.get(node_id), recorded.get(node_id)
        if not isinstance(ours, Mapping) or not isinstance(theirs, Mapping):
            present = ours if isinstance(ours, Mapping) else theirs
            kind = present.get("class_type") if isinstance(present, Mapping) else None
            differences.append(f"node {node_id} ({kind}): {'not in the recording' if theirs is None else 'not sent'}")
            continue
        if ours.get("class_type") != theirs.get("class_type"):
            differences.append(f"node {node_id}: class_type {ours.get('class_type')!r}, recorded {theirs.get('class_type')!r}")
            continue
        mine, recorded_inputs = ours.get("inputs") or {}, theirs.get("inputs") or {}
        if not isinstance(mine, Mapping) or not isinstance(recorded_inputs, Mapping):
            continue
        for key in sorted(set(mine) | set(recorded_inputs)):
            if mine.get(key, _ABSENT) != recorded_inputs.get(key, _ABSENT):
                differences.append(f"node {node_id} {ours.get('class_type')} {key}: sent {_shown(mine, key)}, "
                                   f"recorded {_shown(recorded_inputs, key)}")
    return differences


_ABSENT = object()


def _shown(inputs: Mapping[str, Any], key: str) -> str:
    if key not in inputs:
        return "nothing"
    text = repr(inputs[key])
    return text if len(text) <= 80 else text[:77] + "..."
