"""Record real ComfyUI sessions into YAML cassettes and replay them as a live ComfyUI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    CassetteError,
    CassetteExistsError,
    ClockError,
    ComfyCassettesError,
    ConfigError,
    FaultSpecError,
    ImportFormatError,
    PatternError,
    RecordError,
)
from .version import __version__ as __version__

if TYPE_CHECKING:
    from .cassette.load import Cassette, Job, OutputImage, WsEvent, load, save
    from .control import ReplayControl
    from .importer import import_har
    from .record.live import record_workflow
    from .replay.config import DEFAULT_CASSETTE, ReplayConfig
    from .replay.server import ReplayServer

# Imported on first use: the pytest plugin loads this package in every test run of every project where it is
# installed, and even the cassette model (yaml) and the config (pydantic, through the admin contract) cost
# a tenth of a second each; the server stack (uvicorn, starlette, httpx) most of a second.
_LAZY = {
    "Cassette": ".cassette.load",
    "Job": ".cassette.load",
    "OutputImage": ".cassette.load",
    "WsEvent": ".cassette.load",
    "load": ".cassette.load",
    "save": ".cassette.load",
    "DEFAULT_CASSETTE": ".replay.config",
    "ReplayConfig": ".replay.config",
    "ReplayControl": ".control",
    "ReplayServer": ".replay.server",
    "import_har": ".importer",
    "record_workflow": ".record.live",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CASSETTE",
    "Cassette",
    "CassetteError",
    "CassetteExistsError",
    "ClockError",
    "ComfyCassettesError",
    "ConfigError",
    "FaultSpecError",
    "ImportFormatError",
    "Job",
    "OutputImage",
    "PatternError",
    "RecordError",
    "ReplayConfig",
    "ReplayControl",
    "ReplayServer",
    "WsEvent",
    "import_har",
    "load",
    "record_workflow",
    "save",
]
