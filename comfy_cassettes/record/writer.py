"""The one way a recording becomes a cassette file: build (scrub, template), merge per record mode, save atomically.

Live workflow runs, the recording proxy, HAR import and the vcrpy persister all write through
:func:`write_session`, so every cassette on disk was made the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..cassette.load import save
from ..comfy.profiles import profile
from ..errors import ConfigError
from .build import build_cassette, merge_documents
from .infer import infer_version
from .modes import RecordMode, combine
from .scrub import Scrubber
from .session import RawSession


def write_session(
    sessions: RawSession | Sequence[RawSession],
    output: Path,
    *,
    mode: RecordMode = RecordMode.ONCE,
    existing: dict[str, Any] | None = None,
    scrubber: Scrubber | None = None,
    recorded: Mapping[str, Any] | None = None,
    via: str | None = "workflow",
    overwrite: bool | None = None,
    comfyui_version: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Template ``sessions`` (scrubbed by ``scrubber``) into one cassette and save it at ``output`` per ``mode``;
    the file is replaced atomically or not at all. Returns the path and the document written.

    ``existing`` is the document already at ``output`` that ``mode`` merges with. ``overwrite`` defaults to "only
    when merging into an existing cassette", so a file that appeared meanwhile is never clobbered. ``via`` names
    the recorder in ``recorded.source`` (None for a file that was not recorded by us: HAR import, vcrpy); ``comfyui_version`` is used when the session itself never said.
    """
    output = Path(output)
    meta = dict(recorded or {})
    runs = [sessions] if isinstance(sessions, RawSession) else list(sessions)
    if via is not None:
        meta = {"source": f"comfy-cassettes record ({via})", "server": runs[0].source if runs else "", **meta}
    built = [build_cassette(session, output, recorded=meta, scrubber=scrubber).to_dict() for session in runs]
    document = built[0] if len(built) == 1 else merge_documents(built)
    _choose_version(document["comfy"]["recorded"], runs, comfyui_version)
    if metadata:
        document["metadata"] = dict(metadata)
    merged = combine(mode, existing, document)
    return save(merged, output, overwrite=existing is not None if overwrite is None else overwrite), merged


def _choose_version(recorded: dict[str, Any], runs: Sequence[RawSession], given: str | None) -> None:
    """Where a cassette's ComfyUI version comes from: the sessions' /system_stats, else ``given`` (``import
    --comfyui-version``), else what the traffic shows (record/infer.py); ``comfyui_version_from`` says which."""
    stated = recorded.get("comfyui_version")
    if stated is not None:
        if given is not None and profile(given).version != profile(str(stated)).version:
            raise ConfigError(f"--comfyui-version {given}: the sessions' /system_stats says ComfyUI {stated}")
        recorded.setdefault("comfyui_version_from", "system_stats")
        return
    if given is not None:
        profile(given)  # ConfigError for a version outside the known range
        recorded.update(comfyui_version=given, comfyui_version_from="given")
        return
    inferred = {run.source or "?": version for run in runs if (version := infer_version([run])) is not None}
    if len(set(inferred.values())) > 1:
        raise ConfigError("the sessions' traffic shows different ComfyUI versions: "
                          + ", ".join(f"{v} ({source})" for source, v in inferred.items()) + "; import them apart")
    recorded["comfyui_version"] = next(iter(inferred.values()), None)
    if inferred:
        recorded["comfyui_version_from"] = "traffic"
