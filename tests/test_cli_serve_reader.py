"""The plain `serve` reader (serve_command.read_plain) gives exactly what typer gives, and hands typer the rest."""

from __future__ import annotations

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
