"""Fixtures for the project's own tests: the replay app in-process, or on a real socket where a test needs one;
every server is stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy_cassettes.control import ReplayControl
from comfy_cassettes.replay.config import ReplayConfig
from comfy_cassettes.replay.server import ReplayServer
from helpers import SUITE_INI, AnyServer, InProcessServer, bundled, control_for, http_client

REAL_SERVER = "real_server"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{REAL_SERVER}: the test's `server` fixture is a ReplayServer on a real socket (uvicorn on 127.0.0.1:0), "
        "for what an in-process app cannot show: cut or refused connections, downtime, client timeouts.",
    )


@pytest.fixture(scope="session", autouse=True)
def _uvicorn_loaded_before_pytester(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Start and stop one ReplayServer first, and import what the package imports lazily. pytester's in-process
    runs drop the modules first imported inside them; uvicorn's protocol stack (httptools, the WebSocket protocol)
    imported again afterwards raises exception classes the first copies do not catch, and every later WebSocket
    upgrade fails. C extensions are not imported again at all: a second `yaml` beside the first `yaml._yaml` fails
    every load with "could not determine a constructor for the tag None" (PIL and pydantic-core likewise)."""
    import PIL.Image
    import pydantic
    import yaml

    del PIL, pydantic, yaml
    folder = tmp_path_factory.mktemp("uvicorn")
    config = ReplayConfig(port=0, output_dir=folder / "out", input_dir=folder / "in", temp_dir=folder / "temp")
    ReplayServer(config).start().stop()


@pytest.fixture
def _servers() -> Iterator[list[AnyServer]]:
    started: list[AnyServer] = []
    yield started
    for server in reversed(started):
        server.stop()


def _starter(kind: Callable[[ReplayConfig], AnyServer], started: list[AnyServer], tmp_path: Path) -> Callable[..., Any]:
    def start(*cassettes: str | Path, **options: Any) -> Any:
        paths = tuple(bundled(c) if isinstance(c, str) and not c.endswith(".yaml") else Path(c) for c in cassettes)
        n = len(started)
        options.setdefault("output_dir", tmp_path / f"out{n}")
        options.setdefault("input_dir", tmp_path / f"in{n}")
        options.setdefault("temp_dir", tmp_path / f"temp{n}")
        server = kind(ReplayConfig(cassettes=paths or ReplayConfig().cassettes, port=0, **options))
        started.append(server)
        return server

    return start


@pytest.fixture
def start_app(_servers: list[AnyServer], tmp_path: Path) -> Callable[..., InProcessServer]:
    """Factory: the replay app in-process (no socket), with folders under tmp_path."""
    return _starter(InProcessServer, _servers, tmp_path)


@pytest.fixture
def start_server(_servers: list[AnyServer], tmp_path: Path) -> Callable[..., ReplayServer]:
    """Factory: a ReplayServer on 127.0.0.1:0 (uvicorn in a thread), with folders under tmp_path."""
    return _starter(lambda config: ReplayServer(config).start(), _servers, tmp_path)


@pytest.fixture
def start(request: pytest.FixtureRequest, start_app: Callable[..., InProcessServer],
          start_server: Callable[..., ReplayServer]) -> Callable[..., AnyServer]:
    """Factory: ``start_app``, or ``start_server`` for a test marked ``real_server``."""
    return start_server if request.node.get_closest_marker(REAL_SERVER) else start_app


@pytest.fixture
def control(server: AnyServer) -> Iterator[ReplayControl]:
    """An admin client for the module's ``server`` fixture."""
    with control_for(server) as made:
        yield made


@pytest.fixture
def http(server: AnyServer) -> Iterator[httpx.Client]:
    """An HTTP client for the module's ``server`` fixture."""
    with http_client(server) as client:
        yield client


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester with a user suite's strict ini (helpers.SUITE_INI)."""
    pytester.makeini(SUITE_INI)
    return pytester
