"""ReplayControl: a Python client for a replay server's admin API (reset, journal, state)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from .replay.config import ADMIN_PREFIX


class ReplayControl:
    """Talks to the admin routes of a running replay server.

    Usage::

        control = ReplayControl("http://127.0.0.1:8189")
        control.reset()
        assert control.journal(method="POST", path="/prompt")
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ReplayControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"{ADMIN_PREFIX}{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Forget queue, history, caches, handed-out names and the journal."""
        self._admin("POST", "/reset")

    def state(self) -> dict[str, Any]:
        """Mode, timing, folders, queue and history sizes."""
        result: dict[str, Any] = self._admin("GET", "/state")
        return result

    def journal(self, *, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """Requests the server received, oldest first, optionally filtered by method and path."""
        params = {k: v for k, v in {"method": method, "path": path}.items() if v}
        entries: list[dict[str, Any]] = self._admin("GET", "/journal", params=params)["entries"]
        return entries

    def clear_journal(self) -> None:
        self._admin("DELETE", "/journal")

    def configure(self, **options: Any) -> None:
        """Apply per-test server options (the pytest marker's extra keywords land here).

        Raises TypeError for an option this server does not know.
        """
        if options:
            raise TypeError(f"unknown replay option(s): {', '.join(sorted(options))}")

    def wait_for_job(self, prompt_id: str, *, timeout: float = 10.0, poll: float = 0.01) -> dict[str, Any]:
        """Poll /history/{prompt_id} until the job is finished; returns its history entry."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self._http.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry is not None:
                return dict(entry)
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")
            time.sleep(poll)

    def wait_for_jobs(self, prompt_ids: Iterable[str], *, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """wait_for_job for several prompts."""
        return {pid: self.wait_for_job(pid, timeout=timeout) for pid in prompt_ids}
