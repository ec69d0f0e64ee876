"""The worker's per-job shortcuts choose what the plain rules would: JobIndex.choose (kinds of submission worked out
once, values indexed) against a scan of every recording by the documented rule, and cache signatures that tell
apart the values ComfyUI's cache key tells apart."""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from comfy_cassettes.cassette.load import load
from comfy_cassettes.cassette.model import Job
from comfy_cassettes.comfy.graph import signatures, structure
from comfy_cassettes.replay.sim.matching import Facts, decisive_values, widget_values
from comfy_cassettes.replay.sim.plan import JobIndex

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
VALUES: list[Any] = [None, 0, 1, 1.0, True, False, "1", "x", [1, 2], {"a": 1}, float("nan"), 7, 64, 512]


def scan(jobs: list[Job], workflow: dict[str, Any], *, has_client: bool, cached: list[str], outputs: list[str]) -> Job | None:
    """JobIndex.choose's rule, one recording at a time."""
    best: tuple[tuple[int, ...], Job] | None = None
    for job in jobs:
        facts = Facts.of(job)
        if structure(job.workflow) != structure(workflow) or job.status in ("rejected", "unfinished") or facts.cached != sorted(cached):
            continue
        if outputs and job.outputs_to_execute and sorted(job.outputs_to_execute) != sorted(outputs):
            continue
        if decisive_values(workflow) != facts.decisive:
            continue
        if has_client and not job.has_client and (job.status not in ("success", "error") or not job.history):
            continue
        shared = sum(1 for key, value in widget_values(workflow).items() if facts.inputs.get(key) == value)
        if job.status == "error" and shared != facts.own_values:
            continue
        score = (int(job.status != "interrupted"), shared, facts.with_bytes, int(job.has_client == has_client), len(job.ws))
        if best is None or score > best[0]:
            best = (score, job)
    return best[1] if best else None


def variant(job: Job, rng: random.Random) -> dict[str, Any]:
    """A recording's graph with some values changed, removed or added (links kept: the same structure)."""
    workflow = copy.deepcopy(job.workflow)
    for node in workflow.values():
        inputs = node.setdefault("inputs", {})
        for key, value in list(inputs.items()):
            if isinstance(value, list):
                continue
            roll = rng.random()
            if roll < 0.15:
                inputs[key] = rng.choice(VALUES)
            elif roll < 0.2:
                del inputs[key]
        if rng.random() < 0.05:
            inputs["extra"] = rng.choice(VALUES)
    return workflow


def test_choose_picks_what_a_scan_of_every_recording_picks() -> None:
    jobs = [job for path in sorted(CASSETTES.glob("*.yaml")) for job in load(path).jobs]
    index, rng = JobIndex(jobs), random.Random(20)
    picked = 0
    for _ in range(3000):
        job = rng.choice(jobs)
        workflow = job.workflow if rng.random() < 0.2 else variant(job, rng)
        cached = rng.choice([[], list(job.cached), list(workflow)[:1]])
        outputs = rng.choice([[], list(job.outputs_to_execute), list(workflow)[-1:]])
        has_client = rng.random() < 0.5
        expected = scan(jobs, workflow, has_client=has_client, cached=cached, outputs=outputs)
        assert index.choose(workflow, has_client=has_client, cached=cached, shape=structure(workflow), outputs=outputs) is expected
        picked += expected is not None
    assert picked > 300  # the draws reach recordings, not only misses


def to_hashable(obj: Any) -> Any:
    """comfy_execution/caching.py's to_hashable (0.3.64 and 0.8.0), for the JSON values a prompt holds."""
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    if isinstance(obj, Mapping):
        return frozenset([(to_hashable(k), to_hashable(v)) for k, v in sorted(obj.items())])
    assert isinstance(obj, Sequence)
    return frozenset(zip(itertools.count(), [to_hashable(i) for i in obj]))


def test_signatures_of_a_kept_walk_are_the_walked_ones() -> None:
    """A structure's kept walk (each node's text made ready) signs as the walk does: whatever the values, also ones
    it cannot write as a repr, and inputs named otherwise (a structure fixes the links only)."""
    rng = random.Random(7)
    values: list[Any] = [*VALUES, -0.0, 1.0, True, "a;b=c", "%s", [1, 2.0], {"a": True}]
    for _ in range(200):
        named = rng.choice(["color", "colour"])
        graph = {"1": {"class_type": "EmptyImage", "inputs": {named: rng.choice(values), "width": rng.choice(values)}},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": rng.choice(values)}}}
        assert signatures(graph, structure(graph)) == signatures(graph)


def test_signatures_tell_apart_the_values_comfyuis_key_does() -> None:
    # 1, 1.0 and True are one key there (equal, with equal hashes), as are [1, 2] and [1, 2.0]; "1" is not 1.
    values: list[Any] = [*VALUES, -0.0, "a;b=c", "'1'", "\ud800", [1, 2.0], {"a": True}, [True, 2], 1e300, 0.5]
    keys = [signatures({"1": {"class_type": "EmptyImage", "inputs": {"color": value}}})["1"] for value in values]
    for (a, key_a), (b, key_b) in itertools.combinations(zip(values, keys), 2):
        assert (key_a == key_b) == (to_hashable(a) == to_hashable(b)), (a, b)
    linked: dict[str, Any] = {"1": {"class_type": "EmptyImage", "inputs": {"color": 0}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    again = copy.deepcopy(linked)
    assert signatures(again) == signatures(linked)  # the same graph, the same keys
    again["1"]["inputs"]["color"] = 1
    assert signatures(again)["2"] != signatures(linked)["2"]  # a change upstream reaches the save
    text = copy.deepcopy(linked)
    text["2"]["inputs"]["images"] = signatures(linked)["1"] + "#0"  # a string spelling a link's key is not the link
    assert signatures(text)["2"] != signatures(linked)["2"]
