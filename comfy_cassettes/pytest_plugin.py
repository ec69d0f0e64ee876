"""pytest plugin: fixtures and markers that run a comfy-cassettes replay server for a test suite.

Fixtures: ``comfy_servers`` (session: one server per distinct configuration, started on first use),
``comfy_server`` / ``comfy_server_dynamic`` and ``comfy_url`` / ``comfy_url_dynamic`` (session), and
``comfy`` / ``comfy_dynamic`` (function: a reset server, its URL in ``$COMFYUI_URL``). Marker:
``@pytest.mark.comfy_cassette("basic_save", dynamic=True, timing="recorded")``.

pytest-recording's ``@pytest.mark.vcr`` reads and writes our cassettes only for tests that are ours (see
:func:`is_ours`); every other vcr test runs exactly as pytest-recording alone runs it.

pytest imports this module in every run of every project where the package is installed, so it imports nothing
heavy: the server stack (pytest_servers.py and under it) and vcrpy load when a fixture or hook needs them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .pytest_names import DEFAULT_ENV_VAR, HANDLES, MARKER, VCR_MARKER, option_dest
from .replay.options import MARKER_OPTIONS, PYTEST_OPTIONS

if TYPE_CHECKING:
    from .pytest_servers import ComfyHandle, ComfyServers
    from .replay.server import ReplayServer

_MARKER_HELP = (
    f"{MARKER}(*cassettes, "
    + ", ".join(f'{o.name}="{o.fixture_value}"' if isinstance(o.fixture_value, str) else f"{o.name}={o.fixture_value!r}" for o in MARKER_OPTIONS)
    + ", allow_unmatched=False, **options): replay these cassettes (names, files or folders; looked up next to the test, "
    "in the configured cassette folders, then among the bundled ones) for the comfy / comfy_dynamic fixtures; models are "
    "declared besides the session's (--comfy-model, comfy_cassettes_models); other keywords go to the server's configure()."
)
_VCR_MARKER_HELP = (
    f"{VCR_MARKER}: this test's @pytest.mark.vcr cassette is a comfy-cassettes one (read with templates rendered, "
    "recorded in the comfy-cassettes format, ComfyUI matchers and filters); a test whose cassette file already is "
    "one needs no marker."
)
# The plugin's own settings (dest, flags, help, extra) and ini keys (name, help, type, default); the server options a
# session sets come from the options table (replay/options.py). Read by pytest_addoption and by _configured (a session
# that sets none of them pays nothing for checking them).
_OPTIONS: list[tuple[str, tuple[str, ...], str, dict[str, Any]]] = [
    ("comfy_cassettes", ("--comfy-cassette-dir",), "cassette file or folder to replay (repeatable; default: the bundled comfyui.yaml).",
     {"action": "append", "metavar": "PATH"}),
    ("comfy_env_var", ("--comfy-env-var",), f"environment variable the comfy fixture sets to the server URL (default {DEFAULT_ENV_VAR}).",
     {"metavar": "NAME"}),
    *((option_dest(o), (o.pytest_flag,), o.help, {"metavar": o.metavar, **({"action": "append"} if o.repeatable else {})})
      for o in PYTEST_OPTIONS if o.pytest_flag),
]
_INI: list[tuple[str, str, str | None, Any]] = [
    ("comfy_cassettes", "cassette files or folders to replay (relative to the ini file).", "paths", []),
    ("comfy_cassettes_env_var", f"environment variable set to the replay server URL (default {DEFAULT_ENV_VAR}).", None, DEFAULT_ENV_VAR),
    *((o.ini, o.help, "linelist" if o.repeatable else None, [] if o.repeatable else "") for o in PYTEST_OPTIONS if o.ini),
]
# vcrpy and pytest-recording are an extra, not dependencies: installing us must not add a pytest plugin to a suite.
_VCR_EXTRA = "pip install 'comfy-cassettes[vcr]' (vcrpy and pytest-recording)"
# The `vcr` fixture's request while pytest-recording sets it up: pytest_recording_configure is given no test.
_VCR_REQUEST = pytest.StashKey["pytest.FixtureRequest"]()
# A comfy cassette is YAML with a top-level `comfy:` key; a key at column 0 can only be a top-level one.
_COMFY_KEY = re.compile(rb"^comfy:", re.MULTILINE)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("comfy-cassettes", "comfy-cassettes replay server")
    for dest, flags, help_text, extra in _OPTIONS:
        group.addoption(*flags, dest=dest, default=None, help=help_text, **extra)
    for name, help_text, kind, default in _INI:
        parser.addini(name, help_text, type=kind, default=default)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    config.addinivalue_line("markers", _VCR_MARKER_HELP)
    if _configured(config):
        from .pytest_servers import Settings

        Settings.from_config(config).check()  # one usage error now, not one error per test


def _configured(config: pytest.Config) -> bool:
    """Whether the session sets any of our options (else the defaults, the bundled cassettes, need no check)."""
    return any(config.getoption(dest) is not None for dest, *_ in _OPTIONS) or any(
        config.getini(name) != default for name, _, _, default in _INI
    )


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, object, object]:
    """Remember the test whose ``vcr`` fixture is being set up, for pytest_recording_configure."""
    if fixturedef.argname != "vcr":
        return (yield)
    request.config.stash[_VCR_REQUEST] = request
    try:
        return (yield)
    finally:
        del request.config.stash[_VCR_REQUEST]


@pytest.hookimpl(optionalhook=True)
def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    """pytest-recording built a VCR for a ``@pytest.mark.vcr`` test: if the test is ours, teach it our cassettes and
    matchers; any other test keeps pytest-recording's VCR untouched."""
    request = config.stash.get(_VCR_REQUEST, None)
    if request is None:
        return
    if not is_ours(request, vcr):
        if "comfy_servers" in request.fixturenames:  # a test of theirs that also uses our servers
            _pass_to_our_servers(vcr, request.getfixturevalue("comfy_servers"))
        return
    from .pytest_servers import Settings
    from .vcr import configure_vcr

    configure_vcr(vcr, seed=Settings.from_config(config).seed)


def _pass_to_our_servers(vcr: Any, servers: ComfyServers) -> None:
    """Requests to the session's replay servers go to them, never into (or looked up in) the test's own cassette: they
    are on a port drawn for this run, so a recording of them could never be played back. vcrpy lets through a request
    its ``before_record_request`` drops; the test's own filter (vcr_config's, the marker's) replaces this one."""
    own = vcr.before_record_request
    vcr.before_record_request = [lambda request: None if servers.serves(request.host, request.port) else request,
                                 *(own if isinstance(own, (list, tuple)) else [own] if own else [])]


def is_ours(request: pytest.FixtureRequest, vcr: Any) -> bool:
    """A vcr test is ours when it is marked ``comfy_vcr`` (itself, its class or module), asks for the
    ``comfy_vcr_config`` fixture (e.g. through its ``vcr_config``), or a cassette it reads is a comfy cassette."""
    if request.node.get_closest_marker(VCR_MARKER) is not None or "comfy_vcr_config" in request.fixturenames:
        return True
    default = os.path.join(vcr.cassette_library_dir or "", request.getfixturevalue("default_cassette_name"))
    paths = [vcr.path_transformer(default), *(getattr(vcr.persister, "extra_paths", None) or [])]
    return any(_is_comfy_cassette(Path(path)) for path in paths)


def _is_comfy_cassette(path: Path) -> bool:
    try:
        return _COMFY_KEY.search(path.read_bytes()) is not None
    except OSError:
        return False  # not there yet (a test about to record), or not readable: pytest-recording decides


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``comfy_vcr`` test without pytest-recording would silently reach the network: fail it, saying what to install."""
    if item.get_closest_marker(VCR_MARKER) is not None and not item.config.pluginmanager.has_plugin("recording"):
        pytest.fail(f"@pytest.mark.{VCR_MARKER} needs pytest-recording, which is not loaded: {_VCR_EXTRA}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A vcr playback miss of ours names the cassette files that were really searched, not only vcrpy's default path."""
    try:
        return (yield)
    except Exception as error:
        persister = getattr(getattr(error, "cassette", None), "_persister", None)
        if type(persister).__name__ == "ComfyPersister":  # another suite's miss loads nothing of ours
            from .vcr import explain_miss

            explain_miss(error)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used a comfy fixture shows what its server answered with an error, and why: ComfyUI's
    refusal of a prompt (error, node_errors), which a client raising a bare "400 Bad Request" hides."""
    report = yield
    handles = item.stash.get(HANDLES, None) if report.when == "call" and report.failed else None
    if handles:
        from .pytest_servers import errors_section

        text = errors_section(handles)
        if text:
            report.sections.append(("comfy-cassettes: error answers", text))
    return report


@pytest.fixture(scope="session")
def comfy_servers(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyServers]:
    """Every replay server of the session; stopped and their folders removed at the end."""
    from .pytest_servers import ComfyServers, Settings

    servers = ComfyServers(Settings.from_config(pytestconfig), tmp_path_factory)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="session")
def comfy_server(comfy_servers: ComfyServers) -> ReplayServer:
    """The session's static replay server (configured cassettes, outputs not written)."""
    return comfy_servers.get().server


@pytest.fixture(scope="session")
def comfy_server_dynamic(comfy_servers: ComfyServers) -> ReplayServer:
    """The session's dynamic replay server: every job's outputs copied into its output folder."""
    return comfy_servers.get(dynamic=True).server


@pytest.fixture(scope="session")
def comfy_url(comfy_server: ReplayServer) -> str:
    """URL of the static session server, e.g. ``http://127.0.0.1:43817``."""
    return comfy_server.url


@pytest.fixture(scope="session")
def comfy_url_dynamic(comfy_server_dynamic: ReplayServer) -> str:
    """URL of the dynamic session server."""
    return comfy_server_dynamic.url


@pytest.fixture
def comfy(request: pytest.FixtureRequest, comfy_servers: ComfyServers, monkeypatch: pytest.MonkeyPatch) -> Iterator[ComfyHandle]:
    """A freshly reset replay server for this test (per its comfy_cassette marker), its URL in $COMFYUI_URL.

    At teardown the test fails if the server hit an engine error or answered a request nothing recorded matches
    (``comfy_cassette(allow_unmatched=True)`` allows those), and a down period it started is ended.
    """
    from .pytest_servers import serve

    yield from serve(request, comfy_servers, monkeypatch, dynamic=None)


@pytest.fixture
def comfy_dynamic(request: pytest.FixtureRequest, comfy_servers: ComfyServers, monkeypatch: pytest.MonkeyPatch) -> Iterator[ComfyHandle]:
    """Like ``comfy``, in dynamic mode: each job's output files exist under ``comfy_dynamic.output_dir``."""
    from .pytest_servers import serve

    yield from serve(request, comfy_servers, monkeypatch, dynamic=True)


@pytest.fixture
def comfy_vcr_config() -> dict[str, Any]:
    """Our vcrpy settings (matchers, filters), to merge into a ``vcr_config`` fixture you override."""
    try:
        from .vcr import vcr_config
    except ModuleNotFoundError as error:
        pytest.fail(f"comfy_vcr_config needs vcrpy ({error}): {_VCR_EXTRA}", pytrace=False)

    return vcr_config()
