"""The replay's file routes: /view lookups and re-encodings, /upload/image and /upload/mask storage, rule for rule."""

from __future__ import annotations

import functools
import json
import mimetypes
import os
import threading
from collections.abc import Callable, Mapping
from io import BytesIO
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from PIL import Image


from ...comfy.folders import FileRoots, absolute_path, dir_for_type, split_annotation, write_whole
from ..sim.recorded_inputs import composite_mask
from .file_bodies import FileBodies, read_once

__all__ = [
    "UploadResult",
    "ViewResult",
    "render_view_body",
    "resolve_view",
    "mask_writer",
    "store_upload",
]

# /view serves these as a download instead of letting the browser render them (server.py view_image).
_FORCED_DOWNLOAD = frozenset(
    {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}
)

# Extensions whose type mimetypes works out from the one before them (x.tar.gz, x.tgz), and a blank one.
_NAME_DEPENDENT = frozenset({"", *mimetypes.encodings_map, *mimetypes.suffix_map})

# ComfyUI runs image_upload on its event loop, so uploads never interleave; a lock gives us the same.
_UPLOAD_LOCK = threading.Lock()


class ViewResult(NamedTuple):
    """What GET /view resolved to: a status and, for 200, the file to serve and the name to show. (A tuple: one is
    made per request, and a frozen dataclass's constructor cost as much as the lookup.)"""

    status: int
    path: Path | None
    content_type: str | None
    filename: str | None
    stat: os.stat_result | None = None  # the file's, when the lookup took one: the body is read against it


class UploadResult(NamedTuple):
    """POST /upload/image's answer: 200 with `{"name", "subfolder", "type"}`, else an empty-bodied status."""

    status: int
    body: dict[str, str] | None


def resolve_view(
    roots: FileRoots,
    query: Mapping[str, str],
    *,
    virtual: Callable[[str, str, str], Path | None] | None = None,
) -> ViewResult:
    """Resolve a GET /view query to a file, with ComfyUI's status codes (server.py view_image).

    `virtual(type, subfolder, filename)` is asked before the disk, with the subfolder normalised
    (`""` for the base directory, no trailing slash); returning a path serves that file under
    the requested name.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> roots = FileRoots(*(Path(folder.name, name) for name in ("output", "input", "temp")))
    >>> roots.output.mkdir()
    >>> _ = (roots.output / "ComfyUI_00001_.png").write_bytes(b"...")
    >>> resolve_view(roots, {"filename": "ComfyUI_00001_.png", "type": "output"}).status
    200
    >>> resolve_view(roots, {"filename": "ComfyUI_00002_.png", "type": "output"}).status
    404
    >>> resolve_view(roots, {"filename": "../secret.png"}).status
    400
    >>> folder.cleanup()
    """
    if "filename" not in query:
        return _status_only(404)
    filename = query["filename"]
    type_name = None
    if filename[-1:] == "]":  # every annotation ends so: most names are spared the search
        filename, type_name = split_annotation(filename)
    if not filename:
        return _status_only(400)
    if filename[0] == "/" or ".." in filename:
        return _status_only(400)
    if type_name is None:
        type_name = query.get("type", "output")
    root = dir_for_type(roots, type_name)
    if root is None:
        return _status_only(400)
    found = _folder(absolute_path(root), query.get("subfolder"))
    if found is None:
        return _status_only(403)
    folder, subfolder = found
    # A "/" inside filename does not pick a subfolder: only its last part is looked up
    # (subfolder_prefix capture: filename=gen/job_7_00001_.png -> 404).
    name = os.path.basename(filename)
    content_type = _content_type(name)
    if virtual is not None:
        source = virtual(type_name, subfolder, name)
        if source is not None:
            return ViewResult(200, source, content_type, name)
    path = os.path.join(folder, name)
    try:  # os.path.isfile, keeping the stat for the body's validators
        stat = os.stat(path)
    except (OSError, ValueError):
        return _status_only(404)
    return ViewResult(200, Path(path), content_type, name, stat) if S_ISREG(stat.st_mode) else _status_only(404)


@functools.lru_cache(maxsize=256)
def _folder(base_dir: str, subfolder: str | None) -> tuple[str, str] | None:
    """The folder a /view ``subfolder`` names under the absolute ``base_dir``, and its path relative to it ("" for
    ``base_dir`` itself); None when it leaves ``base_dir`` (ComfyUI's 403). Cached: the same few are asked for by
    every request, and the path arithmetic cost more than the rest of the lookup."""
    folder = base_dir
    if subfolder is not None:
        folder = os.path.join(base_dir, subfolder)
        if os.path.commonpath((os.path.abspath(folder), base_dir)) != base_dir:
            return None
    relative = os.path.relpath(os.path.abspath(folder), base_dir)
    return folder, "" if relative == "." else relative


def render_view_body(
    result: ViewResult, query: Mapping[str, str], files: FileBodies | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers ComfyUI sends for a 200 ViewResult, honouring `preview=` and `channel=`.

    Re-encoded answers carry Content-Disposition, Content-Type and Content-Length only. A plain file also gets the
    Etag, Last-Modified and Accept-Ranges of aiohttp's FileResponse (from the file's stat); Accept-Ranges tells the
    caller the body is the file itself. Answering If-None-Match / Range requests is left to the caller.
    A file Pillow cannot read raises PIL.UnidentifiedImageError, where ComfyUI answers 500.
    ``files``: where a plain file's bytes may be kept for the next request (None: read now, not kept).
    """
    if result.status != 200 or result.path is None or result.filename is None:
        raise ValueError(f"only a 200 ViewResult has a body, got status {result.status}")
    # aiohttp writes header values as UTF-8 (ComfyUI sends filename="猫.png" as its UTF-8 bytes); Starlette
    # writes them as latin-1, so the UTF-8 bytes go in spelled as latin-1 characters.
    disposition = f'filename="{result.filename}"'.encode("utf-8", "replace").decode("latin-1")
    channel = query.get("channel")
    if "preview" in query or channel in ("rgb", "a"):
        from PIL import Image  # imported on first use: at boot it cost a tenth of serve's start-up
    if "preview" in query:
        preview = query["preview"].split(";")
        image_format = preview[0]
        if image_format not in ("webp", "jpeg") or "a" in (channel or ""):
            image_format = "webp"
        quality = int(preview[-1]) if preview[-1].isdigit() else 90
        with Image.open(result.path) as opened:
            image: Image.Image = opened
            if image_format == "jpeg" or channel == "rgb":
                image = image.convert("RGB")
            body = _encode(image, image_format, quality=quality)
        # The preview keeps the original name in Content-Disposition (preview_image capture).
        return body, _headers(disposition, f"image/{image_format}", body)
    if channel == "rgb":
        with Image.open(result.path) as image:
            if image.mode == "RGBA":
                red, green, blue, _ = image.split()
                rgb = Image.merge("RGB", (red, green, blue))
            else:
                rgb = image.convert("RGB")
            body = _encode(rgb, "PNG")
        return body, _headers(disposition, "image/png", body)
    if channel == "a":
        with Image.open(result.path) as image:
            alpha = image.split()[3] if image.mode == "RGBA" else Image.new("L", image.size, 255)
            alpha_image = Image.new("RGBA", image.size)
            alpha_image.putalpha(alpha)
            body = _encode(alpha_image, "PNG")
        return body, _headers(disposition, "image/png", body)
    # Any other channel value (including "rgba") serves the file untouched.
    body, tag, modified = files.read(result.path, result.stat) if files is not None else read_once(result.path)
    return body, {
        "Content-Disposition": disposition,
        "Content-Type": result.content_type or "application/octet-stream",
        "Etag": tag,
        "Last-Modified": modified,
        "Content-Length": str(len(body)),
        "Accept-Ranges": "bytes",
    }


def store_upload(
    roots: FileRoots,
    *,
    filename: str | None,
    data: bytes | None,
    subfolder: str = "",
    type: str | None = "input",
    overwrite: bool | str | None = False,
    write: Callable[[str, bytes], None] | None = None,
    placeholder: Callable[[str], bool] | None = None,
) -> UploadResult:
    """Store an uploaded image like ComfyUI's image_upload (server.py) and say what it answers.

    ``write(path, data)`` replaces the plain file write, like image_upload's ``image_save_function`` (see
    :func:`mask_writer`); ``placeholder(path)`` says an existing file counts as absent (RecordedInputs.placeholder).

    Identical bytes under an existing name are not written again and keep the name; different bytes get
    `"name (1).png"`, `"name (2).png"`, ...; `overwrite` (True, or the form values "true"/"1" exactly) replaces the
    file. A path leaving the type's folder or a missing image: 400; an unknown `type`: 500 (ComfyUI crashes).

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> roots = FileRoots(*(Path(folder.name, name) for name in ("output", "input", "temp")))
    >>> store_upload(roots, filename="a.png", data=b"...").body
    {'name': 'a.png', 'subfolder': '', 'type': 'input'}
    >>> store_upload(roots, filename="a.png", data=b"other bytes").body
    {'name': 'a (1).png', 'subfolder': '', 'type': 'input'}
    >>> store_upload(roots, filename="a.png", data=b"...", type="bogus").status
    500
    >>> folder.cleanup()
    """
    type_name = "input" if type is None else type
    root = dir_for_type(roots, type_name)
    if root is None:
        # get_dir_by_type leaves type_dir unbound for other values: UnboundLocalError -> 500,
        # and it runs before the image field is even looked at.
        return UploadResult(500, None)
    if data is None or not filename:
        return UploadResult(400, None)
    upload_dir = os.path.abspath(root)
    folder = os.path.join(upload_dir, os.path.normpath(subfolder))
    path = os.path.abspath(os.path.join(folder, filename))
    if os.path.commonpath((upload_dir, path)) != upload_dir:
        return UploadResult(400, None)
    replace = overwrite in ("true", "1") if isinstance(overwrite, str) else bool(overwrite)
    with _UPLOAD_LOCK:
        try:
            # ComfyUI creates the subfolder wherever it points (subfolder=/tmp/x, ../.. names): only inside here.
            if os.path.commonpath((upload_dir, os.path.abspath(folder))) == upload_dir:
                os.makedirs(folder, exist_ok=True)
            filename, path, duplicate = (filename, path, False) if replace else _free_name(folder, filename, path, data, placeholder)
            if not duplicate:
                if write is not None:
                    write(path, data)
                else:
                    write_whole(Path(path), data)
        except (OSError, ValueError):
            # ComfyUI lets these escape (a directory in the way, a missing parent, a NUL byte): 500.
            return UploadResult(500, None)
    return UploadResult(200, {"name": filename, "subfolder": subfolder, "type": type_name})


def _free_name(folder: str, filename: str, path: str, data: bytes,
               placeholder: Callable[[str], bool] | None = None) -> tuple[str, str, bool]:
    """The name an upload keeps: its own when free or holding the same bytes (then True: nothing to write), else
    ``"name (1).png"``, ``"name (2).png"``, ... as image_upload numbers them."""
    stem, extension = os.path.splitext(filename)
    attempt = 1
    while os.path.exists(path) and not (placeholder is not None and placeholder(path)):
        if Path(path).read_bytes() == data:
            return filename, path, True
        filename = f"{stem} ({attempt}){extension}"
        path = os.path.join(folder, filename)
        attempt += 1
    return filename, path, False


def mask_writer(
    roots: FileRoots, original_ref: str | None, virtual: Callable[[str, str, str], Path | None] | None = None,
) -> Callable[[str, bytes], None]:
    """/upload/mask's save function: the original image named by ``original_ref`` with the mask's alpha.

    Like ComfyUI's upload_mask, a bad or hostile reference writes nothing and the upload still answers 200. The
    original may be a static-mode output, which exists only as ``virtual(type, subfolder, filename)`` (as /view finds
    it): a mask drawn on a saved image (more_sessions_0.8/masks).
    """

    def write(path: str, data: bytes) -> None:
        try:
            ref = json.loads(original_ref or "")
        except (ValueError, RecursionError):
            return
        if not isinstance(ref, dict):
            return
        name, annotated = split_annotation(str(ref.get("filename", "")))
        if not name or name.startswith("/") or ".." in name:
            return
        kind = annotated or str(ref.get("type", "output"))
        base = dir_for_type(roots, kind)
        if base is None:
            return
        found = _folder(os.path.abspath(base), str(ref.get("subfolder") or "") or None)
        if found is None:
            return
        folder, subfolder = found
        original = Path(folder, name)
        source = virtual(kind, subfolder, name) if not original.is_file() and virtual is not None else original
        if source is None or not source.is_file():
            return
        write_whole(Path(path), composite_mask(source, data))

    return write


def _content_type(filename: str) -> str:
    extension = os.path.splitext(filename)[1]
    if ":" in filename or extension.lower() in _NAME_DEPENDENT:
        return _content_type_of(filename)
    return _content_type_of("x" + extension)  # the type depends on the extension only: one cache entry per extension


@functools.lru_cache(maxsize=512)
def _content_type_of(filename: str) -> str:
    guessed = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return "application/octet-stream" if guessed in _FORCED_DOWNLOAD else guessed


def _encode(image: Image.Image, image_format: str, **options: int) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _headers(disposition: str, content_type: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Disposition": disposition,
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
    }


def _status_only(status: int) -> ViewResult:
    return _STATUS_ONLY.get(status) or ViewResult(status, None, None, None)


_STATUS_ONLY = {status: ViewResult(status, None, None, None) for status in (400, 403, 404)}
