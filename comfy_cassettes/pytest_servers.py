"""What the pytest plugin's fixtures run: the session's replay servers and the handle a test sees.

Kept out of pytest_plugin.py, which pytest imports in every run of every project where the package is installed:
this module (and the server stack under it) is imported only when a test asks for a comfy fixture.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

from .control import ReplayControl, problems_report
from .diagnosis import PROMPT_PATHS, errors_report
from .comfy.profiles import profile
from .errors import ConfigError
from .pytest_names import DEFAULT_ENV_VAR, HANDLES, MARKER, option_dest
from .replay.config import BUNDLED_DIR, DEFAULT_CASSETTE, TIMING_MODES, ReplayConfig, is_loopback
from .replay.harness.kept_files import empty
from .replay.options import BY_NAME, MARKER_OPTIONS, PYTEST_OPTIONS, Option

# What ReplayControl.configure takes: the marker passes its other keywords there, for the test only.
CONFIGURE_KEYWORDS = tuple(p.name for p in inspect.signature(ReplayControl.configure).parameters.values() if p.kind is p.KEYWORD_ONLY)

if TYPE_CHECKING:
    from .replay.server import ReplayServer
    from .replay.sim.engine import ReplayEngine

@dataclass(frozen=True)
class Settings:
    """The session's options, command line over ini over defaults: its cassettes, the environment variable, and the
    server options it sets (rows of the options table, by name)."""

    cassettes: tuple[Path, ...]
    env_var: str
    values: Mapping[str, Any] = field(default_factory=dict)
    cassettes_from: str = ""  # the option or ini key that named the cassettes, for its errors

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        given = config.getoption("comfy_cassettes")
        cassettes_from = "--comfy-cassette-dir" if given else "comfy_cassettes" if config.getini("comfy_cassettes") else ""
        cassettes = tuple(Path(p).expanduser().resolve() for p in given) if given else tuple(Path(p) for p in config.getini("comfy_cassettes"))
        values: dict[str, Any] = {}
        for option in PYTEST_OPTIONS:
            raw = config.getoption(option_dest(option)) if option.pytest_flag else None
            where = option.pytest_flag
            if raw in (None, []) and option.ini:
                raw, where = config.getini(option.ini), option.ini
            if raw not in (None, "", []):
                values[option.name] = _parsed(option, raw, where or option.name)
        return cls(
            cassettes=tuple(p.resolve() for p in cassettes) or (DEFAULT_CASSETTE,),
            env_var=config.getoption("comfy_env_var") or config.getini("comfy_cassettes_env_var") or DEFAULT_ENV_VAR,
            values=values,
            cassettes_from=cassettes_from,
        )

    def value(self, name: str) -> Any:
        """The session's value of a server option: its own, else the table's default."""
        return self.values.get(name, BY_NAME[name].fixture_value)

    @property
    def seed(self) -> int:
        return int(self.value("seed"))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.value("models"))

    def check(self) -> None:
        """Refuse a bad option once, at configure, as a usage error naming it (not one error per test)."""
        try:
            version = self.values.get("comfyui_version")
            if version is not None:
                try:
                    profile(version)
                except ConfigError as exc:  # its message names the version, not the option
                    raise ConfigError(f"{BY_NAME['comfyui_version'].cli_flag} {version!r}: {exc}") from None
            config = ReplayConfig(cassettes=self.cassettes, port=0, **self.values).validated()
            _refuse_foreign(self.cassettes, config.cassettes)
        except ConfigError as exc:
            message = str(exc)
            if self.cassettes_from and any(message.startswith(f"{path}:") for path in self.cassettes):
                message = f"{self.cassettes_from} {message}"
            for option in PYTEST_OPTIONS:  # serve's flag in ReplayConfig's message -> the pytest option that set it
                if option.pytest_flag and message.startswith(option.cli_flag + " "):
                    message = option.pytest_flag + message[len(option.cli_flag):]
            raise pytest.UsageError(f"comfy-cassettes: {message}") from None

    @property
    def search_dirs(self) -> list[Path]:
        """Where a marker's cassette names are looked up after the test's own folder."""
        dirs = [p if p.is_dir() else p.parent for p in self.cassettes] + [BUNDLED_DIR]
        return list(dict.fromkeys(dirs))


class ComfyHandle(ReplayControl):
    """A running replay server as a test sees it: URL, folders, and every ReplayControl method.

    Usage::

        def test_generate(comfy):
            entry = comfy.run(WORKFLOW)
            assert entry["status"]["completed"]
            assert comfy.journal(method="POST", path="/prompt")
    """

    def __init__(self, server: ReplayServer, root: Path) -> None:
        super().__init__(server.url)
        self.server = server
        self.root = root

    @property
    def output_dir(self) -> Path:
        """ComfyUI's output folder of this server (SaveImage; written in dynamic mode); emptied by a reset."""
        return self.server.engine.roots.output

    @property
    def input_dir(self) -> Path:
        """The input folder (uploads, LoadImage); a reset empties it but for the files the recordings had."""
        return self.server.engine.roots.input

    @property
    def temp_dir(self) -> Path:
        """The temp folder (PreviewImage); emptied by a reset."""
        return self.server.engine.roots.temp

    @property
    def user_dir(self) -> Path:
        """The web page's user folder (settings, workflows); a reset puts it back as it started (empty)."""
        return self.server.engine.user_folder.root

    def reset(self) -> None:
        """Forget queue, history, journal and names, and empty the output, input and temp folders (the input
        folder keeps the files the cassettes' recordings had)."""
        self.server.call(fresh(self.server.engine, end_down=False))

    def problems(self) -> dict[str, Any]:
        """What GET /__cassettes__/problems answers, read from the journal directly (it is thread-safe)."""
        found: dict[str, Any] = json.loads(json.dumps(self.server.engine.journal.problems()))
        return found

    def refused(self) -> list[dict[str, Any]]:
        """The journal's refused prompts (POST /prompt answered 400), read from the journal directly."""
        return [e.as_dict() for e in self.server.engine.journal if e.status == 400 and e.path in PROMPT_PATHS]

    def recorded_prompts(self) -> list[tuple[str, Any]]:
        """Each recorded prompt as (``job0 of basic_save.yaml``, its workflow): what a refused one is compared with."""
        return [(f"{job.name} of {c.path.name if c.path else 'a cassette'}", job.workflow)
                for c in self.server.engine.cassettes for job in c.jobs]

    def up(self) -> bool:
        """End a down period early (``down()``); False when the server was not down."""
        return self.server.end_down()

    def clear_files(self) -> None:
        """Empty the output, input and temp folders (the folders stay)."""
        for folder in (self.output_dir, self.input_dir, self.temp_dir):
            empty(folder)

    def submit(self, workflow: dict[str, Any], *, client_id: str | None = None, **fields: Any) -> str:
        """POST /prompt like a client; returns the prompt_id, or raises naming the status and ComfyUI's answer."""
        body: dict[str, Any] = {"prompt": workflow, **fields}
        if client_id is not None:
            body["client_id"] = client_id
        response = self._request("POST", "/prompt", json=body)
        if response.status_code != 200:
            raise AssertionError(f"POST /prompt answered {response.status_code}: {response.text[:2000]}")
        return str(response.json()["prompt_id"])

    def run(self, workflow: dict[str, Any], *, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """submit() then wait_for_job(): the finished job's history entry."""
        return self.wait_for_job(self.submit(workflow, **fields), timeout=timeout)

    def output_files(self, entry: dict[str, Any]) -> list[Path]:
        """Paths of the images a history entry lists (written to disk in dynamic mode)."""
        paths = []
        for output in (entry.get("outputs") or {}).values():
            for image in (output or {}).get("images", []):
                folder = self.temp_dir if image.get("type") == "temp" else self.output_dir
                paths.append(folder / image.get("subfolder", "") / image["filename"])
        return paths


# What makes two replay servers different: one session server per distinct cassettes and marker option values.
ServerKey = tuple[tuple[Path, ...], tuple[tuple[str, Any], ...]]


class ComfyServers:
    """The session's replay servers, one per distinct :data:`ServerKey`, started on first use."""

    def __init__(self, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.settings = settings
        self._tmp = tmp_path_factory
        self._running: dict[ServerKey, ComfyHandle] = {}

    def get(self, *, cassettes: Sequence[Path] | None = None, **options: Any) -> ComfyHandle:
        """The handle of the server for these cassettes and marker options (not reset: the comfy fixtures do that);
        an option not given is the session's, else the table's default. ``models`` are declared besides the
        session's (``--comfy-model``, ``comfy_cassettes_models``)."""
        values: dict[str, Any] = {}
        for option in MARKER_OPTIONS:
            given = options.pop(option.name, None)
            values[option.name] = self.settings.value(option.name) if given is None else _parsed(option, given, f"{MARKER}: {option.name}")
            if given is not None and option.name == "models":  # added to the session's, not instead of them
                values["models"] = tuple(dict.fromkeys([*self.settings.models, *values["models"]]))
        if options:
            raise TypeError(f"{MARKER}: unknown server option(s) {', '.join(sorted(options))}; known: {', '.join(o.name for o in MARKER_OPTIONS)}")
        if values["timing"] not in TIMING_MODES:
            raise ValueError(f"{MARKER}: timing must be one of {', '.join(TIMING_MODES)}, got {values['timing']!r}")
        key: ServerKey = (tuple(Path(p).resolve() for p in cassettes) if cassettes else self.settings.cassettes, tuple(values.items()))
        if key not in self._running:
            self._running[key] = self._start(key)
        return self._running[key]

    def serves(self, host: str, port: int) -> bool:
        """Whether ``host:port`` reaches one of these servers (they listen on 127.0.0.1, which loopback names reach)."""
        return is_loopback(host) and any(handle.server.port == port for handle in self._running.values())

    def _start(self, key: ServerKey) -> ComfyHandle:
        from .replay.config import ReplayConfig
        from .replay.server import ReplayServer

        cassettes, values = key
        root = self._tmp.mktemp("comfy-server")
        session = {name: value for name, value in self.settings.values.items() if name not in dict(values)}
        config = ReplayConfig(
            cassettes=cassettes, port=0, output_dir=root / "output", input_dir=root / "input", temp_dir=root / "temp",
            user_dir=root / "user", **session, **dict(values),
        )
        try:
            server = ReplayServer(config).start()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return ComfyHandle(server, root)

    def close(self) -> None:
        """Stop every server, join its thread and remove its folders."""
        while self._running:
            _, handle = self._running.popitem()
            try:
                handle.close()
                handle.server.stop()
            finally:
                shutil.rmtree(handle.root, ignore_errors=True)


def errors_section(handles: Sequence[ComfyHandle]) -> str:
    """What the servers of a failed test answered with an error (each refused prompt with ComfyUI's node errors and
    the closest recorded prompt); "" when nothing."""
    parts = []
    for handle in dict.fromkeys(handles):
        entries = [entry.as_dict() for entry in handle.server.engine.journal if entry.status >= 400]
        parts.append(errors_report(entries, handle.recorded_prompts()))
    return "\n".join(part for part in parts if part)


def _parsed(option: Option, raw: Any, where: str) -> Any:
    """A value for ``option`` from the command line, an ini file or a marker, as its type; a usage error naming
    ``where`` when it is not one."""
    kind = option.type
    try:
        if option.repeatable:
            return tuple([raw] if isinstance(raw, str) else raw)  # one name may come as a plain string
        if kind in (int, float):
            return kind(raw)
        if kind is bool:
            return bool(raw)
        if kind == Optional[Path]:
            return Path(raw).expanduser().resolve()
        return raw
    except (TypeError, ValueError):
        raise pytest.UsageError(f"comfy-cassettes: {where} must be {kind.__name__}, got {raw!r}") from None


async def fresh(engine: ReplayEngine, *, end_down: bool) -> None:
    """A reset on the server's loop, folders included, in one call from the test's thread: what POST
    /__cassettes__/reset does (the HTTP round trip was most of a test's overhead), then the output and temp folders
    emptied and the input folder put back as the recordings had it. ``end_down``: first end a down period (a test
    that used the session server directly may have left one running)."""
    if end_down:
        await engine.faults.end_down()
    await engine.reset(folders=True)


def serve(request: pytest.FixtureRequest, servers: ComfyServers, monkeypatch: pytest.MonkeyPatch, *, dynamic: bool | None) -> Iterator[ComfyHandle]:
    """The comfy fixtures' body: a reset server per the test's markers; at teardown, fail on the problems it saw."""
    handle, allow_unmatched = _prepare(request, servers, monkeypatch, dynamic=dynamic)
    request.node.stash.setdefault(HANDLES, []).append(handle)
    yield handle
    engine = handle.server.engine
    # Both read from this thread without a call into the server's loop: most tests have nothing to end or report.
    if engine.faults.down_scheduled:
        handle.server.end_down()
    if engine.journal.has_problems:
        report = problems_report(handle.problems(), allow_unmatched=allow_unmatched, refused=handle.refused(),
                                 recorded=handle.recorded_prompts())
        if report:
            pytest.fail(report, pytrace=False)


def _prepare(request: pytest.FixtureRequest, servers: ComfyServers, monkeypatch: pytest.MonkeyPatch, *, dynamic: bool | None) -> tuple[ComfyHandle, bool]:
    names: Sequence[Any] = ()
    options: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers(MARKER))):  # module first, the test's own mark last
        names = mark.args or names
        options.update(mark.kwargs)
    allow_unmatched = bool(options.pop("allow_unmatched", False))
    known = {o.name: options.pop(o.name) for o in MARKER_OPTIONS if o.name in options}
    _refuse_unknown(options)
    if dynamic is not None:
        known["dynamic"] = dynamic
    cassettes = [_resolve(name, request.path.parent, servers.settings) for name in names]
    handle = _server(servers, cassettes, known)
    handle.server.call(fresh(handle.server.engine, end_down=True))
    handle.configure(**options)
    monkeypatch.setenv(servers.settings.env_var, handle.url)
    return handle, allow_unmatched


def _refuse_foreign(named: Sequence[Path], paths: Sequence[Path]) -> None:
    """ConfigError, naming the configured paths, when none of the cassettes they hold recorded ComfyUI (a folder of
    another service's vcr cassettes): every test would pass on the base's synthetic answers alone."""
    from .cassette.load import load
    from .errors import CassetteError

    try:
        foreign = bool(paths) and all(load(path).foreign for path in paths)
    except CassetteError:
        return  # a broken cassette is the server's error to report, as before this check
    if foreign:
        raise ConfigError(f"{', '.join(map(str, named))}: none of these cassettes recorded a ComfyUI request (cassettes of "
                          "another service?)")


def _server(servers: ComfyServers, cassettes: list[Path], options: dict[str, Any]) -> ComfyHandle:
    """The marker's server; a bad marker value fails the test with one line naming it, not the plugin's traceback."""
    try:
        return servers.get(cassettes=cassettes or None, **options)
    except (ValueError, ConfigError) as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


def _refuse_unknown(options: Mapping[str, Any]) -> None:
    """Fail the test on a misspelt marker keyword, naming the ones the marker takes (and the closest)."""
    import difflib

    accepted = [*(o.name for o in MARKER_OPTIONS), "allow_unmatched", *CONFIGURE_KEYWORDS]
    unknown = sorted(set(options) - set(CONFIGURE_KEYWORDS))
    if unknown:
        close = [f"{name!r} (did you mean {match[0]!r}?)" if (match := difflib.get_close_matches(name, accepted, 1)) else repr(name)
                 for name in unknown]
        pytest.fail(f"{MARKER}: unknown keyword {', '.join(close)}; it takes {', '.join(accepted)}", pytrace=False)


def _resolve(name: Any, test_dir: Path, settings: Settings) -> Path:
    """A marker's cassette: a path, or a name looked up next to the test, in the cassette folders, then bundled."""
    raw = Path(os.fspath(name)).expanduser()
    bases = [raw] if raw.is_absolute() else [test_dir / raw, *(d / raw for d in settings.search_dirs)]
    for base in bases:
        for path in (base, base.with_name(base.name + ".yaml")):
            if path.exists():
                return path.resolve()
    where = ", ".join(str(b.parent) for b in bases)
    pytest.fail(f"{MARKER}: no cassette {str(name)!r} (looked in {where})", pytrace=False)

