"""Matching a submission against the recorded jobs of its structure: what each recording's values are, worked
out once at load, and the recordings a kind of submission may be answered by, grouped by the values that decide
what a client sees and indexed by the others, so that choosing costs a few lookups per submission."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...comfy.behaviours import DECISIVE_INPUTS
from ...comfy.graph import is_link
from ...comfy.nodes import VOLATILE_INPUTS
from ...cassette.model import Job

KINDS_KEPT = 256  # kinds of submission a JobIndex keeps (JobIndex._kind): the recorded graphs, their cache patterns


def _node_inputs(node: Any) -> Mapping[str, Any]:
    """A node's inputs; none for what is no node (a rejected submission's ``"2": "x"``) or has no inputs object."""
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def widget_values(workflow: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """A graph's non-volatile widget values by (node, input)."""
    return {(node_id, key): value for node_id, node in workflow.items() for key, value in _node_inputs(node).items()
            if key not in VOLATILE_INPUTS and not (isinstance(value, list) and is_link(value))}


def _inputs(workflow: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    return {(node_id, key): value for node_id, node in workflow.items() for key, value in _node_inputs(node).items()}


def _shared(values: Mapping[tuple[str, str], Any], inputs: Mapping[tuple[str, str], Any]) -> int:
    """How many of a graph's widget values another graph of the same structure has too."""
    get, shared = inputs.get, 0
    for key, value in values.items():  # a plain loop: this runs for every candidate of every submission
        if get(key) == value:
            shared += 1
    return shared


def decisive_values(workflow: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """The values in a graph that decide what a client sees (behaviours.DECISIVE_INPUTS)."""
    found = {}
    for n, node in workflow.items():  # (_node_inputs inline: this runs for every submission)
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict):
            for k in DECISIVE_INPUTS.intersection(inputs):
                if not (isinstance(value := inputs[k], list) and is_link(value)):
                    found[(str(n), k)] = value
    return found


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
        self.jobs = [job for job, _ in jobs]
        self._facts = [facts for _, facts in jobs]
        # The parts of each job's score that do not depend on the submission (JobIndex.choose), and its place.
        self._finished = [int(job.status != "interrupted") for job, _ in jobs]  # an interrupted recording knows half the run
        rests = [(facts.with_bytes, int(job.has_client == has_client), len(job.ws), -i) for i, (job, facts) in enumerate(jobs)]
        # Each job's rank by those (the first of equal ones wins), an int that _best compares faster than the tuple.
        self._by_rank = sorted(range(len(jobs)), key=rests.__getitem__)
        self._ranks = [0] * len(jobs)
        for rank, i in enumerate(self._by_rank):
            self._ranks[i] = rank
        self._errors = {i for i, (job, _) in enumerate(jobs) if job.status == "error"}
        # By node and input: value -> the jobs holding it; the values no lookup can find, compared one by one; the
        # jobs that have the input at all.
        self._holders: dict[str, dict[str, dict[Any, list[int]]]] = {}
        self._odd: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self._present: dict[tuple[str, str], set[int]] = {}
        for i, (_, facts) in enumerate(jobs):
            for (node, key), value in facts.inputs.items():
                self._present.setdefault((node, key), set()).add(i)
                if _findable(value):
                    self._holders.setdefault(node, {}).setdefault(key, {}).setdefault(value, []).append(i)
                else:
                    self._odd.setdefault((node, key), []).append((i, value))
        for by_key in self._holders.values():  # a value every job holds adds one to each: counted once (shared)
            for by_value in by_key.values():
                for value, held in by_value.items():
                    if len(held) == len(jobs):
                        by_value[value] = _EVERY
        # The inputs whose values tell the jobs apart: at any other (every job holds the same one value, or no job
        # has the input) a submission's value adds the same to every job's count, and the best job stays the best.
        # Nor do the links: a submission has the jobs' structure, so the same ones, which _telling_counts skips.
        self._telling = [(node, key) for (node, key), present in self._present.items() if key not in VOLATILE_INPUTS
                         and not (len(present) == len(jobs) and (node, key) not in self._odd and len(self._holders[node][key]) == 1)
                         and not (len(present) == len(jobs) and all(is_link(v) for _, v in self._odd.get((node, key), [(0, None)])))]
        # The best for a submission that shares no telling value with any job (a new seed, a new prompt text).
        self._unshared = self._best([0] * len(jobs), ()) if jobs else None

    def best(self, workflow: Mapping[str, Any], decisive: Mapping[tuple[str, str], Any] | None) -> Job | None:
        """The job that best matches a submission of ``workflow`` (JobIndex.choose's rule), or None; ``decisive``:
        the submission's decisive values when each job must still be compared with them."""
        if not self.jobs:
            return None
        excluded = [] if decisive is None else [i for i, facts in enumerate(self._facts) if decisive != facts.decisive]
        # The inputs that tell the jobs apart rank them as all their values do.
        counts = self._telling_counts(workflow)
        best = self._best(counts, excluded) if excluded or any(counts) else self._unshared
        if best is not None and best in self._errors:
            # The best is a failed recording, which replays only its own values: that takes the exact counts.
            shared = self.shared(workflow)
            excluded += [i for i in self._errors if shared[i] != self._facts[i].own_values]
            best = self._best(shared, excluded)
        return self.jobs[best] if best is not None else None

    def _best(self, shared: Sequence[int], excluded: Sequence[int]) -> int | None:
        """The place of the job not ``excluded`` with the highest score (finished, shared, then the rest of its
        facts and its place: its rank), None when every job is excluded."""
        finished = self._finished
        if excluded:
            finished = list(finished)
            for i in excluded:
                finished[i] = -1
        score = max(zip(finished, shared, self._ranks))
        return self._by_rank[score[2]] if score[0] >= 0 else None

    def shared(self, workflow: Mapping[str, Any]) -> list[int]:
        """For each job, how many of ``workflow``'s widget values (:func:`widget_values`) it has too (:func:`_shared`:
        equal by ``==``), read from the graph itself."""
        counts = [0] * len(self.jobs)
        every = 0  # the values every job holds
        for node_id, node in workflow.items():
            for key, value in _node_inputs(node).items():
                if key in VOLATILE_INPUTS or isinstance(value, list) and is_link(value):
                    continue
                every += self._count(counts, node_id, key, value)
        return [count + every for count in counts] if every else counts

    def _telling_counts(self, workflow: Mapping[str, Any]) -> list[int]:
        """:meth:`shared` less what every job shares alike (the same for each): the counts at the inputs that tell
        the jobs apart."""
        counts = [0] * len(self.jobs)
        for node_id, key in self._telling:
            node = workflow.get(node_id)  # (_node_inputs inline)
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if isinstance(inputs, dict) and key in inputs and not (isinstance(value := inputs[key], list) and is_link(value)):
                self._count(counts, node_id, key, value)
        return counts

    def _count(self, counts: list[int], node_id: str, key: str, value: Any) -> int:
        """Add one to the count of each job that shares ``value`` at the input; returns 1 when every job holds it
        (for the caller to add once), else 0."""
        held = self._holders.get(node_id, {}).get(key)
        every = 0
        if held is not None:
            # Equal values are found by lookup (the holders hold no NaN, the one value a lookup finds unequal);
            # an unhashable value equals none of them.
            try:
                found = held.get(value, ())
            except TypeError:
                found = ()
            if found is _EVERY:
                every = 1
            for i in found:
                counts[i] += 1
        odd = self._odd.get((node_id, key)) if self._odd else None
        if odd:
            for i, theirs in odd:
                if theirs == value:
                    counts[i] += 1
        if value is None:  # a job without the input shares a None too (_shared: inputs.get(key) == value)
            present = self._present.get((node_id, key), set())
            for i in range(len(counts)):
                counts[i] += i not in present
        return every


class Kind:
    """The recorded jobs one kind of submission (structure, client, cache pattern, outputs) may be answered by,
    also grouped by their decisive values, so a submission's values pick their group with a few comparisons."""

    def __init__(self, jobs: Sequence[tuple[Job, Facts]], has_client: bool) -> None:
        self.all = _Candidates(jobs, has_client)
        # Groups of equal decisive values, in the order their first job comes. Only values a lookup can find
        # (_findable) make ``==`` transitive; with any other, each job is compared with each submission instead.
        self.groups: list[tuple[Mapping[tuple[str, str], Any], _Candidates]] | None = None
        if all(_findable(v) for _, facts in jobs for v in facts.decisive.values()):
            grouped: list[tuple[Mapping[tuple[str, str], Any], list[tuple[Job, Facts]]]] = []
            for job, facts in jobs:
                group = next((members for decisive, members in grouped if decisive == facts.decisive), None)
                if group is None:
                    group = []
                    grouped.append((facts.decisive, group))
                group.append((job, facts))
            self.groups = [(decisive, _Candidates(members, has_client)) for decisive, members in grouped]
        # The groups by their values' items (dicts are equal when their items are; hashable, as _findable values are).
        self._by_values = {frozenset(decisive.items()): candidates for decisive, candidates in self.groups or ()}

    def matching(self, decisive: Mapping[tuple[str, str], Any]) -> tuple[_Candidates, bool]:
        """The candidates for a submission's decisive values, and whether each must still be compared with them."""
        if self.groups is None:
            return self.all, True
        try:
            found = self._by_values.get(frozenset(decisive.items()))
        except TypeError:  # an unhashable value, which no group's equals
            found = None
        return (found if found is not None else NO_CANDIDATES), False


_EVERY: list[int] = []  # stands for the list of every candidate (_Candidates.shared counts it once, for all)
NO_CANDIDATES = _Candidates((), False)


def _findable(value: Any) -> bool:
    """Whether a dict lookup finds exactly the values ``==`` to ``value``: hashable, and not NaN (a lookup finds
    the very same NaN object, which ``==`` does not)."""
    try:
        hash(value)
    except TypeError:
        return False
    return bool(value == value)
