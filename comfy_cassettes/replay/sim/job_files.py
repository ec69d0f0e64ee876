"""What a running job's outputs touch: its images made answerable by /view, its output entries enriched, its
previews drawn and its recorded preview frames read from the cassette's blobs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...cassette.model import Cassette, Job
from ...comfy import behaviours
from ...comfy.behaviours import image_size
from ...comfy.folders import OutputNamer
from .enrichment import OutputEnricher
from .inputs import InputFiles
from .outputs import OutputFiles
from .pixels import preview_jpeg
from .plan import Plan


class JobFiles:
    """The files side of a run; ``enricher`` is None for a ComfyUI whose outputs carry no metadata."""

    def __init__(self, files: OutputFiles, namer: OutputNamer, inputs: InputFiles, cassettes: Sequence[Cassette], *,
                 enricher: OutputEnricher | None, preview_size: int | None) -> None:
        self.files = files
        self.namer = namer
        self.inputs = inputs
        self.enricher = enricher
        self.preview_size = preview_size
        self._job_cassette = {id(job): c for c in cassettes for job in c.jobs}

    def cassette_of(self, job: Job | None) -> Cassette | None:
        """The cassette a recorded job came from (its blobs are beside it)."""
        return self._job_cassette.get(id(job)) if job is not None else None

    def materialize(self, plan: Plan, node: str, output: Any, png_metadata: Callable[[], Mapping[str, str]]) -> None:
        """Make one node's output images answerable by /view (written in dynamic mode). On the loop, not a thread:
        jobs run one at a time, so a thread's round trip held up the queue (measured: half the jobs/s)."""
        self.files.materialize(output, plan.images_of(node), self.cassette_of(plan.job), png_metadata,
                               seed=plan.seeds.get(node), wrote=self.namer.wrote, ran=node not in plan.cached)

    def from_history(self, plan: Plan, outputs: Mapping[str, Any], png_metadata: Callable[[], Mapping[str, str]],
                     prompt_id: str) -> dict[str, Any]:
        """A run's outputs taken from its recorded history (a job sent to nobody has no ``executed`` to make them):
        each node's images made answerable by /view, then enriched, as ``executed`` would have."""
        made = {}
        for node, output in outputs.items():
            self.materialize(plan, node, output, png_metadata)
            made[node] = self.enrich(output, prompt_id)
        return made

    def enrich(self, output: Any, prompt_id: str) -> Any:
        return self.enricher.enrich(output, prompt_id) if self.enricher is not None else output

    def preview(self, workflow: dict[str, Any], sampler: str, step: int, steps: int) -> bytes:
        """A sampler step's preview JPEG, drawn from its seed at its latent's size."""
        width, height, _ = image_size(workflow, sampler, self.inputs.size)
        return preview_jpeg(behaviours.seed(workflow, sampler) or 0, width, height, step, steps, self.preview_size)

    def blob(self, job: Job | None, name: str) -> bytes:
        """A recorded frame's bytes from its cassette's blobs (empty when the job has no cassette)."""
        cassette = self.cassette_of(job)
        return cassette.read_blob(name) if cassette is not None else b""
