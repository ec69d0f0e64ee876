"""The plain `serve` reader (serve_command.read_plain) gives exactly what typer gives, and hands typer the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from comfy_cassettes.commands import app
from comfy_cassettes.serve_command import COMPLETION_ENV, read_plain


def typer_values(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What typer hands `serve` for ``serve ARGV`` with ``env`` as the environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return dict(command.make_context("serve", list(argv)).params)


PLAIN = [
    [],
    ["--port", "0"],
    ["--port=0", "--host", "0.0.0.0", "a.yaml", "dir/b.yaml"],
    ["--timing", "instant", "--speed", "2.5", "--seed", "7", "--preview-size", "64", "--preview-method", "auto"],
    ["--model", "checkpoints/a.safetensors", "--model=loras/b.safetensors", "--fault", "/prompt:503:2", "--delay", "/view:0.1-0.3"],
    ["--disable-static-return", "--assets", "--no-recorded-inputs", "--no-base", "--log-level", "info"],
    ["--recorded-inputs", "--output-dir", "out", "--input-dir=in", "--temp-dir", "t", "--user-dir", "u", "--ready-file", "r.json"],
    ["--front-end-root", "web", "--source-image", "x.png", "--base", "other.yaml", "--comfyui-version", "0.8.0", "c.yaml"],
    ["--admin-token", "secret", "--host=", "--comfyui-version="],
]


@pytest.mark.parametrize("argv", PLAIN, ids=[" ".join(a) or "(none)" for a in PLAIN])
def test_a_plain_serve_command_line_reads_as_typer_reads_it(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    values = read_plain(["serve", *argv], {})
    assert values is not None
    assert values == typer_values(argv, {}, monkeypatch)


def test_the_admin_token_comes_from_the_environment_as_typer_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"COMFY_CASSETTES_ADMIN_TOKEN": "from-env"}
    for argv in ([], ["--admin-token", "given"]):
        assert read_plain(["serve", *argv], env) == typer_values(argv, env, monkeypatch)


NOT_PLAIN = [
    ["serve", "--help"],
    ["serve", "--port", "x"],
    ["serve", "--port", "-1"],
    ["serve", "--port", " 5"],
    ["serve", "--port", "0x10"],
    ["serve", "--speed", "1e3"],
    ["serve", "--port"],
    ["serve", "--port", "1", "--port", "2"],
    ["serve", "--assets", "--assets"],
    ["serve", "--assets=yes"],
    ["serve", "--host", "--port"],
    ["serve", "--output-dir", ""],
    ["serve", "--unknown"],
    ["serve", "-p", "1"],
    ["serve", "--", "a.yaml"],
    ["serve", ""],
    ["--version"],
    ["inspect", "a.yaml"],
    [],
]


@pytest.mark.parametrize("argv", NOT_PLAIN, ids=[" ".join(a) or "(none)" for a in NOT_PLAIN])
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert read_plain(argv, {}) is None


def test_an_empty_token_variable_and_shell_completion_go_to_typer() -> None:
    assert read_plain(["serve"], {"COMFY_CASSETTES_ADMIN_TOKEN": ""}) is None
    assert read_plain(["serve"], {COMPLETION_ENV: "bash_complete"}) is None


# What `serve` starts without: typer and pydantic (the CLI's and the admin API's), PIL; yaml once the bundled
# cassettes are in the parsed cache.
NOT_ON_THE_WAY_UP = ("typer", "pydantic", "rich", "PIL")
_SERVE_ONCE = """
import json, os, signal, sys, urllib.request
from comfy_cassettes import cli, serve_command

def ready(path, url, port):  # in place of the ready file: the modules loaded once the first request is answered
    urllib.request.urlopen(url + "/system_stats").read()
    path.write_text(json.dumps(sorted(sys.modules)))
    os.kill(os.getpid(), signal.SIGINT)

serve_command.write_ready_file = ready
sys.argv = ["comfy-cassettes", "serve", "--port", "0", "--ready-file", sys.argv[1]]
cli.main()
"""


def test_a_plain_serve_starts_without_typer_pydantic_or_yaml(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "COMFY_CASSETTES_CACHE": "1"}
    loaded = []
    for run in ("cold", "warm"):
        out = tmp_path / f"{run}.json"
        done = subprocess.run([sys.executable, "-c", _SERVE_ONCE, str(out)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "stopped" in done.stdout, done.stderr
        loaded.append(set(json.loads(out.read_text())))
    cold, warm = loaded
    assert "comfy_cassettes.replay.server" in warm
    assert not {m.split(".")[0] for m in cold | warm} & set(NOT_ON_THE_WAY_UP)
    assert "yaml" in cold and "yaml" not in warm, "the bundled cassettes were not read from the parsed cache"
