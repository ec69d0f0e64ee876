"""The input files a replay starts with: what the recording server's input folder held for its cassettes.

A session that uploaded an image and then ran LoadImage on it was recorded on a server that had the file; its
replay must have it too, or the recorded workflow fails validation ("Invalid image file") where it passed. The
files come, in the order they were recorded, from each cassette's ``/upload/image`` and ``/upload/mask`` answers
(the uploaded bytes under the name ComfyUI gave them), from ``/view?type=input`` answers, and, for an image a
recorded job loaded that no recording shows the bytes of, a stand-in PNG of the size the job's outputs say it had.
Names no recording had stay absent, so ComfyUI's own refusal of them is unchanged.

A name a recorded upload created was not there when the session began: until something changes the file written
for it, an upload to that name finds it absent (:meth:`RecordedInputs.placeholder`), so it keeps the name it got
on the recording server whatever its bytes, and a mask is composited and written as ComfyUI writes it.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from python_multipart import parse_form
from python_multipart.multipart import Field, File

from ...cassette.model import Cassette, Interaction, Job
from ...comfy.behaviours import DEFAULT_SIZE, output_size
from ...comfy.folders import split_annotation
from ...comfy.graph import is_link
from ...comfy.nodes import FILE_CHECKED_INPUTS, OUTPUT_CLASSES
from ...comfy.routes import normalize
from ..harness.kept_files import KeptFiles

__all__ = ["RecordedInputs", "composite_mask"]

_UPLOADS = frozenset({"/upload/image", "/upload/mask"})
# A stand-in's size probe: an input size no graph produces by itself, so an output of exactly this size passed the
# loaded image through unchanged and shows the recorded image's size.
_PROBE = (7919, 7933)


def composite_mask(original: bytes | Path, mask: bytes) -> bytes:
    """/upload/mask's stored file: the original image with the mask's alpha, as a PNG (server.py upload_mask)."""
    source_file = io.BytesIO(original) if isinstance(original, bytes) else original
    from PIL import Image  # imported on first use: at boot it cost a tenth of serve's start-up

    with Image.open(source_file) as source, Image.open(io.BytesIO(mask)) as alpha:
        result = source.convert("RGBA")
        result.putalpha(alpha.convert("RGBA").getchannel("A"))
        buffer = io.BytesIO()
        result.save(buffer, format="PNG", compress_level=4)
        return buffer.getvalue()


class RecordedInputs:
    """The input folder's files as the recording left them: relative path -> bytes."""

    def __init__(self, cassettes: Iterable[Cassette], jobs: Iterable[Job], folder: Path) -> None:
        self.folder = folder
        # Each name's first recorded bytes: the session's uploads, replayed, then find what they found on the
        # recording server (an identical file keeps its name, so re-uploading it changes nothing), where its last
        # bytes would send the first upload of a later-overwritten name to "name (N).png" (more_sessions_0.8/
        # upload_collisions). The last bytes are kept apart: what a recorded /upload/mask found as its original.
        self.files: dict[str, bytes] = {}
        self._latest: dict[str, bytes] = {}
        self._uploaded: set[str] = set()  # names whose first recorded bytes a recorded upload wrote
        for cassette in cassettes:
            for interaction in cassette.interactions:
                self._read(cassette, interaction)
        for job in jobs:
            for name, size in _loaded_images(job).items():
                if name not in self.files:
                    self.files[name] = _stand_in(size)
        self._kept = KeptFiles(folder, self.files)

    def reset(self, *, only: bool = False) -> None:
        """Write every recorded input the folder lacks (a file already there is the user's or the test's: kept).
        ``only`` (the fixtures' reset between tests): remove every other file, and rewrite a recorded one that was
        changed (one nobody changed since a reset wrote it is kept as it is)."""
        if only:
            self._kept.restore()
        else:
            self._kept.write_missing()

    def _read(self, cassette: Cassette, interaction: Interaction) -> None:
        if interaction.status != 200:
            return
        path = normalize(interaction.path)
        if interaction.method == "POST" and path in _UPLOADS:
            self._upload(cassette, interaction, mask=path == "/upload/mask")
        elif interaction.method == "GET" and path == "/view":
            query = dict(interaction.query)
            name, tag = split_annotation(query.get("filename", ""))
            if (tag or query.get("type", "output")) != "input" or "preview" in query or "channel" in query:
                return  # not the input folder, or a re-encoding rather than the file
            key = _inside(query.get("subfolder", ""), posixpath.basename(name))
            if key is not None:
                self._found(key, cassette.body(interaction))

    def _upload(self, cassette: Cassette, interaction: Interaction, *, mask: bool) -> None:
        try:
            answer = json.loads(cassette.body(interaction))
        except ValueError:
            return
        if not isinstance(answer, dict) or answer.get("type", "input") != "input":
            return
        key = _inside(str(answer.get("subfolder") or ""), str(answer.get("name") or ""))
        form = _form(interaction)
        data = form.get("image")
        if key is None or not isinstance(data, bytes):
            return
        if key not in self.files:
            self._uploaded.add(key)  # even when its bytes come later, from a /view (a mask on an output)
        if mask:
            original = self._original(form.get("original_ref"))
            if original is None:
                return  # ComfyUI wrote nothing either (a missing or bad original_ref)
            try:
                data = composite_mask(original, data)
            except (OSError, ValueError):
                return
        self._found(key, data)

    def placeholder(self, path: str) -> bool:
        """Whether the file at ``path`` (absolute) stands for an upload of the session that has not been replayed:
        written by the replay for a name a recorded upload created, and unchanged since."""
        key = os.path.relpath(path, self.folder).replace(os.sep, "/")
        return key in self._uploaded and self._kept.untouched(key)

    def _found(self, key: str, data: bytes) -> None:
        self.files.setdefault(key, data)
        self._latest[key] = data

    def _original(self, ref_text: Any) -> bytes | None:
        try:
            ref = json.loads(ref_text) if isinstance(ref_text, str) else None
        except ValueError:
            return None
        if not isinstance(ref, dict):
            return None
        name, tag = split_annotation(str(ref.get("filename", "")))
        if (tag or ref.get("type", "output")) != "input":
            return None
        key = _inside(str(ref.get("subfolder") or ""), name)
        return self._latest.get(key) if key is not None else None


def _inside(subfolder: str, name: str) -> str | None:
    """``subfolder/name`` relative to the input folder, or None for a path that would leave it."""
    if not name:
        return None
    joined = posixpath.normpath(posixpath.join(subfolder.replace("\\", "/"), name))
    if joined.startswith(("/", "../")) or joined in (".", ".."):
        return None
    return joined


def _form(interaction: Interaction) -> dict[str, bytes | str]:
    """A recorded multipart upload's parts: file parts as bytes, plain fields as text."""
    body = interaction.request_body
    content_type = next((v[0] for k, v in interaction.request_headers.items() if k.lower() == "content-type" and v), "")
    if not isinstance(body, (bytes, str)) or "multipart/form-data" not in content_type:
        return {}
    raw = body.encode("latin-1", "replace") if isinstance(body, str) else body
    parts: dict[str, bytes | str] = {}

    def on_field(field: Field) -> None:
        value = field.value or b""
        parts[field.field_name.decode("latin-1") if field.field_name else ""] = value.decode("utf-8", "replace")

    def on_file(file: File) -> None:
        file.file_object.seek(0)
        parts[file.field_name.decode("latin-1") if file.field_name else ""] = file.file_object.read()

    try:
        parse_form({"Content-Type": content_type.encode("latin-1"), "Content-Length": str(len(raw)).encode()},
                   io.BytesIO(raw), on_field, on_file)
    except Exception:  # noqa: BLE001 - a malformed recorded body uploads nothing, like a malformed request
        return {}
    return parts


def _loaded_images(job: Job) -> dict[str, tuple[int, int]]:
    """Input-folder images a recorded job's validated graph loaded, with the size its outputs say they had."""
    if job.status == "rejected":
        return {}
    workflow = job.workflow
    failed = _failed_nodes(job)
    loaded: dict[str, tuple[int, int]] = {}
    for node_id in _ancestors(workflow, job.outputs_to_execute or _outputs(workflow)) - failed:
        node = workflow.get(node_id)
        key_name = FILE_CHECKED_INPUTS.get(str(node.get("class_type"))) if isinstance(node, dict) else None
        value = node.get("inputs", {}).get(key_name) if isinstance(node, dict) and key_name else None
        if not isinstance(value, str):
            continue
        name, tag = split_annotation(value)
        key = _inside("", name) if (tag or "input") == "input" else None
        if key is not None:
            loaded[key] = _recorded_size(job, value)
    return loaded


def _recorded_size(job: Job, value: str) -> tuple[int, int]:
    """The loaded image's size, where a recorded output received it unchanged; else the replay's default size."""
    def probe(name: str) -> tuple[int, int] | None:
        return _PROBE if name == value else None

    for image in job.outputs:
        width, height, _ = output_size(job.workflow, image.node, probe)
        if (width, height) == _PROBE and image.width > 0 and image.height > 0:  # 0: the recording never saw the file
            return image.width, image.height
    return DEFAULT_SIZE[0], DEFAULT_SIZE[1]


def _failed_nodes(job: Job) -> set[str]:
    """Nodes the recorded answer's node_errors name: their inputs were refused, not loaded."""
    try:
        errors = json.loads(job.response_body).get("node_errors") if job.response_body else None
    except (ValueError, AttributeError):
        return set()
    return {str(n) for n in errors} if isinstance(errors, dict) else set()


def _outputs(workflow: Mapping[str, Any]) -> list[str]:
    return [n for n, node in workflow.items() if isinstance(node, dict) and node.get("class_type") in OUTPUT_CLASSES]


def _ancestors(workflow: Mapping[str, Any], outputs: Iterable[str]) -> set[str]:
    """The nodes ComfyUI validates for these outputs: each and everything linked into it."""
    seen: set[str] = set()
    todo = [str(o) for o in outputs]
    while todo:
        node_id = todo.pop()
        node = workflow.get(node_id)
        if node_id in seen or not isinstance(node, dict):
            continue
        seen.add(node_id)
        inputs = node.get("inputs")
        if isinstance(inputs, dict):
            todo.extend(str(v[0]) for v in inputs.values() if is_link(v))
    return seen


def _stand_in(size: tuple[int, int]) -> bytes:
    """A plain grey PNG of ``size``: the recording shows that the image existed and how big, not its pixels."""
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (max(1, size[0]), max(1, size[1])), (128, 128, 128)).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()
