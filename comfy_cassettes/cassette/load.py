"""The cassette file: vcrpy-compatible YAML plus a ``comfy:`` block, validated on load and saved atomically.

Layout on disk::

    cassettes/basic.yaml          version: 1, interactions: [...], comfy: {format: 1, jobs: [...]}
    cassettes/blobs/<sha256>.png  binary and large bodies, content-addressed, shared by cassettes in the folder

Interactions keep vcrpy's shape so pytest-recording can read them; a body too large or binary for YAML is
``{file: blobs/<sha>.<ext>}`` instead of ``{string: ...}`` and is resolved by :meth:`Cassette.body`. The model
is in model.py, validation in schema.py, the files in storage.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..comfy.events import BinaryFrame as BinaryFrame
from ..comfy.events import WsEvent as WsEvent
from ..errors import CassetteError
from .model import FORMAT as FORMAT
from .model import Cassette as Cassette
from .model import Headers as Headers
from .model import Interaction as Interaction
from .model import Job as Job
from .model import OutputImage as OutputImage
from .aliases import expanded_size, expansion_limit, may_alias
from .schema import Checker
from .storage import BLOB_DIR as BLOB_DIR
from .storage import BlobStore as BlobStore
from .storage import atomic_write, from_json, keep_parsed, no_gc, parsed_cache, used_parsed
from .templating import PLACEHOLDER, is_valid_name

INLINE_LIMIT = 64 * 1024  # bodies above this go to a sidecar blob, keeping YAML diffable


def yaml_loader() -> type[Any]:
    """libyaml's loader when PyYAML was built with it (several times faster), the pure-Python one otherwise.

    yaml is imported on first use: a cassette read from the parsed cache, as `serve`'s default is, needs none of it."""
    import yaml

    loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


def load(path: str | os.PathLike[str]) -> Cassette:
    """Read and validate a cassette; every problem names the file and the key.

    Cassettes over 32 KiB are also kept parsed, as JSON, in the user cache folder (``$XDG_CACHE_HOME`` or
    ``~/.cache``, ``comfy-cassettes/``), keyed by the text's hash: YAML builds an object per scalar, a
    cassette of many recorded jobs took seconds to parse and the bundled one a fifth of `serve`'s start-up. ``COMFY_CASSETTES_CACHE=0`` turns it off.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CassetteError(path, None, "no such cassette file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(path, None, f"cannot read: {exc}") from None
    cache = parsed_cache(text)
    if cache is not None and cache.is_file():
        try:
            with no_gc():
                cached = from_json(json.loads(cache.read_bytes()))
        except (OSError, ValueError):
            cached = None  # unreadable cache: parse the YAML as if there were none
        if cached is not None:
            used_parsed(cache)
            with no_gc():
                return from_dict(cached, path, text=text)
    import yaml

    try:
        with no_gc():
            data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise CassetteError(path, None, f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    aliased = may_alias(text)
    if aliased and expanded_size(data, expansion_limit(text)) is None:
        raise CassetteError(path, None, f"its YAML aliases expand to over {expansion_limit(text) >> 20} MiB or into "
                                        "themselves (an alias bomb?); write the values out instead of aliasing them")
    cassette = from_dict(data, path, text=text)
    if cache is not None and not aliased:  # JSON would write every alias out in full
        keep_parsed(cache, data)
    return cassette


def from_dict(data: Any, path: Path | None = None, *, text: str | None = None) -> Cassette:
    """Validate an already parsed cassette document and build the model (``text``: the YAML it came from)."""
    check = Checker(path)
    check.type(data, dict, "")
    if data.get("version") != 1:
        check.fail("version", f"expected 1 (vcrpy's cassette format), got {data.get('version')!r}")
    interactions = data.get("interactions", [])
    check.type(interactions, list, "interactions")
    for i, item in enumerate(interactions):
        check.interaction(item, f"interactions[{i}]")
    comfy = data.get("comfy") or {}
    check.type(comfy, dict, "comfy")
    if comfy and comfy.get("format") != FORMAT:
        check.fail("comfy.format", f"expected {FORMAT}, got {comfy.get('format')!r}")
    raw_jobs = comfy.get("jobs", [])
    check.type(raw_jobs, list, "comfy.jobs")
    jobs = tuple(check.job(job, f"comfy.jobs[{i}]") for i, job in enumerate(raw_jobs))
    recorded = comfy.get("recorded") or {}
    check.type(recorded, dict, "comfy.recorded")
    metadata = data.get("metadata")
    check.type(metadata if metadata is not None else {}, dict, "metadata")
    cassette = Cassette(path=path, interactions=tuple(Interaction.from_dict(i) for i in interactions), jobs=jobs,
                        recorded=recorded, metadata=metadata)
    # One pass over the text finds every name; the key-by-key walk that names the key runs only on a bad one.
    if text is None or not all(map(is_valid_name, set(PLACEHOLDER.findall(text)))):
        check.placeholders(data, "")
    check.blobs(cassette)
    return cassette


# ---------------------------------------------------------------- saving


def dump(document: dict[str, Any]) -> str:
    """The YAML text of a cassette document (key order kept, long strings unfolded)."""
    import yaml

    text: str = yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, allow_unicode=True, width=1 << 30)
    return text


def save(cassette: Cassette | Mapping[str, Any], path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Validate then write a cassette atomically; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    document = cassette.to_dict() if isinstance(cassette, Cassette) else dict(cassette)
    from_dict(document, path)  # never write what we could not load back
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, dump(document).encode("utf-8"), overwrite=overwrite)
    return path


