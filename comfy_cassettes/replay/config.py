"""ReplayConfig: every replay option in one frozen value, built once by the CLI or the pytest plugin."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError

ADMIN_PREFIX = "/__cassettes__"
TIMING_MODES = ("instant", "recorded")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8189
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "cassettes"
DEFAULT_CASSETTE = BUNDLED_DIR / "comfyui.yaml"


@dataclass(frozen=True)
class ReplayConfig:
    """How a replay server behaves.

    ``dynamic`` is ComfyUI's real file behaviour (outputs copied into ``output_dir``); the default static
    mode writes nothing and serves every output name from one source image (or the recorded image).
    ``speed`` scales recorded delays in ``timing="recorded"`` (2.0 = twice as fast).
    """

    cassettes: tuple[Path, ...] = (DEFAULT_CASSETTE,)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    output_dir: Path | None = None
    input_dir: Path | None = None
    temp_dir: Path | None = None
    source_image: Path | None = None
    dynamic: bool = False
    timing: str = "instant"
    speed: float = 1.0
    seed: int = 0
    journal_limit: int = 10_000

    def validated(self) -> ReplayConfig:
        """This config with paths made absolute, or ConfigError naming the bad option."""
        if self.timing not in TIMING_MODES:
            raise ConfigError(f"--timing must be one of {', '.join(TIMING_MODES)}, got {self.timing!r}")
        if self.speed <= 0:
            raise ConfigError(f"--speed must be > 0, got {self.speed}")
        if not self.cassettes:
            raise ConfigError("no cassette given")
        expanded: list[Path] = []
        for path in self.cassettes:
            path = Path(path).expanduser().resolve()
            if path.is_dir():
                found = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
                if not found:
                    raise ConfigError(f"{path}: folder holds no *.yaml cassette")
                expanded.extend(found)
            elif not path.exists():
                raise ConfigError(f"{path}: no such cassette")
            else:
                expanded.append(path)
        if self.source_image is not None and not Path(self.source_image).expanduser().is_file():
            raise ConfigError(f"--source-image {self.source_image}: no such file")

        def absolute(value: Path | None) -> Path | None:
            return Path(value).expanduser().resolve() if value is not None else None

        return replace(
            self,
            cassettes=tuple(expanded),
            output_dir=absolute(self.output_dir),
            input_dir=absolute(self.input_dir),
            temp_dir=absolute(self.temp_dir),
            source_image=absolute(self.source_image),
        )
