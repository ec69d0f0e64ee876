"""The exceptions comfy-cassettes raises, all rooted at ComfyCassettesError.

    ComfyCassettesError
    ├── CassetteError            a cassette file cannot be read, parsed or validated
    │   └── CassetteExistsError  saving would overwrite a cassette without being asked to
    ├── ImportFormatError        an input file (HAR, session JSON, workflow) is not what we expect
    ├── ConfigError              a replay/record option is invalid (missing source image, bad port...)
    ├── FaultSpecError           a fault rule is malformed (also a ValueError)
    ├── ClockError               a clock hold point is unknown, or there is nothing to advance (also a ValueError)
    ├── PatternError             a request-journal pattern or expectation cannot be used (also a ValueError)
    ├── AdminRequestError        an admin API request has an unknown key, a mistyped value, or no JSON (also a ValueError)
    └── RecordError              talking to the upstream ComfyUI failed while recording
"""

from __future__ import annotations

from pathlib import Path


class ComfyCassettesError(Exception):
    """Root of every error this package raises on purpose."""


class CassetteError(ComfyCassettesError):
    """Raised when a cassette cannot be loaded: names the file and the key at fault."""

    def __init__(self, path: Path | str | None, key: str | None, message: str) -> None:
        self.path = str(path) if path is not None else None
        self.key = key
        self.message = message
        where = self.path or "<cassette>"
        if key:
            where += f" at key '{key}'"
        super().__init__(f"{where}: {message}")


class CassetteExistsError(CassetteError):
    """Raised when saving would overwrite an existing cassette and overwrite was not asked for."""


class ImportFormatError(ComfyCassettesError):
    """Raised when an imported file (HAR, session, workflow) is malformed."""


class ConfigError(ComfyCassettesError):
    """Raised when replay or record options are inconsistent or point at missing files."""


class RecordError(ComfyCassettesError):
    """Raised when recording from an upstream ComfyUI fails."""


class FaultSpecError(ComfyCassettesError, ValueError):
    """Raised when a fault rule is malformed; the message names the rule and the key."""


class ClockError(ComfyCassettesError, ValueError):
    """Raised for a hold point the clock does not know, or an advance with nothing to advance."""


class PatternError(ComfyCassettesError, ValueError):
    """Raised for a journal pattern or expectation that cannot be used; the message names the key."""


class AdminRequestError(ComfyCassettesError, ValueError):
    """Raised for an admin API request the contract refuses (a 400): ``problems`` lists ``{key, problem}``,
    ``accepted`` the keys the route takes."""

    def __init__(self, message: str, *, problems: list[dict[str, str]] | None = None, accepted: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.accepted = accepted

    def as_dict(self) -> dict[str, object]:
        """The 400 answer's body."""
        answer: dict[str, object] = {"error": str(self)}
        if self.problems:
            answer["problems"] = self.problems
        if self.accepted is not None:
            answer["accepted"] = self.accepted
        return answer
