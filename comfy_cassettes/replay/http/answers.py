"""What ComfyUI's handlers share: the engine behind a request (``request.app.state``), a Reply as a Response,
a body read as ComfyUI reads it, and the recorded answer for a route the simulation does not own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ...comfy.protocol import JSON_CONTENT_TYPE, request_json
from ..sim.engine import ReplayEngine, Reply
from ..sim.reply import JSON_HEADERS
from .static import empty_streamed, http_error

Handler = Callable[[Request], Awaitable[Response]]


def engine_of(connection: HTTPConnection) -> ReplayEngine:
    """The engine a request or socket reaches, kept in the app's state when the app was built."""
    engine: ReplayEngine = connection.scope["app"].state.engine
    return engine


def query_of(connection: HTTPConnection) -> dict[str, str]:
    """The query string as ComfyUI's handlers read it: aiohttp's MultiDict answers a repeated key with its first
    value (Starlette's with its last)."""
    query: dict[str, str] = {}
    text = connection.scope["query_string"].decode("latin-1")
    if "%" in text or "+" in text:
        # Parsed as Starlette's QueryParams parses it, without building the multi-dict a handler would read once.
        for key, value in parse_qsl(text, keep_blank_values=True):
            query.setdefault(key, value)
        return query
    for pair in text.split("&"):  # nothing to unquote: what parse_qsl does with it, without its generality
        if pair:
            key, _, value = pair.partition("=")
            query.setdefault(key, value)
    return query


def reply(r: Reply) -> Response:
    if r.headers is JSON_HEADERS and r.status == 200:  # (most answers: their header lines are known)
        answer = json_text(r.body)
        answer._sent = r.sent
        return answer
    return Prepared(r.body, r.status, r.headers, sent=r.sent)


def json_text(body: bytes, status: int = 200) -> Prepared:
    """A JSON answer whose text is made already (kept history entries): ``reply(Reply.json_text(body))``."""
    if status != 200:
        return Prepared(body, status, JSON_HEADERS)
    answer = Prepared.__new__(Prepared)  # Prepared(body, 200, JSON_HEADERS) without its checks: a poll's answer
    answer.status_code, answer.body, answer.background, answer._sent = 200, body, None, None
    answer.raw_headers = [_JSON_LINE, (b"content-length", b"%d" % len(body))]
    return answer


_JSON_LINE = (b"content-type", JSON_CONTENT_TYPE.encode("latin-1"))
# Header names as sent (lower-cased, latin-1), by the names handlers give: the same few on every answer.
_LINE_NAMES: dict[str, bytes] = {}
_LINE_NAMES_KEPT = 256


class Prepared(Response):
    """A Response for ``body`` and ``headers`` with the header lines Starlette's would send (names lower-cased,
    Content-Length added), made without its general path.
    ``sent``: to call once the answer has gone out, or failed to (POST /prompt: the job it queued may run from
    then on, so no event of it reaches a client that cannot know its prompt_id yet)."""

    def __init__(self, body: bytes, status: int, headers: Mapping[str, str], *, sent: Callable[[], None] | None = None) -> None:
        self.status_code, self.body, self.background, self._sent = status, body, None, sent
        lines = []
        has_length = False
        for name, value in headers.items():
            line_name = _LINE_NAMES.get(name)
            if line_name is None:
                line_name = name.lower().encode("latin-1")
                if len(_LINE_NAMES) < _LINE_NAMES_KEPT:
                    _LINE_NAMES[name] = line_name
            has_length = has_length or line_name == b"content-length"
            lines.append((line_name, value.encode("latin-1")))
        if not has_length and status >= 200 and status not in (204, 304):
            lines.append((b"content-length", b"%d" % len(body)))
        self.raw_headers = lines

    def gone(self) -> None:
        """The answer went out, or failed to: tell ``sent``."""
        if self._sent is not None:
            self._sent()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.gone()


async def read_body(request: Request) -> bytes:
    """``await request.body()`` for a handler that reads its body once: the same bytes and ClientDisconnect, read
    from the request's ASGI receive without Starlette's stream generator (a tenth of POST /prompt's CPU). The
    receive is the middleware's, which keeps the body for the journal and raises BodyTooLarge past MAX_BODY."""
    receive = request.receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


async def json_body(request: Request) -> Any:
    """The body as ComfyUI's handlers read it, aiohttp's ``await request.json()`` (protocol.request_json): any JSON
    value; raises what that raises (ValueError, LookupError for an unknown charset, RecursionError)."""
    return request_json(await request.body(), request.headers.get("content-type"))


def header_values(connection: HTTPConnection, *names: bytes) -> dict[str, str]:
    """The named headers (lower-case, as ASGI gives names) in one pass over the request's: the first of each, as
    ``request.headers.get`` answers, without building Starlette's Headers."""
    found: dict[str, str] = {}
    for name, value in connection.scope["headers"]:
        if name in names:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def recorded_or(request: Request, fallback: Callable[[], Reply]) -> Response:
    engine = engine_of(request)
    rec = engine.interactions.find(request.method, request.url.path, list(request.query_params.multi_items()))
    if rec is not None:
        answer = engine.interactions.answer(rec)
        return Response(answer.body, answer.status, headers=answer.headers)
    return reply(fallback())


def one_segment(request: Request, name: str, after: str) -> str | None:
    """Path parameter ``name`` (a ``{name:path}`` route's, which follows the literal segment ``after``) as
    aiohttp's ``{name}`` takes it: one non-empty segment of the raw path (an encoded ``%2F`` stays inside it);
    None where aiohttp has no route for the path."""
    value = request.path_params[name]
    raw = (request.scope.get("raw_path") or b"").decode("latin-1").split(f"/{after}/", 1)[-1]
    return value if value and "/" not in raw else None


async def recorded(request: Request) -> Response:
    """Any other route: a recorded interaction, or the empty 404 aiohttp gives a route nothing knows (the
    snapshots captures: chunked, ``application/octet-stream``, no body), or its 405 to another method. The closest recordings go to the
    journal's problems, where the pytest fixtures and ``check()`` turn them into a failure; the header
    ``X-Comfy-Cassettes: unmatched`` tells a person reading the traffic that the replay, not ComfyUI, missed."""
    engine = engine_of(request)
    query = list(request.query_params.multi_items())
    rec = engine.interactions.find(request.method, request.url.path, query)
    if rec is not None:
        answer = engine.interactions.answer(rec)
        return Response(answer.body, answer.status, headers=answer.headers)
    closest = engine.interactions.closest(request.method, request.url.path, query)
    missed = f"{request.method} {request.url.path}{'?' + request.url.query if request.url.query else ''}"
    engine.journal.miss({"request": missed, "closest": closest})
    if request.method not in ("GET", "HEAD"):  # ComfyUI's static route "/" takes every path, for GET and HEAD only
        return http_error(405, "Method Not Allowed", {"Allow": "GET,HEAD", "X-Comfy-Cassettes": "unmatched"})
    return empty_streamed(404, {"X-Comfy-Cassettes": "unmatched"})
