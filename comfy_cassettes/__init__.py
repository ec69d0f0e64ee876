"""Record real ComfyUI sessions into YAML cassettes and replay them as a live ComfyUI."""

from __future__ import annotations

from .cassette import Cassette, Job, OutputImage, WsEvent, load, save
from .control import ReplayControl
from .errors import CassetteError, CassetteExistsError, ComfyCassettesError, ConfigError, ImportFormatError, RecordError
from .importer import import_har
from .replay.config import DEFAULT_CASSETTE, ReplayConfig
from .replay.server import ReplayServer

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CASSETTE",
    "Cassette",
    "CassetteError",
    "CassetteExistsError",
    "ComfyCassettesError",
    "ConfigError",
    "ImportFormatError",
    "Job",
    "OutputImage",
    "RecordError",
    "ReplayConfig",
    "ReplayControl",
    "ReplayServer",
    "WsEvent",
    "import_har",
    "load",
    "save",
]
