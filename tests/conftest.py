"""Shared fixtures for the project's own tests: replay servers on free loopback ports, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.config import BUNDLED_DIR, ReplayConfig
from comfy_cassettes.replay.server import ReplayServer

DATA = Path(__file__).parent / "data"
SESSIONS = DATA / "real_sessions"
SCENARIOS = sorted(p.name for p in SESSIONS.iterdir() if (p / "session.har").is_file())


def bundled(name: str) -> Path:
    """A cassette shipped with the package."""
    return BUNDLED_DIR / f"{name}.yaml"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ReplayServer]]:
    """Factory: start a ReplayServer on 127.0.0.1:0 with folders under tmp_path; all are stopped at teardown."""
    started: list[ReplayServer] = []

    def start(*cassettes: str | Path, **options: Any) -> ReplayServer:
        paths = tuple(bundled(c) if isinstance(c, str) and not c.endswith(".yaml") else Path(c) for c in cassettes)
        n = len(started)
        options.setdefault("output_dir", tmp_path / f"out{n}")
        options.setdefault("input_dir", tmp_path / f"in{n}")
        options.setdefault("temp_dir", tmp_path / f"temp{n}")
        config = ReplayConfig(cassettes=paths or ReplayConfig().cassettes, port=0, **options)
        server = ReplayServer(config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def control(server: ReplayServer) -> Iterator[ReplayControl]:
    """An admin client for the module's ``server`` fixture."""
    with ReplayControl(server.url) as made:
        yield made


@pytest.fixture
def http(server: ReplayServer) -> Iterator[httpx.Client]:
    """An HTTP client for the module's ``server`` fixture."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
