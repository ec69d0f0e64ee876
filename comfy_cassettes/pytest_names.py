"""The pytest plugin's names, shared by the plugin module and the fixtures' code (pytest_servers.py) so that
neither imports the other: the plugin loads the fixtures' code only when a test uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .replay.options import Option

DEFAULT_ENV_VAR = "COMFYUI_URL"  # the environment variable the comfy fixtures set to the server's URL
MARKER = "comfy_cassette"  # the marker that picks a test's cassettes and server options
VCR_MARKER = "comfy_vcr"  # the marker that makes a @pytest.mark.vcr test ours
# The replay servers a test's comfy fixtures handed it: its failure report lists what they answered with an error.
HANDLES = pytest.StashKey[list[Any]]()  # of pytest_servers.ComfyHandle (which imports this module)


def option_dest(option: Option) -> str:
    """The pytest option's dest for a row of the options table (``--comfy-seed`` -> ``comfy_seed``)."""
    return (option.pytest_flag or "").lstrip("-").replace("-", "_")
