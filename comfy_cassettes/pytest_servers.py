"""What the pytest plugin's fixtures run: the session's replay servers and the handle a test sees.

Kept out of pytest_plugin.py, which pytest imports in every run of every project where the package is installed:
this module (and the server stack under it) is imported only when a test asks for a comfy fixture.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .control import ReplayControl, problems_report
from .comfy.profiles import profile
from .errors import ConfigError
from .pytest_names import DEFAULT_ENV_VAR, MARKER
from .replay.config import BUNDLED_DIR, DEFAULT_CASSETTE, TIMING_MODES, ReplayConfig

if TYPE_CHECKING:
    from .replay.server import ReplayServer

# serve's flag names in ReplayConfig's errors -> the pytest option that set the value.
_OPTION_NAMES = {"--model ": "--comfy-model ", "--preview-method ": "--comfy-preview-method ",
                 "--source-image ": "--comfy-source-image "}


@dataclass(frozen=True)
class Settings:
    """The session's options, command line over ini over defaults."""

    cassettes: tuple[Path, ...]
    env_var: str
    seed: int
    source_image: Path | None
    models: tuple[str, ...] = ()
    preview_method: str = "none"
    comfyui_version: str | None = None
    preview_size: int = 512

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        given = config.getoption("comfy_cassettes")
        cassettes = tuple(Path(p).expanduser().resolve() for p in given) if given else tuple(Path(p) for p in config.getini("comfy_cassettes"))
        seed = config.getoption("comfy_seed")
        image = config.getoption("comfy_source_image") or config.getini("comfy_cassettes_source_image")
        try:
            seed = int(config.getini("comfy_cassettes_seed")) if seed is None else seed
        except ValueError:
            raise pytest.UsageError(f"comfy_cassettes_seed must be an integer, got {config.getini('comfy_cassettes_seed')!r}") from None
        preview_size = config.getoption("comfy_preview_size")
        try:
            preview_size = int(config.getini("comfy_cassettes_preview_size")) if preview_size is None else preview_size
        except ValueError:
            raise pytest.UsageError("comfy_cassettes_preview_size must be an integer, got "
                                    f"{config.getini('comfy_cassettes_preview_size')!r}") from None
        return cls(
            cassettes=tuple(p.resolve() for p in cassettes) or (DEFAULT_CASSETTE,),
            env_var=config.getoption("comfy_env_var") or config.getini("comfy_cassettes_env_var") or DEFAULT_ENV_VAR,
            seed=seed,
            source_image=Path(image).expanduser().resolve() if image else None,
            models=tuple(config.getoption("comfy_models") or config.getini("comfy_cassettes_models")),
            preview_method=config.getoption("comfy_preview_method") or config.getini("comfy_cassettes_preview_method") or "none",
            comfyui_version=config.getoption("comfy_version") or config.getini("comfy_cassettes_comfyui_version") or None,
            preview_size=preview_size,
        )

    def check(self) -> None:
        """Refuse a bad option once, at configure, as a usage error naming it (not one error per test)."""
        try:
            if self.comfyui_version is not None:
                try:
                    profile(self.comfyui_version)
                except ConfigError as exc:  # its message names the version, not the option
                    raise ConfigError(f"--comfy-version {self.comfyui_version!r}: {exc}") from None
            ReplayConfig(cassettes=self.cassettes, port=0, source_image=self.source_image, seed=self.seed, models=self.models,
                         preview_method=self.preview_method, preview_size=self.preview_size,
                         comfyui_version=self.comfyui_version).validated()
        except ConfigError as exc:
            message = str(exc)
            for flag, option in _OPTION_NAMES.items():
                message = message.replace(flag, option, 1) if message.startswith(flag) else message
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
        super().reset()
        self.clear_files()
        self.server.engine.recorded_inputs.reset()

    def up(self) -> bool:
        """End a down period early (``down()``); False when the server was not down."""
        return self.server.end_down()

    def clear_files(self) -> None:
        """Empty the output, input and temp folders (the folders stay)."""
        for folder in (self.output_dir, self.input_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)  # a test may have removed it
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)

    def submit(self, workflow: dict[str, Any], *, client_id: str | None = None, **fields: Any) -> str:
        """POST /prompt like a client; returns the prompt_id, or raises naming the status and ComfyUI's answer."""
        body: dict[str, Any] = {"prompt": workflow, **fields}
        if client_id is not None:
            body["client_id"] = client_id
        response = self._http.post("/prompt", json=body)
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


@dataclass(frozen=True)
class ServerOptions:
    """What makes two replay servers different: one session server per distinct value."""

    cassettes: tuple[Path, ...]
    dynamic: bool
    timing: str
    speed: float
    seed: int
    models: tuple[str, ...]
    preview_method: str
    preview_size: int
    comfyui_version: str | None
    assets: bool


class ComfyServers:
    """The session's replay servers, one per distinct :class:`ServerOptions`, started on first use."""

    def __init__(self, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.settings = settings
        self._tmp = tmp_path_factory
        self._running: dict[ServerOptions, ComfyHandle] = {}

    def get(
        self, *, cassettes: Sequence[Path] | None = None, dynamic: bool = False, timing: str = "instant",
        speed: float = 1.0, seed: int | None = None, models: Sequence[str] | None = None,
        preview_method: str | None = None, preview_size: int | None = None, comfyui_version: str | None = None,
        assets: bool = False,
    ) -> ComfyHandle:
        """The handle of the server for this configuration (not reset: the comfy fixtures do that); ``models`` are
        declared besides the session's (``--comfy-model``, ``comfy_cassettes_models``)."""
        if timing not in TIMING_MODES:
            raise ValueError(f"{MARKER}: timing must be one of {', '.join(TIMING_MODES)}, got {timing!r}")
        key = ServerOptions(
            tuple(Path(p).resolve() for p in cassettes) if cassettes else self.settings.cassettes,
            bool(dynamic), timing, float(speed), self.settings.seed if seed is None else int(seed),
            _with_session_models(self.settings.models, models), preview_method or self.settings.preview_method,
            int(self.settings.preview_size if preview_size is None else preview_size), comfyui_version or self.settings.comfyui_version,
            bool(assets),
        )
        if key not in self._running:
            self._running[key] = self._start(key)
        return self._running[key]

    def _start(self, key: ServerOptions) -> ComfyHandle:
        from .replay.config import ReplayConfig
        from .replay.server import ReplayServer

        root = self._tmp.mktemp("comfy-server")
        config = ReplayConfig(
            cassettes=key.cassettes, port=0, output_dir=root / "output", input_dir=root / "input", temp_dir=root / "temp",
            user_dir=root / "user",
            source_image=self.settings.source_image, dynamic=key.dynamic, timing=key.timing, speed=key.speed, seed=key.seed,
            models=key.models, preview_method=key.preview_method, preview_size=key.preview_size,
            comfyui_version=key.comfyui_version, assets=key.assets,
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


def _with_session_models(session: Sequence[str], given: Sequence[str] | str | None) -> tuple[str, ...]:
    """The session's declared models, then a marker's or a caller's own (one name may come as a plain string)."""
    extra = [given] if isinstance(given, str) else list(given or ())
    return tuple(dict.fromkeys([*session, *extra]))


def serve(request: pytest.FixtureRequest, servers: ComfyServers, monkeypatch: pytest.MonkeyPatch, *, dynamic: bool | None) -> Iterator[ComfyHandle]:
    """The comfy fixtures' body: a reset server per the test's markers; at teardown, fail on the problems it saw."""
    handle, allow_unmatched = _prepare(request, servers, monkeypatch, dynamic=dynamic)
    yield handle
    handle.server.end_down()
    report = problems_report(handle.problems(), allow_unmatched=allow_unmatched)
    if report:
        pytest.fail(report, pytrace=False)


def _prepare(request: pytest.FixtureRequest, servers: ComfyServers, monkeypatch: pytest.MonkeyPatch, *, dynamic: bool | None) -> tuple[ComfyHandle, bool]:
    names: Sequence[Any] = ()
    options: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers(MARKER))):  # module first, the test's own mark last
        names = mark.args or names
        options.update(mark.kwargs)
    allow_unmatched = bool(options.pop("allow_unmatched", False))
    known = {k: options.pop(k) for k in ("dynamic", "timing", "speed", "seed", "models", "preview_method", "preview_size",
                                         "comfyui_version", "assets") if k in options}
    if dynamic is not None:
        known["dynamic"] = dynamic
    cassettes = [_resolve(name, request.path.parent, servers.settings) for name in names]
    handle = servers.get(cassettes=cassettes or None, **known)
    handle.server.end_down()  # a test that used the session server directly may have left one running
    handle.reset()
    handle.configure(**options)
    monkeypatch.setenv(servers.settings.env_var, handle.url)
    return handle, allow_unmatched


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

