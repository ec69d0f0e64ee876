"""Our vcrpy defaults: which matchers, filters and persister a ComfyUI cassette is replayed and recorded with."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from vcr.request import Request  # type: ignore[import-untyped]

from ..record.scrub import DEFAULT_HEADERS, Scrubber
from ..replay.config import ADMIN_PREFIX, BUNDLED_DIR
from .matchers import comfy_body, comfy_path, comfy_query
from .persister import ComfyPersister

MATCH_ON = ("method", "comfy_path", "comfy_query", "comfy_body")


def bundled_cassette(name: str) -> str:
    """Absolute path of a cassette shipped with comfy-cassettes, e.g. ``bundled_cassette("basic_save")``."""
    path = BUNDLED_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no bundled cassette {name!r}; bundled: {known}")
    return str(path)


def vcr_config() -> dict[str, Any]:
    """Our defaults as ``vcr.use_cassette`` keywords (what pytest-recording's ``vcr_config`` returns)."""
    return {
        "match_on": MATCH_ON,
        # vcrpy drops these before anything else sees them; build_cassette scrubs our cassettes again, bodies too.
        "filter_headers": DEFAULT_HEADERS,
        "before_record_request": skip_admin_requests,
        "before_record_response": drop_set_cookie,
        "decode_compressed_response": True,
    }


def configure_vcr(vcr: Any, *, seed: int = 0, scrubber: Scrubber | None = None) -> None:
    """Register our matchers and persister on a ``vcr.VCR`` and make :func:`vcr_config` its defaults.

    Keeps the extra cassettes pytest-recording's persister was given (``@pytest.mark.vcr("a.yaml")``).
    Keywords passed to ``use_cassette`` (a user's ``vcr_config``) still override these defaults. ``scrubber``
    says what to remove from ComfyUI cassettes before they are written (default :class:`Scrubber`).
    """
    for matcher in (comfy_path, comfy_query, comfy_body):
        vcr.register_matcher(matcher.__name__, matcher)
    extra = [str(p) for p in getattr(vcr.persister, "extra_paths", []) or []]
    vcr.register_persister(ComfyPersister(extra, seed=seed, scrubber=scrubber))
    vcr.match_on = MATCH_ON
    vcr.filter_headers = DEFAULT_HEADERS
    vcr.before_record_request = skip_admin_requests
    vcr.before_record_response = drop_set_cookie
    vcr.decode_compressed_response = True


# ---------------------------------------------------------------- filters


def skip_admin_requests(request: Request) -> Request | None:
    """Calls to the replay server's admin API (the pytest fixtures' resets) go to the network, unrecorded."""
    return None if urlsplit(request.uri).path.startswith(ADMIN_PREFIX) else request


def drop_set_cookie(response: dict[str, Any]) -> dict[str, Any]:
    """Session cookies are secrets too."""
    headers = response.get("headers") or {}
    for key in [k for k in headers if k.lower() == "set-cookie"]:
        del headers[key]
    return response
