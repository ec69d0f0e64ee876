"""Matching a submission against the recorded jobs of its structure: what each recording's values are, worked
out once at load, and the recordings a kind of submission may be answered by, grouped by the values that decide
what a client sees and indexed by the others, so that choosing costs a few lookups per submission."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ...comfy.behaviours import DECISIVE_INPUTS
from ...comfy.graph import is_link
from ...comfy.nodes import VOLATILE_INPUTS
from ...cassette.model import Job

KINDS_KEPT = 256  # kinds of submission a JobIndex keeps (JobIndex._kind): the recorded graphs, their cache patterns


def widget_values(workflow: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """A graph's non-volatile widget values by (node, input)."""
    return {(node_id, key): value for node_id, node in workflow.items() for key, value in node.get("inputs", {}).items()
            if key not in VOLATILE_INPUTS and not (isinstance(value, list) and is_link(value))}


def _inputs(workflow: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    return {(node_id, key): value for node_id, node in workflow.items() for key, value in node.get("inputs", {}).items()}


def _shared(values: Mapping[tuple[str, str], Any], inputs: Mapping[tuple[str, str], Any]) -> int:
    """How many of a graph's widget values another graph of the same structure has too."""
    get, shared = inputs.get, 0
    for key, value in values.items():  # a plain loop: this runs for every candidate of every submission
        if get(key) == value:
            shared += 1
    return shared


def decisive_values(workflow: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """The values in a graph that decide what a client sees (behaviours.DECISIVE_INPUTS)."""
    return {(str(n), k): v for n, node in workflow.items() if isinstance(node, dict)
            for k, v in (node.get("inputs") or {}).items() if k in DECISIVE_INPUTS and not is_link(v)}


@dataclass(frozen=True)
class Facts:
    """What matching asks of a recorded job, worked out once at load instead of for every submission."""

    decisive: dict[tuple[str, str], Any]
    cached: list[str]  # sorted
    own_values: int  # how many widget values the job shares with itself
    with_bytes: int
    inputs: dict[tuple[str, str], Any]  # every input by (node, input)

    @classmethod
    def of(cls, job: Job) -> Facts:
        inputs = _inputs(job.workflow)
        return cls(decisive_values(job.workflow), sorted(job.cached), _shared(widget_values(job.workflow), inputs),
                   int(all(o.file for o in job.outputs)), inputs)


class _Candidates:
    """Recorded jobs a submission may be answered by, in the index's order, with their widget values indexed:
    counting how many values a submission shares with each is one lookup per value, not one per value and job."""

    def __init__(self, jobs: Sequence[tuple[Job, Facts]], has_client: bool) -> None:
        # Each job with the parts of its score that do not depend on the submission.
        self.jobs = [(job, facts, int(job.status != "interrupted"), (facts.with_bytes, int(job.has_client == has_client), len(job.ws)))
                     for job, facts in jobs]
        self._holders: dict[tuple[str, str], dict[Any, list[int]]] = {}  # (node, input) -> value -> jobs holding it
        self._odd: dict[tuple[str, str], list[tuple[int, Any]]] = {}  # values no lookup can find: compared one by one
        self._present: dict[tuple[str, str], set[int]] = {}  # (node, input) -> the jobs that have that input at all
        for i, (_, facts) in enumerate(jobs):
            for key, value in facts.inputs.items():
                self._present.setdefault(key, set()).add(i)
                if _findable(value):
                    self._holders.setdefault(key, {}).setdefault(value, []).append(i)
                else:
                    self._odd.setdefault(key, []).append((i, value))

    def shared(self, values: Mapping[tuple[str, str], Any]) -> list[int]:
        """For each job, how many of ``values`` it has too (:func:`_shared`: equal by ``==``)."""
        counts = [0] * len(self.jobs)
        holders, odd = self._holders, self._odd
        for key, value in values.items():
            if _findable(value):  # equal hashable values are found by lookup; unhashable ones equal none of them
                for i in holders.get(key, {}).get(value, ()):
                    counts[i] += 1
            for i, theirs in odd.get(key, ()):
                if theirs == value:
                    counts[i] += 1
            if value is None:  # a job without the input shares a None too (_shared: inputs.get(key) == value)
                present = self._present.get(key, set())
                for i in range(len(counts)):
                    counts[i] += i not in present
        return counts


class Kind:
    """The recorded jobs one kind of submission (structure, client, cache pattern, outputs) may be answered by,
    also grouped by their decisive values, so a submission's values pick their group in one lookup."""

    def __init__(self, jobs: Sequence[tuple[Job, Facts]], has_client: bool) -> None:
        self.all = _Candidates(jobs, has_client)
        keys = [_value_key(facts.decisive) for _, facts in jobs]
        # A job whose decisive values no lookup can find is compared with each submission (all of them are, then).
        self.groups: dict[frozenset[tuple[tuple[str, str], Any]], _Candidates] | None = None
        if all(key is not None for key in keys):
            grouped: dict[frozenset[tuple[tuple[str, str], Any]], list[tuple[Job, Facts]]] = {}
            for key, job in zip(keys, jobs):
                grouped.setdefault(cast(frozenset[tuple[tuple[str, str], Any]], key), []).append(job)
            self.groups = {key: _Candidates(group, has_client) for key, group in grouped.items()}

    def matching(self, decisive: dict[tuple[str, str], Any]) -> tuple[_Candidates, bool]:
        """The candidates for a submission's decisive values, and whether each must still be compared with them."""
        key = _value_key(decisive) if self.groups is not None else None
        if key is None or self.groups is None:
            return self.all, True
        return self.groups.get(key, NO_CANDIDATES), False


def _value_key(values: Mapping[tuple[str, str], Any]) -> frozenset[tuple[tuple[str, str], Any]] | None:
    """A key equal for value maps that are equal (``==``), or None when a value is not :func:`_findable`."""
    return frozenset(values.items()) if all(_findable(v) for v in values.values()) else None


NO_CANDIDATES = _Candidates((), False)


def _findable(value: Any) -> bool:
    """Whether a dict lookup finds exactly the values ``==`` to ``value``: hashable, and not NaN (a lookup finds
    the very same NaN object, which ``==`` does not)."""
    try:
        hash(value)
    except TypeError:
        return False
    return bool(value == value)
