"""The ``comfy-cassettes`` entry point: a plain ``serve`` starts without importing typer, anything else goes to the
typer app in commands.py (its import and option reading were a third of `serve`'s start-up)."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any


def main() -> None:
    """Entry point of the ``comfy-cassettes`` script."""
    # No cyclic collections while `serve` starts: what it imports and builds lives as long as the process, and the
    # collector walked it all again and again for nothing (a twentieth of the start-up). Serving turns it back on
    # (replay/server.py collect_as_a_server); any other command at once.
    gc.disable()
    from . import serve_command
    from .errors import ComfyCassettesError

    values = serve_command.read_plain(sys.argv[1:], os.environ)
    if values is None:
        gc.enable()
        from .commands import app

        app()
        return
    try:
        serve_command.run(values)
    except ComfyCassettesError as exc:
        from .commands import _fail

        sys.exit(_fail(exc).exit_code)  # the typer app's message and exit status
    # The rest as the typer app's main ends them: Ctrl-C while loading, exit 130; stdout closed early
    # (`serve | head -1`), a quiet exit 1.
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def __getattr__(name: str) -> Any:
    """``cli.app``, the typer app, for callers that knew it here."""
    if name == "app":
        from .commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
