"""Shapes that cross a boundary (HTTP bodies, history entries, WebSocket payloads), typed once for every layer."""

from __future__ import annotations

from typing import Any, TypedDict

class ExecutionStatus(TypedDict):
    """History's ``status``: ComfyUI's PromptQueue.ExecutionStatus as a dict."""

    status_str: str
    completed: bool
    messages: list[list[Any]]


class HistoryEntry(TypedDict):
    """One finished prompt in GET /history: the queue item, its outputs, how it ended, output metadata."""

    prompt: list[Any]
    outputs: dict[str, Any]
    status: ExecutionStatus
    meta: dict[str, Any]


class QueueListing(TypedDict):
    """GET /queue."""

    queue_running: list[list[Any]]
    queue_pending: list[list[Any]]
