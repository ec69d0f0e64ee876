"""A prompt queued with an ``extra_data`` that is no object (a list or a string, which 0.3.64 queues as it is):
shown as sent in /queue and history, and failing where ComfyUI's run first reads it (comfy/extra_data.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...comfy.extra_data import read_error, reading_node
from ..harness.faults import FaultRule, JobFault
from .state import QueueItem

__all__ = ["queue_as_sent"]


class _BeforeInputs(JobFault):
    """An execution_error raised while the node's inputs were gathered: ComfyUI reports no current_inputs (its
    input_data_all was never made)."""

    def error_payload(self, prompt_id: str, node_id: str | None, workflow: Mapping[str, Any], executed: Sequence[str],
                      current_outputs: Sequence[str]) -> dict[str, Any]:
        return {**super().error_payload(prompt_id, node_id, workflow, executed, current_outputs), "current_inputs": {}}


def queue_as_sent(item: QueueItem, sent: Any, object_info: Mapping[str, Any] | None) -> None:
    """Keep ``sent`` as ``item``'s extra_data for its listings, and make its run fail at the first node reading it."""
    item.extra_data_sent = sent
    found = reading_node(item.order, item.workflow, object_info or {})
    if found is None:
        return
    node, hidden = found
    kind, message, frames = read_error(sent, hidden)
    rule = FaultRule(id="extra_data", kind="execution_error", exception_type=kind, exception_message=message, traceback=frames)
    item.faults = [*item.faults, _BeforeInputs("execution_error", node, rule, if_run=True)]
