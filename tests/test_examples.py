"""The TypeScript and Ruby examples pass against `comfy-cassettes serve`, each starting it the way a harness in
its language would (``--port 0 --ready-file``). Outside CI a missing toolchain skips with the command that installs
it; in CI (``CI=true``, where ``.ci/run`` installs them) it fails. The Python example is a team's own suite (its
pytest.ini, a pytest-recording cassette of another API) using the plugin's fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TYPESCRIPT = EXAMPLES / "typescript"
RUBY = EXAMPLES / "ruby"
# How the examples run the CLI: this interpreter's, so they test the working tree.
SERVE_COMMAND = f"{sys.executable} -m comfy_cassettes"


def _toolchain(missing: str | None, install: str) -> None:
    """Skip (or in CI fail) when a toolchain is not there."""
    if missing is None:
        return
    message = f"{missing}; install it with: {install}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run should have)", pytrace=False)
    pytest.skip(message)


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_typescript_example_types_from_the_openapi_document_and_passes(tmp_path: Path) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    _toolchain(None if npm and node else "Node.js and npm are not installed", "apt-get install nodejs npm (Node 20+)")
    assert npm is not None and node is not None
    _toolchain(None if (TYPESCRIPT / "node_modules" / ".bin" / "vitest").exists() else "examples/typescript has no node_modules",
               "cd examples/typescript && npm ci")
    document = tmp_path / "openapi.json"
    _run([sys.executable, "-m", "comfy_cassettes", "openapi", "-o", str(document)], TYPESCRIPT, dict(os.environ))
    env = {**os.environ, "COMFY_OPENAPI": str(document), "COMFY_CASSETTES_CMD": SERVE_COMMAND}
    _run([npm, "run", "--silent", "generate"], TYPESCRIPT, env)
    _run([npm, "run", "--silent", "typecheck"], TYPESCRIPT, env)  # the client compiles against the generated types
    out = _run([npm, "test", "--silent"], TYPESCRIPT, env)
    assert "5 passed" in out, out


def test_ruby_example_passes() -> None:
    ruby = shutil.which("ruby")
    _toolchain(None if ruby else "Ruby is not installed", "apt-get install ruby (Debian's ruby ships minitest)")
    assert ruby is not None
    env = {**os.environ, "COMFY_CASSETTES_CMD": SERVE_COMMAND}
    out = _run([ruby, str(RUBY / "comfy_client_test.rb")], RUBY, env)
    assert "4 runs" in out and "0 failures, 0 errors" in out, out


def test_python_service_example_passes_beside_its_own_vcr_cassette() -> None:
    # A team's suite as it is: its own pytest.ini, a pytest-recording cassette of another API, the comfy fixture over a
    # cassette recorded from a real ComfyUI 0.8.0. Run as the team runs it, in its folder, and under --block-network.
    folder = EXAMPLES / "python"
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = _run([sys.executable, "-m", "pytest", "-q"], folder, env)
    assert "5 passed" in out, out
    out = _run([sys.executable, "-m", "pytest", "-q", "--block-network", "--allowed-hosts=127.0.0.1"], folder, env)
    assert "5 passed" in out, out
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts) == before
