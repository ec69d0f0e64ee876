"""Answers that follow what the test submitted: a job's output names are ComfyUI's names for the prompt the test
sent, not the recording's.

``serve`` names each output from the submitted SaveImage's ``filename_prefix`` (``gen_job_1`` gives
``gen_job_1_00001_.png``), counting in the order jobs run. vcrpy plays stored answers, rendered when the cassette
loads, so a job's names are first bound to the recorded prefixes. When the test's ``POST /prompt`` for a job is
played, the matcher has just offered its body (:meth:`LiveJob.offer`); the answer's first read names the job's
outputs from that prompt, in play order, and every answer of that job read afterwards (``/history``, ``/view``'s
``Content-Disposition``) is rendered again with those names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..cassette.model import Job
from ..cassette.naming import bind_job
from ..comfy.folders import OutputNamer

Parts = tuple[dict[str, Any], dict[str, Any]]  # a response's body and headers, rendered


class LiveJob:
    """One recorded job's current placeholder values in this load of the cassette; shared, never copied."""

    def __init__(self, job: Job, values: dict[str, Any], namer: OutputNamer, on_change: Callable[[], None],
                 everyone: list[LiveJob]) -> None:
        self.job = job
        self.values = values
        self._namer = namer
        self._on_change = on_change
        self._everyone = everyone  # every job of this load, this one included
        everyone.append(self)
        self._offered: bytes | None = None
        self._settled = False
        self.played: frozenset[str] = frozenset()  # the file names its played POST gave it

    def __deepcopy__(self, memo: dict[int, Any]) -> LiveJob:
        return self  # vcrpy copies stored requests and responses; the job they belong to stays one

    def offer(self, body: bytes) -> None:
        """The body of a request that matched this job's ``POST /prompt`` (the matcher calls this)."""
        if not self._settled:
            self._offered = body

    def settle(self) -> None:
        """This job's ``POST /prompt`` is being answered: name its outputs from the offered prompt's prefixes."""
        if self._settled or self._offered is None:
            return  # settled, or read before any request matched (vcrpy's own filters read answers as they load)
        self._settled = True
        try:
            submitted = json.loads(self._offered)
        except ValueError:
            return
        workflow = submitted.get("prompt") if isinstance(submitted, dict) else None
        if not isinstance(workflow, dict):
            return
        binding = bind_job(prompt_id=str(self.values.get("prompt_id", "")), number=self.values.get("number", 0),
                           workflow=workflow, images=self.job.outputs, namer=self._namer, refuse_outside=False)
        renamed = {k: v for k, v in binding.values.items() if k.startswith("out.") and self.values.get(k) != v}
        self.played = frozenset(str(v) for k, v in binding.values.items() if k.startswith("out.") and k.endswith(".filename"))
        if renamed:
            self.values.update(renamed)
            self._on_change()


    def judge(self, name: str, value: str) -> bool | None:
        """Whether ``value`` fits this job's ``name`` placeholder in a request (the matcher asks): False when a played
        job holds that file name now, True when it is this job's own current value, None to let the recorded
        values decide."""
        if any(other is not self and value in other.played for other in self._everyone):
            return False
        return True if self.values.get(name) == value else None


class LiveResponse(dict[str, Any]):
    """A stored vcrpy response whose body and headers are rendered again when a job's names changed.

    The dict itself holds the answer as first rendered (what ``dict.get`` and a save see); reading ``body`` or
    ``headers`` through ``[]`` (as vcrpy's stubs do) first runs ``before`` (a job's ``POST /prompt`` settles its
    names), then gives the answer for the current names.
    """

    def __init__(self, rendered: Mapping[str, Any], render: Callable[[], Parts], version: Callable[[], int],
                 before: Callable[[], None] | None = None) -> None:
        super().__init__(rendered)
        self._render = render
        self._version = version
        self._before = before
        self._seen = version()

    def __deepcopy__(self, memo: dict[int, Any]) -> LiveResponse:
        return self  # the stored answer stays live (vcrpy deep-copies what it appends)

    def __getitem__(self, key: str) -> Any:
        if key in ("body", "headers"):
            if self._before is not None:
                self._before()
            if self._version() != self._seen:
                self._seen = self._version()
                body, headers = self._render()
                super().__setitem__("body", body)
                super().__setitem__("headers", headers)
        return super().__getitem__(key)
