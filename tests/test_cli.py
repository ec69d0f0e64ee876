"""The command line as a user runs it: `serve` in a subprocess, `import`, `inspect`, and its error messages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helpers import SESSIONS
from serve_process import CLI, start_serve



def test_serve_default_cassette_answers_and_stops_on_ctrl_c() -> None:
    process, url = start_serve()
    try:
        stats = httpx.get(url + "/system_stats").json()
        assert stats["system"]["comfyui_version"] == "0.3.64"
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "stopped" in out


def test_serve_reports_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([*CLI, "serve", "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_reports_corrupt_cassette_with_file_and_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\ninteractions:\n- request: {method: GET}\n  response: {status: {code: 200}}\n")
    result = subprocess.run([*CLI, "serve", str(broken), "--port", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert str(broken) in result.stderr and "interactions[0].request.uri" in result.stderr
    assert "Traceback" not in result.stderr

    missing = subprocess.run([*CLI, "serve", str(tmp_path / "nope.yaml"), "--port", "0"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "no such cassette" in missing.stderr


def test_import_then_inspect_then_serve(tmp_path: Path) -> None:
    target = tmp_path / "cassettes" / "batch.yaml"
    har = str(SESSIONS / "batch_3" / "session.har")
    done = subprocess.run([*CLI, "import", har, "-o", str(target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 jobs" in done.stdout and target.is_file()
    assert list((target.parent / "blobs").glob("*.png"))

    again = subprocess.run([*CLI, "import", har, "-o", str(target)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already exists" in again.stderr

    shown = subprocess.run([*CLI, "inspect", str(target)], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0 and "EmptyImage" in shown.stdout and "success" in shown.stdout
    narrow = subprocess.run([*CLI, "inspect", str(target)], capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "60"})
    assert narrow.stdout.splitlines()[0].startswith(f"{target}  ComfyUI 0.3.64") and " recorded 20" in narrow.stdout.splitlines()[0]

    process, url = start_serve(str(target))
    try:
        assert httpx.get(url + "/queue").json() == {"queue_running": [], "queue_pending": []}
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_top_level_cli_py_launches_the_same_app() -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, str(root / "cli.py"), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in ("serve", "import", "inspect"):
        assert command in result.stdout


@pytest.mark.parametrize("command", [[], ["serve"], ["record"], ["import"], ["inspect"]], ids=lambda c: " ".join(c) or "top")
def test_help_shows_flags_as_flags_and_options_with_their_metavar(command: list[str]) -> None:
    # typer 0.2x prints a flag's type, `--proxy <bool>`, which reads as an option taking true or false.
    result = subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0
    typers_own = ("--help", "--install-completion", "--show-completion")
    rows = [line for line in result.stdout.splitlines() if "--" in line and not any(flag in line for flag in typers_own)]
    assert rows and not [row for row in rows if "<bool>" in row]
    if command == ["serve"]:
        assert [row for row in rows if "--timing" in row and "MODE" in row]  # the options table's metavar


SCRIPT = shutil.which("comfy-cassettes", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SCRIPT is None, reason="console script not installed next to this interpreter")
def test_console_script_is_installed() -> None:
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0


def _refused(*args: str) -> str:
    """serve's one-line error for ``args`` (exit code 1, no traceback), without ever listening."""
    result = subprocess.run([*CLI, "serve", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "listening on" not in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_serve_refuses_a_port_out_of_range() -> None:
    assert _refused("--port", "99999") == "error: --port 99999: must be 0 to 65535 (0 picks a free port)"


def test_serve_refuses_an_output_dir_that_is_a_file_or_under_one(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert _refused("--port", "0", "--output-dir", str(a_file)) == f"error: --output-dir {a_file}: it is a file, not a folder"
    under = a_file / "out"
    assert _refused("--port", "0", "--output-dir", str(under)) == f"error: --output-dir {under}: {a_file} is a file, not a folder"
    assert a_file.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder whatever its mode")
def test_serve_refuses_an_unwritable_output_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert _refused("--port", "0", "--output-dir", str(locked / "out")) == f"error: --output-dir {locked / 'out'}: {locked} is not writable"


def test_serve_checks_the_ready_file_folder_before_binding(tmp_path: Path) -> None:
    ready = tmp_path / "missing" / "ready.json"
    with socket.socket() as busy:  # the port is taken too: the ready file's error comes first, nothing was bound
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        line = _refused("--port", str(busy.getsockname()[1]), "--ready-file", str(ready))
    assert line == f"error: --ready-file {ready}: no folder {ready.parent}"
    assert not ready.parent.exists()


def test_serve_refuses_a_source_image_that_is_not_an_image(tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.yaml"
    cassette.write_text("version: 1\ninteractions: []\n")
    line = _refused("--port", "0", "--source-image", str(cassette))
    assert line == f"error: --source-image {cassette}: not an image Pillow can read (UnidentifiedImageError)"


def test_version() -> None:
    from comfy_cassettes.version import __version__

    result = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == f"comfy-cassettes {__version__}\n"


def test_a_ready_file_name_too_long_is_one_line(tmp_path: Path) -> None:
    ready = tmp_path / ("r" * 300 + ".json")
    assert _refused("--port", "0", "--ready-file", str(ready)) == f"error: --ready-file {ready}: File name too long"


def test_a_ready_file_that_cannot_be_written_once_serving_stops_serve_with_one_line() -> None:
    # As root, /sys passes the folder checks (os.access says writable) yet refuses new files: the write fails once
    # the server listens, which stops it. As anyone else (or without /sys) the check refuses it before binding.
    ready = Path("/sys/comfy-cassettes-ready.json")
    result = subprocess.run([*CLI, "serve", "--port", "0", "--ready-file", str(ready)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --ready-file {ready}: ")
    assert not ready.exists()
