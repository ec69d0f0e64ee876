"""``comfy-cassettes serve`` once its options are read, and a reader of a plain ``serve`` command line.

Typer reads options through a pydantic adapter per option: with its own import that was a third of `serve`'s
start-up. A command line of the usual kind (known options, plain values) is read here instead, to the values typer
would give (tests/test_cli_serve_reader.py compares them); anything else (--help, a value typer must refuse or
convert, shell completion) returns None and goes through the typer app, which owns every message.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .errors import ConfigError
from .replay.config import ADMIN_PREFIX, DEFAULT_CASSETTE, ReplayConfig, check_file_target
from .replay.options import OPTIONS, Option

if TYPE_CHECKING:
    from .replay.server import ReplayServer

# click's shell completion runs when this is set: the typer app answers it.
COMPLETION_ENV = "_COMFY_CASSETTES_COMPLETE"
# The spellings every reader takes the same way; typer reads any other (and refuses what it must).
_PLAIN: dict[Any, tuple[str, Callable[[str], Any]]] = {
    int: (r"0|[1-9][0-9]{0,17}", int),
    float: (r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?", float),
    str: (r".*", str),
    Optional[str]: (r".*", str),
    Optional[Path]: (r"[^-].*", Path),
    tuple[str, ...]: (r".*", str),
    list[str]: (r".*", str),
}


def echo(text: str, *, err: bool = False) -> None:
    """A line on stdout (or stderr), flushed at once: a harness reads the first line while the server runs."""
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def run(values: Mapping[str, Any]) -> None:
    """Serve until Ctrl-C, from serve's values (one per row of the options table, and ``cassettes``).

    A bad value, cassette or port raises ComfyCassettesError; the caller reports it."""
    from .replay.harness.faults import parse_cli_delay, parse_cli_status
    from .replay.server import ReplayServer

    settings = {option.name: values[option.name] for option in OPTIONS if option.config}
    settings["models"] = tuple(settings["models"] or ())
    if values["no_base"]:
        settings["base"] = None
    config = ReplayConfig(cassettes=tuple(values["cassettes"] or (DEFAULT_CASSETTE,)), **settings)
    ready_file = values["ready_file"]
    if ready_file is not None:
        check_file_target("--ready-file", ready_file)  # before binding: a harness waiting for it must not wait forever
    rules = [parse_cli_status(f) for f in values["fault"] or []] + [parse_cli_delay(d) for d in values["delay"] or []]
    server = ReplayServer(config, log_level=values["log_level"])
    for spec in rules:
        server.engine.faults.add(spec)
    try:
        announce(server)
    except BaseException:  # e.g. stdout closed (`serve | head -1`): the temporary folders go too
        server.stop()
        raise
    try:
        server.run(on_ready=(lambda: write_ready_file(ready_file, server.url, server.port)) if ready_file else None)
    except KeyboardInterrupt:
        pass  # uvicorn shut down gracefully, then re-raised the Ctrl-C it captured
    echo("stopped")


def announce(server: ReplayServer) -> None:
    """What `serve` prints before it listens. The first line, for harnesses that read stdout: the URL (with the port
    --port 0 picked) and the pid."""
    from .replay.http.frontend import WebRoots

    engine = server.engine
    mode = "dynamic" if engine.config.dynamic else "static"
    echo(f"serving {server.url}  (pid {os.getpid()})")
    if engine.config.admin_token:
        echo(f"admin token: {engine.config.admin_token}  (send 'Authorization: Bearer <token>' to {ADMIN_PREFIX}/...)")
    echo(f"comfy-cassettes serving {len(engine.cassettes)} cassette(s), {len(engine.jobs)} recorded job(s), {mode} mode, "
         f"{engine.config.timing} timing, as ComfyUI {engine.profile.version}")
    if engine.profile.notice:
        echo(f"warning: {engine.profile.notice}", err=True)
    for cassette in engine.cassettes:
        if cassette.foreign:
            echo(f"warning: {cassette.path}: none of its {len(cassette.interactions)} request(s) is to ComfyUI (a cassette of "
                 "another service?); it answers nothing here", err=True)
    if engine.catalogue.declared:
        echo("declared models: " + ", ".join(f"{folder}/{name}" for folder, names in engine.catalogue.declared.items() for name in names))
    echo(f"output folder: {engine.roots.output}")
    echo(WebRoots.for_engine(engine).describe())  # finds (or fetches) the build the page needs, once
    for rule in engine.faults.rules:
        echo(f"fault {rule.id}: {rule.as_dict()}")
    echo(f"listening on {server.url}  (Ctrl-C to stop)")


def write_ready_file(path: Path, url: str, port: int) -> None:
    """``{"url", "port", "pid"}`` written atomically: a harness polling for the file never reads half of it."""
    from .cassette.storage import atomic_write

    try:
        atomic_write(path, json.dumps({"url": url, "port": port, "pid": os.getpid()}).encode() + b"\n", overwrite=True)
    except OSError as exc:
        raise ConfigError(f"--ready-file {path}: cannot write it ({exc.strerror})") from None


def read_plain(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """serve's values from ``argv`` (``serve ...``) as typer gives them, or None unless every word is plain:
    a cassette path, ``--flag``, ``--option VALUE`` or ``--option=VALUE`` with a value in its type's plain spelling,
    each option at most once."""
    if not argv or argv[0] != "serve" or COMPLETION_ENV in environ:
        return None
    flags = {name: (option, name == option.cli_flag.split("/")[0])
             for option in OPTIONS if option.type is bool for name in option.cli_flag.split("/")}
    takes_value = {option.cli_flag: option for option in OPTIONS if option.type is not bool}
    values: dict[str, Any] = {"cassettes": []}
    words = list(argv[1:])
    while words:
        word = words.pop(0)
        if not word.startswith("-"):
            if not word:
                return None
            values["cassettes"].append(Path(word))
            continue
        name, has_value, value = word.partition("=")
        if name in flags and not has_value and flags[name][0].name not in values:
            values[flags[name][0].name] = flags[name][1]
        elif name in takes_value and (has_value or (words and not words[0].startswith("-"))):
            option = takes_value[name]
            read = _plain_value(option, value if has_value else words.pop(0))
            if read is None or (option.name in values and not option.repeatable):
                return None
            if option.repeatable:
                values.setdefault(option.name, []).append(read)
            else:
                values[option.name] = read
        else:
            return None
    return _with_defaults(values, environ)


def _plain_value(option: Option, text: str) -> Any:
    """``text`` as typer would read it for ``option``, or None when the spelling is not the plain one."""
    pattern, convert = _PLAIN.get(option.type, ("", str))
    return convert(text) if pattern and re.fullmatch(pattern, text, re.DOTALL) else None


def _with_defaults(values: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """Every option not given: from its environment variable (a set, non-empty one; an empty one goes to typer),
    else its default (a repeatable option's is ``()``)."""
    if not values["cassettes"]:
        values["cassettes"] = ()
    for option in OPTIONS:
        if option.name in values:
            continue
        if option.envvar is not None and option.envvar in environ:
            if not environ[option.envvar] or option.type not in (str, Optional[str]):
                return None
            values[option.name] = environ[option.envvar]
        else:
            values[option.name] = () if option.repeatable else option.default
    return values
