"""ReplayConfig: every replay option in one frozen value, built once by the CLI or the pytest plugin."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..cassette.model import Cassette
from ..comfy.model_files import by_folder
from ..comfy.profiles import parts, profile
from ..contract import ADMIN_PREFIX as ADMIN_PREFIX
from ..errors import ConfigError

from .options import (
    ADMIN_TOKEN_ENV as ADMIN_TOKEN_ENV, BUNDLED_BASES as BUNDLED_BASES, BUNDLED_DIR as BUNDLED_DIR, DEFAULT_BASE as DEFAULT_BASE, DEFAULT_CASSETTE as DEFAULT_CASSETTE,
    DEFAULT_HOST as DEFAULT_HOST, DEFAULT_PORT as DEFAULT_PORT, PREVIEW_METHODS as PREVIEW_METHODS, TIMING_MODES as TIMING_MODES,
    default,
)


@dataclass(frozen=True)
class ReplayConfig:
    """How a replay server behaves.

    ``dynamic`` is ComfyUI's real file behaviour (outputs copied into ``output_dir``); the default static
    mode writes nothing and serves every output name from one source image (or the recorded image).
    ``speed`` scales recorded delays in ``timing="recorded"`` (2.0 = twice as fast).
    ``admin_token``: the admin API answers 401 without it; a server bound to anything but loopback always has one
    (generated when not given); on loopback it has one only when given.
    """

    cassettes: tuple[Path, ...] = (DEFAULT_CASSETTE,)
    host: str = default("host")
    port: int = default("port")
    output_dir: Path | None = default("output_dir")
    input_dir: Path | None = default("input_dir")
    temp_dir: Path | None = default("temp_dir")
    source_image: Path | None = default("source_image")
    dynamic: bool = default("dynamic")
    timing: str = default("timing")
    speed: float = default("speed")
    seed: int = default("seed")
    journal_limit: int = 10_000
    # answers /object_info, /system_stats... a cassette lacks; None: no base; DEFAULT_BASE: the bundled one of the
    # version served (bundled_base)
    base: Path | None = default("base")
    comfyui_version: str | None = default("comfyui_version")  # the ComfyUI version to be (a profile); None: the cassettes' own
    assets: bool = default("assets")  # ComfyUI 0.38's assets system (--enable-assets): asset ids on outputs and uploads
    models: tuple[str, ...] = default("models")  # declared model files, "FOLDER/NAME" (checkpoints/v1-5-pruned-emaonly.safetensors)
    preview_method: str = default("preview_method")  # ComfyUI's default: sampler steps send no preview
    preview_size: int = default("preview_size")
    front_end_root: Path | None = default("front_end_root")  # a frontend build to serve instead of the installed package
    user_dir: Path | None = default("user_dir")  # the web page's user folder (default: a temporary one)
    admin_token: str | None = default("admin_token")
    recorded_inputs: bool = default("recorded_inputs")  # start with the input files the cassettes' recordings had; False: an empty folder

    def validated(self) -> ReplayConfig:
        """This config with paths made absolute and the cassette folders expanded, or ConfigError naming the bad
        option."""
        self._check_values()
        self._check_paths()
        token = self.admin_token
        if token is not None and not token.strip():
            raise ConfigError("--admin-token must not be empty")
        if token is None and not is_loopback(self.host):
            token = secrets.token_urlsafe(24)  # the admin API is never open to the network

        def absolute(value: Path | None) -> Path | None:
            return Path(value).expanduser().resolve() if value is not None else None

        return replace(
            self,
            admin_token=token,
            cassettes=expand_cassettes(self.cassettes),
            output_dir=absolute(self.output_dir),
            input_dir=absolute(self.input_dir),
            temp_dir=absolute(self.temp_dir),
            source_image=absolute(self.source_image),
            base=absolute(self.base),
            front_end_root=absolute(self.front_end_root),
            user_dir=absolute(self.user_dir),
        )

    def _check_values(self) -> None:
        """The options that are values: within their range, and available in the ComfyUI version chosen."""
        if self.timing not in TIMING_MODES:
            raise ConfigError(f"--timing must be one of {', '.join(TIMING_MODES)}, got {self.timing!r}")
        if self.speed <= 0:
            raise ConfigError(f"--speed must be > 0, got {self.speed}")
        if self.preview_method not in PREVIEW_METHODS:
            raise ConfigError(f"--preview-method must be one of {', '.join(PREVIEW_METHODS)}, got {self.preview_method!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: must be 0 to 65535 (0 picks a free port)")
        if self.preview_size < 1:
            raise ConfigError(f"--preview-size must be at least 1, got {self.preview_size}")
        by_folder(self.models)  # each FOLDER/NAME checked: ConfigError names the bad one
        if self.comfyui_version is not None:
            profile(self.comfyui_version)  # ConfigError for a version that is not one
        if self.assets and not profile(self.comfyui_version).assets_api:
            raise ConfigError("--assets needs a ComfyUI with the assets system (0.17.0 or newer, e.g. --comfyui-version 0.38)")
        if self.assets and importlib.util.find_spec("blake3") is None:
            raise ConfigError("--assets needs the blake3 package for ComfyUI's asset hashes: pip install 'comfy-cassettes[assets]'")

    def _check_paths(self) -> None:
        """The options that are files and folders: there, of the right kind, writable where the server writes."""
        if self.base is not None and not Path(self.base).expanduser().is_file():
            raise ConfigError(f"--base {self.base}: no such cassette")
        if self.front_end_root is not None and not Path(self.front_end_root).expanduser().is_dir():
            raise ConfigError(f"--front-end-root {self.front_end_root}: no such folder")
        if self.source_image is not None:
            check_image("--source-image", Path(self.source_image).expanduser())
        for flag, folder in (("--output-dir", self.output_dir), ("--input-dir", self.input_dir), ("--temp-dir", self.temp_dir),
                             ("--user-dir", self.user_dir)):
            if folder is not None:
                check_folder(flag, Path(folder).expanduser())


def recorded_version(cassettes: Sequence[Cassette], chosen: str | None) -> str | None:
    """The ComfyUI version the cassettes were recorded from; cassettes of two profiles need ``chosen``, since
    one server cannot answer as both."""
    versions = {c.comfyui_version: c for c in cassettes if c.comfyui_version}
    if chosen is None and len({profile(v).version for v in versions}) > 1:
        recorded = ", ".join(f"{v} ({c.path.name if c.path else 'in memory'})" for v, c in versions.items())
        raise ConfigError(f"the cassettes were recorded from different ComfyUI versions: {recorded}; "
                          f"choose the one to be with --comfyui-version")
    return next(iter(versions), None)


def served_base(cassettes: Sequence[Cassette], config: ReplayConfig) -> Path | None:
    """The base a replay of ``cassettes`` takes: --base, none with --no-base, else the bundled one of the ComfyUI
    it serves (--comfyui-version, else the one they were recorded from)."""
    if config.base != DEFAULT_BASE:
        return config.base
    return bundled_base(profile(config.comfyui_version or recorded_version(cassettes, config.comfyui_version)).version)


def bundled_base(version: str) -> Path:
    """The bundled base for a replay as ComfyUI ``version``: the one recorded from the newest version not newer
    than it, the oldest for an older one (a base recorded from a newer ComfyUI would list nodes it lacks).

    >>> [bundled_base(v).name for v in ("0.3.64", "0.7.1", "0.8.0", "0.38.1")]
    ['snapshots.yaml', 'snapshots.yaml', 'comfyui-0.8.0.yaml', 'comfyui-0.8.0.yaml']
    """
    fitting = [recorded for recorded in BUNDLED_BASES if parts(recorded) <= parts(version)]
    return BUNDLED_BASES[max(fitting, key=parts) if fitting else min(BUNDLED_BASES, key=parts)]


def expand_cassettes(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    """The cassette files ``paths`` name: a folder stands for its ``*.yaml`` files (ConfigError when a path is
    missing or a folder holds none)."""
    if not paths:
        raise ConfigError("no cassette given")
    expanded: list[Path] = []
    for path in paths:
        path = Path(path).expanduser().resolve()
        if path.is_dir():
            found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
            if not found:
                raise ConfigError(f"{path}: folder holds no *.yaml cassette{_subfolders_hint(path)}")
            expanded.extend(found)
        elif not path.exists():
            raise ConfigError(f"{path}: no such cassette")
        else:
            expanded.append(path)
    return tuple(expanded)


def _subfolders_hint(path: Path) -> str:
    """Where the cassettes are when they sit one level down (pytest-recording's cassettes/<module>/<test>.yaml): a
    folder stands for its own files only, so its subfolders must be named."""
    below = sorted({found.parent.name for pattern in ("*/*.yaml", "*/*.yml") for found in path.glob(pattern)})
    if not below:
        return ""
    more = f" and {len(below) - 5} more" if len(below) > 5 else ""
    return f" of its own (subfolders are not searched; name the one to replay: {', '.join(below[:5])}{more} hold *.yaml)"


def check_folder(flag: str, path: Path) -> None:
    """ConfigError unless ``path`` is a folder the server can write, or one it can create (nothing is created)."""
    existing = path.absolute()
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"{flag} {path}: {exc.strerror}") from None
    if not existing.is_dir():
        where = "it is a file" if existing == path.absolute() else f"{existing} is a file"
        raise ConfigError(f"{flag} {path}: {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable")


def check_file_target(flag: str, path: Path) -> None:
    """ConfigError unless a file can be written at ``path``: its folder exists and is writable (nothing is written)."""
    path = path.absolute()
    try:
        if path.is_dir():
            raise ConfigError(f"{flag} {path}: it is a folder")
        if not path.parent.is_dir():
            raise ConfigError(f"{flag} {path}: no folder {path.parent}")
    except OSError as exc:  # e.g. a name too long for the file system
        raise ConfigError(f"{flag} {path}: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {path.parent} is not writable")


def check_image(flag: str, path: Path) -> None:
    """ConfigError unless ``path`` is an image file Pillow reads (its header only): the outputs are served from it."""
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            kind = image.format
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(f"{flag} {path}: not an image Pillow can read ({type(exc).__name__})") from None
    if kind is None:
        raise ConfigError(f"{flag} {path}: not an image Pillow can read")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine (127.0.0.0/8, ::1, localhost): for binding, and for ComfyUI's origin
    check, which resolves the name; without DNS here, the loopback names and literal addresses decide."""
    if not host:
        return False
    host = host.lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
