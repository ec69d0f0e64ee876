"""ComfyUI's file routes: GET /view and the uploads (/upload/image, /upload/mask)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from ...comfy.protocol import FEATURES
from ..sim.engine import Reply
from .answers import Handler, Prepared, engine_of, query_of, reply
from .files import mask_writer, render_view_body, resolve_view, store_upload


async def get_view(request: Request) -> Response:
    engine = engine_of(request)
    query = query_of(request)
    result = resolve_view(engine.roots, query, virtual=engine.view_virtual)
    if result.status != 200:
        return Response(status_code=result.status)
    body, headers = render_view_body(result, query, request.app.state.file_bodies)
    headers.pop("Content-Length", None)
    if engine.profile.view_nosniff and "Accept-Ranges" in headers:  # the file itself, not a re-encoding
        headers = {"X-Content-Type-Options": "nosniff", **headers}
    return Prepared(body, 200, headers)


async def post_upload(request: Request) -> Response:
    engine = engine_of(request)
    form = await request.form(max_part_size=FEATURES["max_upload_size"])
    try:
        image = form.get("image")
        is_file = isinstance(image, UploadFile) and bool(image.filename)
        if image is not None and not is_file and await _value(image):
            # aiohttp gives ComfyUI a part without a filename (or with an empty one) as its text or bytes, and
            # image_upload asks that for .file: AttributeError, a 500; an empty value is falsy, a missing file's 400.
            return reply(Reply.crash())
        filename = image.filename if is_file and isinstance(image, UploadFile) else None
        data = await image.read() if is_file and isinstance(image, UploadFile) else None
        result = store_upload(
            engine.roots,
            filename=filename,
            data=data,
            subfolder=str(form.get("subfolder") or ""),
            type=str(form["type"]) if "type" in form else None,
            overwrite=str(form.get("overwrite")) if "overwrite" in form else None,
            write=mask_writer(engine.roots, str(form.get("original_ref") or ""), engine.view_virtual) if request.url.path.endswith("/mask") else None,
            placeholder=engine.recorded_inputs.placeholder,
        )
    finally:
        await form.close()
    if result.status == 500:
        return reply(Reply.crash())  # ComfyUI raised (an unknown type): aiohttp's crash body, like every 500
    if result.status != 200 or result.body is None:
        return Response(status_code=result.status)
    answer: dict[str, Any] = dict(result.body)
    if engine.assets.enabled:  # server.py image_upload registers the stored file (0.18+, assets on)
        root = {"output": engine.roots.output, "temp": engine.roots.temp}.get(answer["type"], engine.roots.input)
        stored = root / answer["subfolder"] / answer["name"]
        tags = [answer["type"] if answer["type"] in ("input", "output") else "input", "uploaded"]
        answer["asset"] = engine.assets.register(stored, name=answer["name"], kind=answer["type"], subfolder=answer["subfolder"],
                                                 tags=tags).upload_view()
    return reply(Reply.json(answer))


async def _value(field: UploadFile | str) -> bytes | str:
    return await field.read() if isinstance(field, UploadFile) else field


# Keyed by the functions' own names: comfy/routes.py names each route's handler.
HANDLERS: dict[str, Handler] = {fn.__name__: fn for fn in (
    get_view, post_upload,
)}
