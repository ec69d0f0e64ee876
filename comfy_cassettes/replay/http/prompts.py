"""ComfyUI's queue routes: POST /prompt, the queue, history, interrupt, /free and the jobs API (server.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...comfy.refusals import log_line
from ..sim.engine import Reply
from . import jobs_api as jobs
from .answers import Handler, engine_of, header_values, json_body, json_text, one_segment, query_of, read_body, recorded, reply

# What POST /prompt reads of the request's headers (the usage source only in the versions that read it).
_PROMPT_HEADERS = (b"content-type", b"comfy-usage-source")
log = logging.getLogger("comfy_cassettes.replay")  # serve's console (server.log_to_console); pytest's report


async def post_prompt(request: Request) -> Response:
    engine = engine_of(request)
    body, headers = await read_body(request), header_values(request, *_PROMPT_HEADERS)
    answer = await engine.submit_held(body, headers) if engine.recorded_posts.holds else engine.submit(body, headers)
    if answer.status == 400:
        log_refusal(answer.body)
    return reply(answer)


def log_refusal(body: bytes) -> None:
    """Log a refused prompt on one line, as ComfyUI's console tells of it (comfy/refusals.py), for a user whose
    client hides the 400's body."""
    try:
        line = log_line(json.loads(body))
    except ValueError:
        return
    if line is not None:
        log.warning("%s", line)


async def get_prompt(request: Request) -> Response:
    engine = engine_of(request)
    return reply(Reply.json({"exec_info": {"queue_remaining": engine.queue_remaining()}}))


async def get_queue(request: Request) -> Response:
    engine = engine_of(request)
    return reply(Reply.json(engine.queue_view()))


async def post_queue(request: Request) -> Response:
    return await _acting(request, lambda body: engine_of(request).delete_from_queue(body))


async def get_history(request: Request) -> Response:
    engine = engine_of(request)
    # ComfyUI int()s both without a check: a bad value is its 500.
    q = query_of(request)
    try:
        max_items = int(q["max_items"]) if "max_items" in q else None
        offset = int(q["offset"]) if "offset" in q else -1
    except ValueError:
        return reply(Reply.crash())
    return json_text(engine.history.view_json(max_items, offset))


async def get_history_item(request: Request) -> Response:
    engine = engine_of(request)
    prompt_id = one_segment(request, "prompt_id", "history")
    if prompt_id is None:
        return await recorded(request)
    return json_text(engine.history.item_json(prompt_id))


async def post_history(request: Request) -> Response:
    return await _acting(request, lambda body: engine_of(request).delete_history(body))


async def post_interrupt(request: Request) -> Response:
    return await _acting(request, lambda body: engine_of(request).interrupt(body), not_json={})


async def post_free(request: Request) -> Response:
    return await _acting(request, lambda body: engine_of(request).free(body))


# What ComfyUI's handlers raise on a body they cannot read: request.json()'s decoding and parsing, then the
# handler's own unchecked ``in``, indexing, iteration and ``.get``. aiohttp answers each with its plain 500.
_UNREADABLE = (ValueError, LookupError, TypeError, AttributeError, RecursionError)


async def _acting(request: Request, act: Callable[[Any], None], *, not_json: Any = None) -> Response:
    """Run ``act`` on the body as server.py's handler reads it (``request.json()``, empty 200); ``not_json``:
    what a handler that catches JSONDecodeError uses instead (post_interrupt: ``{}``), else that is its 500."""
    try:
        try:
            body = await json_body(request)
        except json.JSONDecodeError:
            if not_json is None:
                raise
            body = not_json
        act(body)
    except _UNREADABLE:
        return reply(Reply.crash())
    return Response(status_code=200)


async def get_jobs(request: Request) -> Response:
    engine = engine_of(request)
    try:
        return reply(Reply.json(jobs.list_jobs(engine, query_of(request))))
    except jobs.JobsError as error:
        return reply(Reply.json(error.body, 400))


async def get_job(request: Request) -> Response:
    engine = engine_of(request)
    job = jobs.get_job(engine, request.path_params["job_id"])
    return reply(Reply.json(job) if job is not None else Reply.json({"error": "Job not found"}, 404))


async def post_job_cancel(request: Request) -> Response:
    engine = engine_of(request)
    return reply(Reply.json({"cancelled": jobs.cancel(engine, request.path_params["job_id"])}))


async def post_jobs_cancel(request: Request) -> Response:
    engine = engine_of(request)
    try:
        body = await json_body(request)
    except (ValueError, LookupError, RecursionError):
        return reply(Reply.json({"error": "Request body must be valid JSON"}, 400))
    try:
        return reply(Reply.json({"cancelled": jobs.cancel_batch(engine, body)}))
    except jobs.JobsError as error:
        return reply(Reply.json(error.body, 400))


# Keyed by the functions' own names: comfy/routes.py names each route's handler.
HANDLERS: dict[str, Handler] = {fn.__name__: fn for fn in (
    post_prompt, get_prompt, get_queue, post_queue, get_history, get_history_item, post_history, post_interrupt,
    post_free, get_jobs, get_job, post_job_cancel, post_jobs_cancel,
)}
