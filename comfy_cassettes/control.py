"""ReplayControl: a Python client for a replay server's admin API (reset, journal, faults, manual clock)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .contract import bodies as m
from .contract.routes import ROUTES_BY_NAME, documents
from .diagnosis import errors_report
from .direct_transport import DirectTransport
from .errors import AdminRequestError, ClockError, FaultSpecError
from .replay.options import ADMIN_TOKEN_ENV


def problems_report(problems: Mapping[str, Any], *, allow_unmatched: bool = False,
                    refused: Iterable[Mapping[str, Any]] = (), recorded: Sequence[tuple[str, Any]] = ()) -> str:
    """A readable account of a server's engine errors and unmatched requests ("" when there is nothing to say); with
    it, the ``refused`` prompts (journal entries), each with ComfyUI's reason and, given the ``recorded`` prompts
    (name, workflow), the closest of them."""
    lines: list[str] = []
    for error in problems.get("errors") or []:
        lines.append(f"engine error: {error}")
    for miss in [] if allow_unmatched else problems.get("unmatched") or []:
        lines.append(f"unmatched request: {miss.get('request')} (no recording answers it)")
        for near in miss.get("closest") or []:
            lines.append(f"    closest: {near.get('request')}: {'; '.join(near.get('differences') or []) or 'same'}")
    dropped = problems.get("dropped") or 0
    if dropped:
        lines.append(f"... and {dropped} more problem(s), not kept")
    if not lines:
        return ""
    refusals = errors_report(refused, recorded, heading="and it refused {} prompt(s):")
    if refusals:
        lines.append(refusals)
    hint = "" if allow_unmatched else "\n(expected unmatched requests? mark the test comfy_cassette(allow_unmatched=True))"
    return "the replay server reported problems during this test:\n" + "\n".join(lines) + hint


class ReplayControl:
    """Talks to the admin routes of a running replay server (``contract/routes.py`` lists them; each method says
    which it calls, and its keyword arguments are that route's body keys, checked against the same models).

    Usage::

        control = ReplayControl("http://127.0.0.1:8189")
        control.reset()
        assert control.journal(method="POST", path="/prompt")

    ``token``: the server's admin token (needed when it is bound to an address other than loopback); default
    ``$COMFY_CASSETTES_ADMIN_TOKEN``. ``transport``: an httpx transport to reach it by (an app served in-process); by
    default a plain-HTTP server is reached by :class:`~comfy_cassettes.direct_transport.DirectTransport`, which a test's
    HTTP mocks (pytest-httpx, respx, vcrpy) neither intercept nor record. A request the server refuses (400) raises
    :class:`~comfy_cassettes.errors.AdminRequestError` with its message (the bad key and the accepted ones).
    """

    def __init__(self, url: str, *, timeout: float = 10.0, token: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        token = token if token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._transport = transport  # e.g. httpx.ASGITransport for an app run in-process
        # Requests handed to the transport itself, not through the client: vcrpy 7 patches httpx.Client's sending.
        self._direct = DirectTransport() if transport is None and self.url.startswith("http://") else None
        self._http = self._client()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=self._timeout, headers=self._headers, transport=self._transport)

    def close(self) -> None:
        """Close this client's connections (the server runs on)."""
        self._http.close()

    def __enter__(self) -> ReplayControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, route_name: str, *, ok: tuple[int, ...] = (200, 201), path_params: Mapping[str, str] | None = None,
              **kwargs: Any) -> httpx.Response:
        """One request to the contract's admin route ``route_name``; a 400 becomes AdminRequestError carrying the
        server's explanation."""
        route = ROUTES_BY_NAME[route_name]
        path = route.full_path.format(**{k: quote(v, safe="") for k, v in (path_params or {}).items()})
        response = self._request(route.method, path, **kwargs)
        if response.status_code == 400:
            refusal = response.json()
            raise AdminRequestError(refusal.get("error", response.text), problems=refusal.get("problems"), accepted=refusal.get("accepted"))
        if response.status_code not in ok:
            response.raise_for_status()
        return response

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        request = self._http.build_request(method, path, **kwargs)
        return self._http.send(request) if self._direct is None else self._direct.handle_request(request)

    def _admin(self, route_name: str, **kwargs: Any) -> Any:
        return self._call(route_name, **kwargs).json()

    @documents("reset")
    def reset(self) -> None:
        """Forget queue, history, caches, handed-out names, the journal, faults and holds."""
        self._admin("reset")

    @documents("state")
    def state(self) -> dict[str, Any]:
        """Mode, timing, seed, cassettes, folders, queue and history sizes, faults and held jobs (keys below)."""
        result: dict[str, Any] = self._admin("state")
        return result

    @documents("journal")
    def journal(self, *, method: str | None = None, path: str | None = None, status: int | None = None,
                body_contains: str | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """The requests the server received, oldest first, optionally filtered: journal entries (keys below)."""
        query = {"method": method, "path": path, "status": status, "body_contains": body_contains, "since": since}
        entries: list[dict[str, Any]] = self._admin("journal", params={k: v for k, v in query.items() if v is not None})["entries"]
        return entries

    @documents("clear_journal")
    def clear_journal(self) -> None:
        """Forget the requests received."""
        self._admin("clear_journal")

    @documents("problems")
    def problems(self) -> dict[str, Any]:
        """Engine errors and unmatched requests since the last reset: ``{"errors": [...], "unmatched": [...]}``."""
        result: dict[str, Any] = self._admin("problems")
        return result

    def check(self, *, allow_unmatched: bool = False) -> None:
        """Raise AssertionError when the server logged an engine error, or (unless ``allow_unmatched``) answered a
        request that nothing recorded matches; the message lists each, with the closest recorded requests, and the
        prompts the server refused with ComfyUI's reasons.

        Call it at the end of a test, as pytest-httpserver's ``check_assertions()``: the pytest fixtures do.
        """
        problems = self.problems()
        if problems_report(problems, allow_unmatched=allow_unmatched):  # told with the refused prompts, which a
            refused = self.journal(path="/prompt", status=400)  # client raising a bare 400 hides
            raise AssertionError(problems_report(problems, allow_unmatched=allow_unmatched, refused=refused))

    @documents("openapi")
    def openapi(self) -> dict[str, Any]:
        """The server's OpenAPI 3.1 document (admin API and ComfyUI routes)."""
        document: dict[str, Any] = self._admin("openapi")
        return document

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

    @documents("journal_find")
    def find(self, *, method: str | None = None, path: str | None = None, status: int | None = None,
             body_contains: str | None = None, body_json: dict[str, Any] | None = None,
             query: dict[str, str | int | float | bool] | None = None, since: int | None = None) -> list[dict[str, Any]]:
        """The journal entries (keys below) matching a pattern, oldest first."""
        pattern = _given(method=method, path=path, status=status, body_contains=body_contains, body_json=body_json, query=query, since=since)
        entries: list[dict[str, Any]] = self._admin("journal_find", json=pattern)["entries"]
        return entries

    @documents("journal_count")
    def count(self, *, method: str | None = None, path: str | None = None, status: int | None = None,
              body_contains: str | None = None, body_json: dict[str, Any] | None = None,
              query: dict[str, str | int | float | bool] | None = None, since: int | None = None) -> int:
        """How many received requests match the pattern (the keys of :meth:`find`)."""
        pattern = _given(method=method, path=path, status=status, body_contains=body_contains, body_json=body_json, query=query, since=since)
        return int(self._admin("journal_count", json=pattern)["count"])

    @documents("journal_assert")
    def assert_requested(
        self, method: str | None = None, path: str | None = None, *, status: int | None = None,
        body_contains: str | None = None, body_json: dict[str, Any] | None = None,
        query: dict[str, str | int | float | bool] | None = None, since: int | None = None,
        count: int | None = None, min: int | None = None, max: int | None = None,
    ) -> int:
        """Assert how often a request was received (default: at least once); returns the count.

        Usage::

            control.assert_requested("POST", "/prompt", count=3)
            control.assert_requested("GET", "/history/*", min=1, status=200)
        """
        body = _given(method=method, path=path, status=status, body_contains=body_contains, body_json=body_json, query=query,
                      since=since, count=count, min=min, max=max)
        response = self._call("journal_assert", json=body, ok=(200, 409))
        if response.status_code == 409:
            result = response.json()
            received = "\n  ".join(result.get("received", [])) or "(nothing)"
            raise AssertionError(f"{result['message']}; the server received:\n  {received}")
        return int(response.json()["count"])

    def assert_not_requested(
        self, method: str | None = None, path: str | None = None, *, status: int | None = None,
        body_contains: str | None = None, body_json: dict[str, Any] | None = None,
        query: dict[str, str | int | float | bool] | None = None, since: int | None = None,
    ) -> None:
        """Assert that no received request matches (``assert_requested(..., count=0)``)."""
        self.assert_requested(method, path, status=status, body_contains=body_contains, body_json=body_json, query=query,
                              since=since, count=0)

    # ------------------------------------------------------------ faults

    @documents("add_faults")
    def add_fault(self, *rules: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Add fault rules as given to ``POST /__cassettes__/faults``; returns them with their ids.

        A rule is ``{"kind": ..., ...}`` with the keys of its kind: the methods below (``fail``, ``delay``, ``drop``,
        ``fail_jobs``, ``interrupt_jobs``, ``disconnect_ws``, ``down``) take exactly those keys. Raises
        FaultSpecError (a ValueError) naming the bad key and the keys the kind accepts.
        """
        try:
            added: list[dict[str, Any]] = self._admin("add_faults", json=list(rules))["added"]
        except AdminRequestError as exc:
            raise FaultSpecError(str(exc)) from None
        return added

    @documents("add_faults", m.StatusRule)
    def fail(self, route: str, status: int = 503, *, method: str | None = None, count: int | None = 1,
             body: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Answer the next ``count`` requests to ``route`` with an HTTP error (``count=None``: every one)."""
        return self.add_fault(_rule("status", route=route, status=status, method=method, count=count, body=body, headers=headers))[0]

    @documents("add_faults", m.DelayRule)
    def delay(self, route: str, seconds: float, *, method: str | None = None, count: int | None = None,
              max_seconds: float | None = None) -> dict[str, Any]:
        """Delay answers on ``route`` by ``seconds`` (random up to ``max_seconds``); every time by default."""
        return self.add_fault(_rule("delay", route=route, seconds=seconds, method=method, count=count, max_seconds=max_seconds))[0]

    @documents("add_faults", m.DropRule)
    def drop(self, route: str, *, method: str | None = None, count: int | None = 1) -> dict[str, Any]:
        """Close the connection without an answer for the next ``count`` requests to ``route``."""
        return self.add_fault(_rule("drop", route=route, method=method, count=count))[0]

    @documents("add_faults", m.ExecutionErrorRule)
    def fail_jobs(self, count: int | None = 1, *, node: str | None = None, exception_type: str | None = None,
                  exception_message: str | None = None, traceback: list[str] | None = None) -> dict[str, Any]:
        """The next ``count`` accepted prompts end in ``execution_error`` at ``node`` (default: their last node)."""
        return self.add_fault(_rule("execution_error", count=count, node=node, exception_type=exception_type,
                                    exception_message=exception_message, traceback=traceback))[0]

    @documents("add_faults", m.ExecutionInterruptedRule)
    def interrupt_jobs(self, count: int | None = 1, *, node: str | None = None) -> dict[str, Any]:
        """The next ``count`` accepted prompts end in ``execution_interrupted`` at ``node`` (default: last)."""
        return self.add_fault(_rule("execution_interrupted", count=count, node=node))[0]

    @documents("add_faults", m.WsDisconnectRule)
    def disconnect_ws(self, count: int | None = 1, *, node: str | None = None, code: int | None = None) -> dict[str, Any]:
        """Cut the submitting client's WebSocket when each of the next ``count`` jobs reaches ``node`` (default:
        its first node). No ``code``: the TCP connection is cut (clients see 1006); else a close frame."""
        return self.add_fault(_rule("ws_disconnect", count=count, node=node, code=code))[0]

    @documents("add_faults", m.DownRule)
    def down(self, seconds: float, *, restart: bool = False) -> None:
        """Refuse connections for ``seconds`` (open connections and sockets are cut), then serve again;
        with ``restart`` the server comes back with an empty queue and history, like a restarted ComfyUI."""
        self.add_fault({"kind": "down", "seconds": seconds, "restart": restart})
        self._http.close()  # the pooled connection is cut
        self._http = self._client()

    @documents("get_faults")
    def faults(self) -> list[dict[str, Any]]:
        """The active rules, each with its ``id``, ``remaining`` and ``hits`` (keys below)."""
        rules: list[dict[str, Any]] = self._admin("get_faults")["faults"]
        return rules

    @documents("remove_fault")
    def remove_fault(self, fault_id: str) -> bool:
        """Remove one rule by its id (``f1``...); False when no such rule is active."""
        response = self._call("remove_fault", ok=(200, 404), path_params={"fault_id": fault_id})
        return response.status_code == 200

    @documents("clear_faults")
    def clear_faults(self) -> None:
        """Remove every rule."""
        self._admin("clear_faults")

    # ------------------------------------------------------------ manual clock

    @documents("clock_hold")
    def hold(self, at: str | None = None, *, node: str | None = None, step: int | Literal["*"] | None = None,
             prompt_id: str | None = None) -> dict[str, Any]:
        """Hold jobs at ``queued``, ``node:<id>`` (or ``node=``), ``node:*``, a sampler's step (``at="step"`` with
        ``node=`` and ``step=``, or ``step:<id>:<k>``) or ``finished`` until advanced; returns the clock's state.

        A job held at ``node:K`` has been told (``executing`` K) but K has not run; one held at ``step:K:2`` has sent
        K's progress 2 and its preview (ComfyUI sends them back to back). See docs/control.md, "the clock at node boundaries", for what an interrupt then does."""
        state: dict[str, Any] = self._admin("clock_hold", json=_given(at=at, node=node, step=step, prompt_id=prompt_id))
        return state

    @documents("clock_wait")
    def wait_held(self, prompt_id: str | None = None, *, at: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until a job (``prompt_id`` if given) is held (at ``at`` if given); returns ``{prompt_id, at, held_for}``;
        TimeoutError when none is within ``timeout``."""
        response = self._call("clock_wait", json=_given(prompt_id=prompt_id, at=at, timeout=timeout),
                              timeout=timeout + 5, ok=(200, 408))
        if response.status_code == 408:
            raise TimeoutError(f"no job {prompt_id or ''} was held{' at ' + at if at else ''} within {timeout}s: {response.json()}")
        held: dict[str, Any] = response.json()
        return held

    @documents("clock_advance")
    def advance(self, prompt_id: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
        """Let the held job go on to its next hold or its end; returns ``{prompt_id, from, to}``; ClockError when
        no job is held."""
        response = self._call("clock_advance", json=_given(prompt_id=prompt_id, timeout=timeout),
                              timeout=2 * timeout + 5, ok=(200, 409))
        if response.status_code == 409:
            raise ClockError(response.json()["error"])
        result: dict[str, Any] = response.json()
        return result

    @documents("clock_release")
    def release(self) -> list[str]:
        """Remove every hold and let held jobs run on; returns their prompt_ids."""
        released: list[str] = self._admin("clock_release")["released"]
        return released

    @documents("clock")
    def clock(self) -> dict[str, Any]:
        """Holds and held jobs: ``{holds, held}`` (keys below)."""
        state: dict[str, Any] = self._admin("clock")
        return state

    def wait_for_job(self, prompt_id: str, *, timeout: float = 10.0, poll: float = 0.01) -> dict[str, Any]:
        """Poll /history/{prompt_id} until the job is finished; returns its history entry."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self._request("GET", f"/history/{quote(prompt_id, safe='')}").json().get(prompt_id)
            if entry is not None:
                return dict(entry)
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout}s")
            time.sleep(poll)

    def wait_for_jobs(self, prompt_ids: Iterable[str], *, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """wait_for_job for several prompts."""
        return {pid: self.wait_for_job(pid, timeout=timeout) for pid in prompt_ids}


def _given(**keys: Any) -> dict[str, Any]:
    """A body of the keys given a value (None leaves the server's default)."""
    return {k: v for k, v in keys.items() if v is not None}


def _rule(kind: str, *, count: int | None = 1, **keys: Any) -> dict[str, Any]:
    """A fault rule's body: its kind, ``count`` even when None (every time), and the other keys given a value."""
    return {"kind": kind, "count": count, **_given(**keys)}
