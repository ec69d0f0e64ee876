"""The ``comfy-cassettes`` commands as a typer app: parses options, prints help and errors, and delegates to the
package's public functions (cli.py starts a plain ``serve`` without it)."""

from __future__ import annotations

from inspect import Parameter, Signature
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import serve_command
from .errors import ComfyCassettesError
from .replay.options import BY_NAME, OPTIONS
from .replay.config import DEFAULT_BASE, DEFAULT_HOST, DEFAULT_PORT
from .version import __version__

app = typer.Typer(
    name="comfy-cassettes",
    help="Record real ComfyUI sessions into YAML cassettes and replay them as a live ComfyUI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# A flag's metavar: nothing, where typer 0.2x would print `<bool>` as if the flag took a value.
FLAG = ""


def _fail(exc: ComfyCassettesError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"comfy-cassettes {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", metavar=FLAG, callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Record real ComfyUI sessions into YAML cassettes and replay them as a live ComfyUI."""


def serve(**values: Any) -> None:
    """Serve the ComfyUI API (HTTP and /ws) from cassettes.

    The first line printed is 'serving URL  (pid N)'; with --port 0 the URL has the port picked.
    """
    try:
        serve_command.run(values)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None


def _serve_signature() -> Signature:
    """serve's parameters, one per row of the options table (typer reads them from the signature)."""
    cassettes = Annotated[Optional[list[Path]], typer.Argument(help="Cassette files or folders (default: the bundled cassette).")]
    parameters = [Parameter("cassettes", Parameter.KEYWORD_ONLY, default=None, annotation=cassettes)]
    for option in OPTIONS:
        kind, default = _cli_type(option.type), option.default
        if isinstance(default, tuple):
            default = None  # a repeatable option: typer's list, None when not given
        info = typer.Option(option.cli_flag, help=option.help, metavar=FLAG if kind is bool else option.metavar, envvar=option.envvar, show_envvar=option.envvar is not None,
                            show_default=option.shown_default if option.shown_default is not None else True)
        parameters.append(Parameter(option.name, Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info]))
    return Signature(parameters, return_annotation=None)


def _cli_type(kind: Any) -> Any:
    """A ReplayConfig type as typer parses it: ``X | None`` as Optional[X], a tuple as an optional list."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return Optional[args[0]]
    if typing.get_origin(kind) in (tuple, list):
        return Optional[list[args[0]]]  # type: ignore[valid-type]
    return kind


serve.__signature__ = _serve_signature()  # type: ignore[attr-defined]
app.command()(serve)


@app.command()
def openapi(
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the document here (default: print it).")] = None,
) -> None:
    """Print (or write) the OpenAPI 3.1 document: the admin API and the ComfyUI routes the replay serves."""
    from .contract.openapi import openapi_document
    from .cassette.storage import atomic_write

    text = json.dumps(openapi_document(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(output, text.encode(), overwrite=True)
        typer.echo(f"wrote {output}")


@app.command("import")
def import_(
    sources: Annotated[list[Path], typer.Argument(help="HAR files exported from a browser or a recorder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Cassette to write (blobs go beside it).")],
    force: Annotated[bool, typer.Option("--force", metavar=FLAG, help="Replace an existing cassette.")] = False,
    scrub_header: Annotated[Optional[list[str]], typer.Option(help="Another header to remove (repeatable); Authorization, Cookie, Set-Cookie and API-key headers always are.")] = None,
    scrub_key: Annotated[Optional[list[str]], typer.Option(help="Another JSON key whose value to blank (repeatable); api_key_comfy_org and the like always are.")] = None,
    comfyui_version: Annotated[Optional[str], typer.Option(help="The ComfyUI version the sessions were recorded from (default: their /system_stats, else what their traffic shows).")] = None,
) -> None:
    """Turn HTTP Archives (with WebSocket frames) into one templated cassette, secrets scrubbed."""
    from .cassette.load import load
    from .importer import import_har
    from .record.scrub import Scrubber

    try:
        path = import_har(sources, output, overwrite=force, scrubber=Scrubber().with_extra(scrub_header or (), scrub_key or ()),
                          comfyui_version=comfyui_version)
        cassette = load(path)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {path}: {len(cassette.interactions)} interactions, {len(cassette.jobs)} jobs, {_version_line(cassette.recorded)}")


def _version_line(recorded: dict[str, Any]) -> str:
    """"ComfyUI 0.8.0 (inferred from its traffic)": the cassette's version and where it came from."""
    origin = {"system_stats": "from /system_stats", "traffic": "inferred from its traffic", "given": "as given"}
    source = origin.get(str(recorded.get("comfyui_version_from")), "")
    version = recorded.get("comfyui_version")
    if version is None:
        return "ComfyUI ? (nothing in its traffic tells; replayed as 0.3.64, set it with --comfyui-version)"
    return f"ComfyUI {version}" + (f" ({source})" if source else "")


@app.command()
def inspect(
    cassette: Annotated[Path, typer.Argument(help="Cassette to summarise.")],
    base: Annotated[Path, typer.Option(help="The cassette `serve` takes the routes this one lacks from.", show_default=BY_NAME["base"].shown_default)] = DEFAULT_BASE,
    no_base: Annotated[bool, typer.Option("--no-base", metavar=FLAG, help="Serve with no base cassette.")] = False,
) -> None:
    """Validate a cassette and list its jobs, its recorded requests and what `serve` answers from the base."""
    from rich.console import Console
    from rich.table import Table

    from .cassette.load import load
    from .comfy.profiles import profile
    from .replay.config import bundled_base
    from .replay.sim.interactions import InteractionIndex

    try:
        loaded = load(cassette)
        if base == DEFAULT_BASE:  # not given: the one `serve` takes for this cassette's version
            base = bundled_base(profile(loaded.comfyui_version).version)
        from_base = [] if no_base else InteractionIndex([loaded], load(base)).from_base()
    except ComfyCassettesError as exc:
        raise _fail(exc) from None
    console = Console()
    recorded = loaded.recorded
    console.print(f"[bold]{cassette}[/bold]  {_version_line(recorded)}  recorded {recorded.get('at') or '?'}", soft_wrap=True)
    jobs = Table("#", "nodes", "status", "outputs", "cached", "events", title="jobs")
    for i, job in enumerate(loaded.jobs):
        classes = " → ".join(str(n.get("class_type")) for n in job.workflow.values() if isinstance(n, dict))
        jobs.add_row(str(i), classes, job.status, str(len(job.outputs)), str(len(job.cached)), str(len(job.ws)))
    console.print(jobs)
    requests = Table("method", "uri", "status", title="interactions")
    for item in loaded.interactions:
        requests.add_row(item.method, item.uri, str(item.status))
    console.print(requests)
    if from_base:
        console.print(f"answered from the base {base.name} (this cassette never recorded them): " + ", ".join(from_base), soft_wrap=True)


@app.command()
def record(
    output: Annotated[Path, typer.Option("-o", "--output", help="Cassette to write (blobs go beside it).")],
    workflows: Annotated[Optional[list[Path]], typer.Argument(help="API-format workflow JSON (ComfyUI: Workflow → Export (API)) or a PNG ComfyUI saved; several run in order.")] = None,
    server: Annotated[str, typer.Option(help="The ComfyUI to record from.")] = "http://127.0.0.1:8188",
    repeat: Annotated[int, typer.Option(help="Run the workflow this many times (cached re-runs, counter progression).")] = 1,
    upload: Annotated[Optional[list[Path]], typer.Option(help="Image to POST /upload/image first (repeatable), for LoadImage.")] = None,
    with_object_info: Annotated[bool, typer.Option("--with-object-info", metavar=FLAG, help="Also record /object_info (lets replay validate prompts).")] = False,
    record_mode: Annotated[str, typer.Option(help="once | new_episodes | all | none: what to do when the cassette exists.")] = "once",
    scrub_header: Annotated[Optional[list[str]], typer.Option(help="Another header to remove (repeatable); Authorization, Cookie, Set-Cookie and API-key headers always are.")] = None,
    scrub_key: Annotated[Optional[list[str]], typer.Option(help="Another JSON key whose value to blank (repeatable); api_key_comfy_org and the like always are.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one job.")] = 600.0,
    proxy: Annotated[bool, typer.Option("--proxy", metavar=FLAG, help="Run a recording reverse proxy instead of a workflow.")] = False,
    target: Annotated[str, typer.Option(help="With --proxy: the ComfyUI to forward to.")] = "http://127.0.0.1:8188",
    host: Annotated[str, typer.Option(help="With --proxy: address to bind.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="With --proxy: port to listen on (0 picks a free one).")] = DEFAULT_PORT,
    record_static: Annotated[bool, typer.Option("--record-static", metavar=FLAG, help="With --proxy: also record the web page's JS/CSS/fonts.")] = False,
    ready_file: Annotated[Optional[Path], typer.Option(help="With --proxy: once listening, write {\"url\", \"port\", \"pid\"} to this file (atomically), as serve does, for a script that starts it on --port 0.")] = None,
) -> None:
    """Record a live ComfyUI into a cassette: run a workflow, or proxy any client (--proxy)."""
    from .record.scrub import Scrubber

    scrubber = Scrubber().with_extra(scrub_header or (), scrub_key or ())
    try:
        if proxy:
            _record_proxy(target=target, output=output, host=host, port=port, mode=record_mode, scrubber=scrubber, record_static=record_static,
                          ready_file=ready_file)
        else:
            _record_workflow(workflows=workflows or [], output=output, server=server, repeat=repeat, uploads=upload or [],
                             with_object_info=with_object_info, mode=record_mode, scrubber=scrubber, timeout=timeout)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None


def _record_workflow(*, workflows: list[Path], output: Path, server: str, repeat: int, uploads: list[Path],
                     with_object_info: bool, mode: str, scrubber: Any, timeout: float) -> None:
    from .errors import ConfigError
    from .record.live import RichProgress, load_workflow, record_workflow

    if not workflows:
        raise ConfigError("give a WORKFLOW.json to run, or --proxy to record whatever clients send")
    graphs = [load_workflow(path) for path in workflows]
    result = record_workflow(graphs, server, output, repeat=repeat, uploads=uploads, with_object_info=with_object_info,
                             mode=mode, scrubber=scrubber, timeout=timeout, progress=RichProgress())
    if not result.recorded:
        typer.echo(result.message)
        return
    typer.echo(f"wrote {result.path}: {result.jobs} job(s) ({', '.join(result.statuses)}), {result.interactions} interactions, "
               f"ComfyUI {result.comfyui_version or '?'}")


def _record_proxy(*, target: str, output: Path, host: str, port: int, mode: str, scrubber: Any, record_static: bool,
                  ready_file: Path | None) -> None:
    from .record.proxy import SAVE_PATH, RecordingProxy, run_proxy
    from .replay.config import check_file_target
    from .serve_command import write_ready_file

    if ready_file is not None:
        check_file_target("--ready-file", ready_file)  # before binding, as serve does
    recorder = RecordingProxy(target, output, mode=mode, scrubber=scrubber, record_static=record_static)

    def ready(url: str) -> None:
        if ready_file is not None:
            write_ready_file(ready_file, url, int(url.rsplit(":", 1)[1]))
        typer.echo(f"recording proxy listening on {url} -> {recorder.target}", err=False)
        typer.echo(f"Ctrl-C (or POST {url}{SAVE_PATH}) saves {output}")

    result = run_proxy(recorder, host=host, port=port, on_ready=ready)
    if result.error:
        where = f"the recorded session was saved to {result.path} instead" if result.path else "the recorded session is lost"
        typer.echo(f"error: {result.error}; {where}", err=True)
        raise typer.Exit(code=1)
    if result.path is None:
        typer.echo(f"{result.reason}; {output} left as it was")
    else:
        typer.echo(f"wrote {result.path}: {result.jobs} job(s), {result.interactions} interactions")


@app.command()
def verify(
    cassette: Annotated[Path, typer.Argument(help="Cassette whose jobs to re-run.")],
    server: Annotated[str, typer.Option(help="The live ComfyUI to compare with (a freshly started one avoids cached runs).")] = "http://127.0.0.1:8188",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one job.")] = 300.0,
) -> None:
    """Re-run a cassette against a live server and show every difference in response structure (exit 1 if any)."""
    from .verify import render_report, verify as run_verify

    try:
        report = run_verify(cassette, server, timeout=timeout)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None
    render_report(report)
    if not report.ok:
        raise typer.Exit(code=1)
