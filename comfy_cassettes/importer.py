"""``comfy-cassettes import``: HAR files (or several merged) into one templated cassette on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .record.har import read_har
from .record.modes import RecordMode
from .record.scrub import Scrubber
from .record.writer import write_session


def import_har(
    sources: Sequence[str | Path], output: str | Path, *, overwrite: bool = False, scrubber: Scrubber | None = None,
    comfyui_version: str | None = None,
) -> Path:
    """Template the sessions in ``sources`` into the cassette ``output`` (blobs beside it); returns its path.

    Secrets are scrubbed as when recording (``scrubber``, default :class:`~comfy_cassettes.record.scrub.Scrubber`).
    ``comfyui_version`` is recorded when no session says it (a HAR that never asked ``/system_stats``).
    """
    sessions = [read_har(source) for source in sources]
    path, _ = write_session(sessions, Path(output), mode=RecordMode.ALL, scrubber=scrubber, overwrite=overwrite, via=None,
                            comfyui_version=comfyui_version)
    return path
