"""One options table (comfy_cassettes/options.py) feeds serve's command line; these tests keep it the only place."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from comfy_cassettes.replay.options import OPTIONS
from comfy_cassettes.replay.config import ReplayConfig

# Not options a user sets on serve: the cassettes are its arguments; the journal's cap is the harness's.
NOT_OPTIONS = {"cassettes", "journal_limit"}


def test_every_config_field_is_one_row_of_the_table() -> None:
    fields = {f.name for f in dataclasses.fields(ReplayConfig)}
    rows = [o.name for o in OPTIONS if o.config]
    assert len(rows) == len(set(rows))
    assert set(rows) == fields - NOT_OPTIONS


def test_serve_help_shows_every_row_with_its_help_and_default() -> None:
    shown = subprocess.run([sys.executable, "-m", "comfy_cassettes", "serve", "--help"], capture_output=True, text=True,
                           env={"COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1", "PATH": ""}, check=True).stdout
    for option in OPTIONS:
        assert all(flag in shown for flag in option.cli_flag.split("/")), option.name
        assert option.help.split(":")[0][:30] in " ".join(shown.split()), option.name
    assert "[default: faithful]" in shown and "[env var: COMFY_CASSETTES_ADMIN_TOKEN]" in shown


def test_a_row_reaches_the_server(tmp_path) -> None:
    """--preview-size, read from the table, becomes the config the server runs with (a bad value names the flag)."""
    bad = subprocess.run([sys.executable, "-m", "comfy_cassettes", "serve", "--port", "0", "--preview-size", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip() == "error: --preview-size must be at least 1, got 0"


def test_the_config_types_are_the_table_types() -> None:
    import typing

    hints = typing.get_type_hints(ReplayConfig)
    for option in OPTIONS:
        if option.config:
            assert hints[option.name] == option.type, option.name
