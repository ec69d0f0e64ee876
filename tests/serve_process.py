"""`comfy-cassettes serve` as a user runs it, in a subprocess: its URL once ready and the lines of its banner; and
the environment of a machine whose pip cannot reach a package index."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


CLI = [sys.executable, "-m", "comfy_cassettes"]


def start_serve(*args: str, env: dict[str, str] | None = None,
                preexec_fn: Callable[[], None] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`comfy-cassettes serve --port 0 ARGS` in a subprocess, and its URL once its banner says it listens (the
    caller stops it)."""
    process = subprocess.Popen([*CLI, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, preexec_fn=preexec_fn)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return process, match.group(1)
    process.wait(10)
    raise AssertionError(f"serve did not start (exit {process.returncode})")


def offline_env(cache: Path, empty: Path) -> dict[str, str]:
    """An environment whose pip finds nothing (no index, no config, an empty find-links folder) and whose user
    cache is ``cache``: what `serve` meets offline on a machine that never fetched a frontend."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "XDG_CACHE_HOME": str(cache), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(empty)}


@contextmanager
def serve(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """`comfy-cassettes serve --port 0 ARGS` with its folders under ``root``: its URL and the banner's lines."""
    ready, out = root / "ready.json", root / "stdout.txt"
    folders = [arg for name in ("output", "input", "temp", "user") for arg in (f"--{name}-dir", str(root / name))]
    with out.open("w") as stdout:
        process = subprocess.Popen([*CLI, "serve", "--port", "0", "--ready-file",
                                    str(ready), *folders, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        yield json.loads(ready.read_text())["url"], out.read_text().splitlines()
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
        assert "Traceback" not in errors, errors


@contextmanager
def serve_imported(root: Path, har: Path, *args: str) -> Iterator[str]:
    """`serve` (default settings unless ``args``) on a cassette imported from a real session's HAR: its URL."""
    cassette = root / f"{har.parent.name}.yaml"
    imported = subprocess.run([*CLI, "import", str(har), "-o", str(cassette)], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    with serve(root, str(cassette), *args) as (url, _):
        yield url
