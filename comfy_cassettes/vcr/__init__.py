"""vcrpy integration: a persister for our templated cassettes, matchers that ignore volatile fields, recording filters.

pytest-recording users get all of it from the plugin (``pytest_recording_configure``); plain vcrpy users call
:func:`configure_vcr` on their ``vcr.VCR``::

    my_vcr = vcr.VCR()
    configure_vcr(my_vcr)
    with my_vcr.use_cassette(bundled_cassette("basic_save"), record_mode="none"):
        ...  # httpx / requests calls to any ComfyUI URL replay the recording

Loading renders every ``{{placeholder}}`` with stable fake values per recorded job, so the prompt_id a
replayed ``POST /prompt`` answers is the one the next ``GET /history/<id>`` expects, and the filenames the
history lists are the ones ``/view`` serves. Saving turns what vcrpy recorded into a RawSession and writes it
as a templated, scrubbed cassette (record/build.py), so a cassette recorded in-process also replays in ``serve``.
"""

from __future__ import annotations

from .config import MATCH_ON, bundled_cassette, configure_vcr, drop_set_cookie, skip_admin_requests, vcr_config
from .matchers import comfy_body, comfy_path, comfy_query, stable_json
from .persister import ComfyPersister, explain_miss, to_session

__all__ = [
    "MATCH_ON", "ComfyPersister", "bundled_cassette", "comfy_body", "comfy_path", "comfy_query", "configure_vcr",
    "drop_set_cookie", "explain_miss", "skip_admin_requests", "stable_json", "to_session", "vcr_config",
]
