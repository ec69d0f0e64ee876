"""Record modes (vcrpy's once / new_episodes / all / none): what re-recording does to an existing cassette.

=============  ==========================================================================================
mode           with no cassette at the path          with an existing cassette
=============  ==========================================================================================
once           record and write it                   nothing new is recorded; a workflow the cassette
                                                     lacks is an error that names the mode to use
new_episodes   record and write it                   keep everything; record only workflows it lacks;
                                                     add their jobs and the requests it did not have
all            record and write it                   keep everything; always record; add the new jobs
                                                     first (replay picks them) and the new requests
                                                     last (the latest recording of a request wins)
none           error: nothing to replay              never records; checks the cassette has the workflow
=============  ==========================================================================================

Like vcrpy, no mode ever drops what a cassette had (pytest-recording's ``rewrite`` is "delete the file, then
record"); unlike vcrpy, every write replaces the whole file atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from ..cassette.load import load
from ..comfy.nodes import VOLATILE_INPUTS
from ..errors import CassetteExistsError, ConfigError
from .build import merge_documents


class RecordMode(str, Enum):
    """How recording treats a cassette that already exists."""

    ONCE = "once"
    NEW_EPISODES = "new_episodes"
    ALL = "all"
    NONE = "none"

    @classmethod
    def parse(cls, value: str | RecordMode) -> RecordMode:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ConfigError(f"--record-mode must be one of {choices}, got {value!r}") from None


def read_document(path: Path) -> dict[str, Any] | None:
    """The existing cassette at ``path`` as a document (validated: a bad file is a CassetteError naming the file
    and key), or None when there is none."""
    if not path.exists():
        return None
    return load(path).to_dict()


def _structure(workflow: Mapping[str, Any]) -> str:
    """What makes two workflows the same episode: every node, link and value except those replay ignores (seeds...)."""
    kept = {
        str(node_id): [node.get("class_type"), {k: v for k, v in (node.get("inputs") or {}).items() if k not in VOLATILE_INPUTS}]
        for node_id, node in workflow.items()
        if isinstance(node, dict)
    }
    return json.dumps(kept, sort_keys=True, default=str)


def recorded_workflows(document: Mapping[str, Any] | None) -> set[str]:
    """The identity of every job a cassette document holds."""
    if not document:
        return set()
    jobs = (document.get("comfy") or {}).get("jobs") or []
    return {_structure(job["workflow"]) for job in jobs if isinstance(job.get("workflow"), dict)}


def missing_workflows(document: Mapping[str, Any] | None, workflows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The workflows a cassette has no job for (a different seed, text or filename prefix is the same job)."""
    have = recorded_workflows(document)
    return [w for w in workflows if _structure(w) not in have]


def should_record(mode: RecordMode, path: Path, existing: Mapping[str, Any] | None, workflows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the workflow recorder must contact the server; raises when the mode forbids what is asked."""
    if mode is RecordMode.ALL:
        return True
    missing = missing_workflows(existing, workflows)
    if existing is None:
        if mode is RecordMode.NONE:
            raise ConfigError(f"{path}: no such cassette, and --record-mode none never records; use once, new_episodes or all")
        return True
    if not missing:
        return False
    if mode is RecordMode.ONCE:
        raise CassetteExistsError(
            path, None,
            "already exists and does not hold this workflow; --record-mode once never adds to a cassette: "
            "use --record-mode new_episodes to add it or all to re-record",
        )
    if mode is RecordMode.NONE:
        raise ConfigError(f"{path}: has no job for this workflow, and --record-mode none never records")
    return True


def combine(mode: RecordMode, existing: dict[str, Any] | None, recorded: dict[str, Any]) -> dict[str, Any]:
    """The document to write: the new recording alone, or merged into the existing cassette per ``mode``."""
    if existing is None:
        return recorded
    if mode is RecordMode.NONE:
        raise ConfigError("--record-mode none never records")
    if mode is RecordMode.ALL:
        merged = merge_documents([recorded, existing])
        fresh = len(recorded["interactions"])
        new, old = merged["interactions"][:fresh], merged["interactions"][fresh:]
        kept_new = [item for item in new if _key(item, response=True) not in {_key(o, response=True) for o in old}]
        merged["interactions"] = old + kept_new
    else:
        merged = merge_documents([existing, recorded])
        count = len(existing["interactions"])
        old, new = merged["interactions"][:count], merged["interactions"][count:]
        known = {_key(item) for item in old}
        merged["interactions"] = old + [item for item in new if _key(item) not in known]
    merged["comfy"]["recorded"] = {**existing["comfy"].get("recorded", {}), **recorded["comfy"].get("recorded", {})}
    return merged


def _key(item: Mapping[str, Any], *, response: bool = False) -> str:
    """What makes two templated interactions the same request (and, with ``response``, the same answer)."""
    request = item["request"]
    parts: list[Any] = [request["method"], request["uri"], _text(request.get("body"))]
    if response:
        parts.append(item["response"]["status"]["code"])
        parts.append(json.dumps(item["response"].get("body"), sort_keys=True, default=str))
    return json.dumps(parts, default=str)


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.hex()
    return "" if body is None else str(body)
