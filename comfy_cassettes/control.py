"""ReplayControl: a Python client for a replay server's admin API (reset, journal, faults, manual clock)."""

from __future__ import annotations

import time
from urllib.parse import quote
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from .errors import ClockError, FaultSpecError
from .replay.config import ADMIN_PREFIX


def problems_report(problems: Mapping[str, Any], *, allow_unmatched: bool = False) -> str:
    """A readable account of a server's engine errors and unmatched requests ("" when there is nothing to say)."""
    lines: list[str] = []
    for error in problems.get("errors") or []:
        lines.append(f"engine error: {error}")
    for miss in [] if allow_unmatched else problems.get("unmatched") or []:
        lines.append(f"unmatched request: {miss.get('request')} (no recording answers it)")
        for near in miss.get("closest") or []:
            lines.append(f"    closest: {near.get('request')}: {'; '.join(near.get('differences') or []) or 'same'}")
    if not lines:
        return ""
    hint = "" if allow_unmatched else "\n(expected unmatched requests? mark the test comfy_cassette(allow_unmatched=True))"
    return "the replay server reported problems during this test:\n" + "\n".join(lines) + hint


class ReplayControl:
    """Talks to the admin routes of a running replay server.

    Usage::

        control = ReplayControl("http://127.0.0.1:8189")
        control.reset()
        assert control.journal(method="POST", path="/prompt")
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
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

    def problems(self) -> dict[str, Any]:
        """Engine errors and unmatched requests since the last reset: ``{"errors": [...], "unmatched": [...]}``."""
        result: dict[str, Any] = self._admin("GET", "/problems")
        return result

    def check(self, *, allow_unmatched: bool = False) -> None:
        """Raise AssertionError when the server logged an engine error, or (unless ``allow_unmatched``) answered a
        request that nothing recorded matches; the message lists each, with the closest recorded requests.

        Call it at the end of a test, as pytest-httpserver's ``check_assertions()``: the pytest fixtures do.
        """
        report = problems_report(self.problems(), allow_unmatched=allow_unmatched)
        if report:
            raise AssertionError(report)

    def configure(self, *, faults: Iterable[Mapping[str, Any]] | Mapping[str, Any] | None = None,
                  hold: Any = None, **options: Any) -> None:
        """Apply per-test server options (the pytest marker's extra keywords land here).

        ``faults``: one rule or a list (see :meth:`add_fault`). ``hold``: a hold point or a list of them
        (``"queued"``, ``"node:3"``, ``"finished"``, or ``{"at": "node", "node": "3", "prompt_id": ...}``).
        Raises TypeError for an option this server does not know.
        """
        if options:
            raise TypeError(f"unknown replay option(s): {', '.join(sorted(options))} (known: faults, hold)")
        if faults is not None:
            self.add_fault(*([faults] if isinstance(faults, Mapping) else list(faults)))
        if hold is not None:
            for point in hold if isinstance(hold, (list, tuple)) else [hold]:
                if isinstance(point, Mapping):
                    self.hold(point.get("at"), node=point.get("node"), prompt_id=point.get("prompt_id"))
                else:
                    self.hold(point)

    # ------------------------------------------------------------ journal verification

    def find(self, *, method: str | None = None, path: str | None = None, **pattern: Any) -> list[dict[str, Any]]:
        """Journal entries matching a pattern: ``method``, ``path`` (``/prompt`` also matches ``/api/prompt``;
        ``*`` globs), ``status``, ``body_contains``, ``body_json`` (subset), ``query`` (subset), ``since``."""
        body = {k: v for k, v in {"method": method, "path": path, **pattern}.items() if v is not None}
        entries: list[dict[str, Any]] = self._admin("POST", "/journal/find", json=body)["entries"]
        return entries

    def count(self, *, method: str | None = None, path: str | None = None, **pattern: Any) -> int:
        """How many received requests match the pattern (same keys as :meth:`find`)."""
        body = {k: v for k, v in {"method": method, "path": path, **pattern}.items() if v is not None}
        return int(self._admin("POST", "/journal/count", json=body)["count"])

    def assert_requested(
        self, method: str | None = None, path: str | None = None, *, count: int | None = None,
        min: int | None = None, max: int | None = None, **pattern: Any,
    ) -> int:
        """Assert how often a request was received (default: at least once); returns the count.

        Usage::

            control.assert_requested("POST", "/prompt", count=3)
            control.assert_requested("GET", "/history/*", min=1, status=200)
        """
        body = {k: v for k, v in {"method": method, "path": path, "count": count, "min": min, "max": max, **pattern}.items() if v is not None}
        response = self._http.post(f"{ADMIN_PREFIX}/journal/assert", json=body)
        if response.status_code == 409:
            result = response.json()
            received = "\n  ".join(result.get("received", [])) or "(nothing)"
            raise AssertionError(f"{result['message']}; the server received:\n  {received}")
        response.raise_for_status()
        return int(response.json()["count"])

    def assert_not_requested(self, method: str | None = None, path: str | None = None, **pattern: Any) -> None:
        """Assert that no received request matches."""
        self.assert_requested(method, path, count=0, **pattern)

    # ------------------------------------------------------------ faults

    def add_fault(self, *rules: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Add fault rules as given to ``POST /__cassettes__/faults``; returns them with their ids.

        Kinds: ``delay`` (route, seconds, max_seconds, count), ``status`` (route, status, count, body, headers),
        ``drop`` (route, count), ``execution_error`` / ``execution_interrupted`` (count, node, exception_*),
        ``ws_disconnect`` (count, node, code), ``down`` (seconds). ``route`` ``/prompt`` also matches
        ``/api/prompt``; ``count`` null means every time.
        """
        response = self._http.post(f"{ADMIN_PREFIX}/faults", json=list(rules))
        if response.status_code == 400:
            raise FaultSpecError(response.json()["error"])
        response.raise_for_status()
        added: list[dict[str, Any]] = response.json()["added"]
        return added

    def fail(self, route: str, status: int = 503, *, count: int | None = 1, method: str | None = None,
             body: str | None = None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Answer the next ``count`` requests to ``route`` with an HTTP error (None: every one)."""
        spec = {"kind": "status", "route": route, "status": status, "count": count, "method": method, "body": body, "headers": dict(headers or {})}
        return self.add_fault({k: v for k, v in spec.items() if v is not None or k == "count"})[0]

    def delay(self, route: str, seconds: float, *, max_seconds: float | None = None, count: int | None = None,
              method: str | None = None) -> dict[str, Any]:
        """Delay responses on ``route`` by ``seconds`` (random up to ``max_seconds``); every time by default."""
        spec = {"kind": "delay", "route": route, "seconds": seconds, "max_seconds": max_seconds, "count": count, "method": method}
        return self.add_fault({k: v for k, v in spec.items() if v is not None or k == "count"})[0]

    def drop(self, route: str, *, count: int | None = 1, method: str | None = None) -> dict[str, Any]:
        """Close the connection without an answer for the next ``count`` requests to ``route``."""
        spec = {"kind": "drop", "route": route, "count": count, "method": method}
        return self.add_fault({k: v for k, v in spec.items() if v is not None or k == "count"})[0]

    def fail_jobs(self, count: int = 1, *, node: str | None = None, exception_type: str | None = None,
                  exception_message: str | None = None, traceback: list[str] | None = None) -> dict[str, Any]:
        """The next ``count`` accepted prompts end in ``execution_error`` at ``node`` (default: their last node)."""
        spec = {"kind": "execution_error", "count": count, "node": node, "exception_type": exception_type,
                "exception_message": exception_message, "traceback": traceback}
        return self.add_fault({k: v for k, v in spec.items() if v is not None})[0]

    def interrupt_jobs(self, count: int = 1, *, node: str | None = None) -> dict[str, Any]:
        """The next ``count`` accepted prompts end in ``execution_interrupted`` at ``node`` (default: last)."""
        return self.add_fault({k: v for k, v in {"kind": "execution_interrupted", "count": count, "node": node}.items() if v is not None})[0]

    def disconnect_ws(self, count: int = 1, *, node: str | None = None, code: int | None = None) -> dict[str, Any]:
        """Cut the submitting client's WebSocket when each of the next ``count`` jobs reaches ``node`` (default:
        its first node). No ``code``: the TCP connection is cut (clients see 1006); else a close frame."""
        spec = {"kind": "ws_disconnect", "count": count, "node": node, "code": code}
        return self.add_fault({k: v for k, v in spec.items() if v is not None})[0]

    def down(self, seconds: float, *, restart: bool = False) -> None:
        """Refuse connections for ``seconds`` (open connections and sockets are cut), then serve again;
        with ``restart`` the server comes back with an empty queue and history, like a restarted ComfyUI."""
        self.add_fault({"kind": "down", "seconds": seconds, "restart": restart})
        self._http.close()  # the pooled connection is about to be cut
        self._http = httpx.Client(base_url=self.url, timeout=self._timeout)

    def faults(self) -> list[dict[str, Any]]:
        """The active rules with ``remaining`` and ``hits``."""
        rules: list[dict[str, Any]] = self._admin("GET", "/faults")["faults"]
        return rules

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")

    # ------------------------------------------------------------ manual clock

    def hold(self, at: str | None = None, *, node: str | None = None, prompt_id: str | None = None) -> dict[str, Any]:
        """Hold jobs at ``queued``, ``node:<id>`` (or ``node=``), ``node:*`` or ``finished`` until advanced."""
        state: dict[str, Any] = self._admin("POST", "/clock/hold", json={"at": at, "node": node, "prompt_id": prompt_id})
        return state

    def wait_held(self, prompt_id: str | None = None, *, at: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until a job (``prompt_id`` if given) is held (at ``at`` if given); returns ``{prompt_id, at, ...}``."""
        response = self._http.post(f"{ADMIN_PREFIX}/clock/wait", json={"prompt_id": prompt_id, "at": at, "timeout": timeout}, timeout=timeout + 5)
        if response.status_code == 408:
            raise TimeoutError(f"no job {prompt_id or ''} was held{' at ' + at if at else ''} within {timeout}s: {response.json()}")
        response.raise_for_status()
        held: dict[str, Any] = response.json()
        return held

    def advance(self, prompt_id: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
        """Let the held job go on to its next hold or its end; returns ``{prompt_id, from, to}``."""
        response = self._http.post(f"{ADMIN_PREFIX}/clock/advance", json={"prompt_id": prompt_id, "timeout": timeout}, timeout=2 * timeout + 5)
        if response.status_code == 409:
            raise ClockError(response.json()["error"])
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def release(self) -> list[str]:
        """Remove every hold and let held jobs run on; returns their prompt_ids."""
        released: list[str] = self._admin("POST", "/clock/release")["released"]
        return released

    def clock(self) -> dict[str, Any]:
        """Holds and held jobs."""
        state: dict[str, Any] = self._admin("GET", "/clock")
        return state

    def wait_for_job(self, prompt_id: str, *, timeout: float = 10.0, poll: float = 0.01) -> dict[str, Any]:
        """Poll /history/{prompt_id} until the job is finished; returns its history entry."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self._http.get(f"/history/{quote(prompt_id, safe='')}").json().get(prompt_id)
            if entry is not None:
                return dict(entry)
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")
            time.sleep(poll)

    def wait_for_jobs(self, prompt_ids: Iterable[str], *, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """wait_for_job for several prompts."""
        return {pid: self.wait_for_job(pid, timeout=timeout) for pid in prompt_ids}
