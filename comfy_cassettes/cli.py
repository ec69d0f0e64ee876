"""The ``comfy-cassettes`` command line: parses options and delegates to the package's public functions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import ComfyCassettesError
from .replay.config import DEFAULT_CASSETTE, DEFAULT_HOST, DEFAULT_PORT, TIMING_MODES, ReplayConfig

app = typer.Typer(
    name="comfy-cassettes",
    help="Record real ComfyUI sessions into YAML cassettes and replay them as a live ComfyUI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(exc: ComfyCassettesError) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@app.command()
def serve(
    cassettes: Annotated[Optional[list[Path]], typer.Argument(help="Cassette files or folders (default: the bundled cassette).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = DEFAULT_PORT,
    output_dir: Annotated[Optional[Path], typer.Option(help="ComfyUI output folder (default: a temporary folder).")] = None,
    input_dir: Annotated[Optional[Path], typer.Option(help="ComfyUI input folder, for /upload/image and LoadImage.")] = None,
    temp_dir: Annotated[Optional[Path], typer.Option(help="ComfyUI temp folder, for PreviewImage outputs.")] = None,
    source_image: Annotated[Optional[Path], typer.Option(help="Serve this image for every output instead of the recorded ones.")] = None,
    disable_static_return: Annotated[bool, typer.Option("--disable-static-return", help="Dynamic mode: copy each job's outputs into --output-dir under ComfyUI names.")] = False,
    timing: Annotated[str, typer.Option(help=f"{' or '.join(TIMING_MODES)}: answer at once, or with the cassette's delays.")] = "instant",
    speed: Annotated[float, typer.Option(help="With --timing recorded: divide recorded delays by this factor.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for generated prompt_ids and preview names.")] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the ComfyUI API (HTTP and /ws) from cassettes."""
    from .replay.server import ReplayServer

    config = ReplayConfig(
        cassettes=tuple(cassettes or (DEFAULT_CASSETTE,)), host=host, port=port, output_dir=output_dir,
        input_dir=input_dir, temp_dir=temp_dir, source_image=source_image, dynamic=disable_static_return,
        timing=timing, speed=speed, seed=seed,
    )
    try:
        server = ReplayServer(config, log_level=log_level)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None
    engine = server.engine
    mode = "dynamic" if engine.config.dynamic else "static"
    typer.echo(f"comfy-cassettes serving {len(engine.cassettes)} cassette(s), {len(engine.jobs)} recorded job(s), {mode} mode, {engine.config.timing} timing")
    typer.echo(f"output folder: {engine.roots.output}")
    typer.echo(f"listening on {server.url}  (Ctrl-C to stop)", err=False)
    server.run()
    typer.echo("stopped")


@app.command("import")
def import_(
    sources: Annotated[list[Path], typer.Argument(help="HAR files exported from a browser or a recorder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Cassette to write (blobs go beside it).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing cassette.")] = False,
) -> None:
    """Turn HTTP Archives (with WebSocket frames) into one templated cassette."""
    from .cassette import load
    from .importer import import_har

    try:
        path = import_har(sources, output, overwrite=force)
        cassette = load(path)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {path}: {len(cassette.interactions)} interactions, {len(cassette.jobs)} jobs")


@app.command()
def inspect(cassette: Annotated[Path, typer.Argument(help="Cassette to summarise.")]) -> None:
    """Validate a cassette and list its jobs and recorded requests."""
    from rich.console import Console
    from rich.table import Table

    from .cassette import load

    try:
        loaded = load(cassette)
    except ComfyCassettesError as exc:
        raise _fail(exc) from None
    console = Console()
    recorded = loaded.recorded
    console.print(f"[bold]{cassette}[/bold]  ComfyUI {recorded.get('comfyui_version') or '?'}  recorded {recorded.get('at') or '?'}")
    jobs = Table("#", "nodes", "status", "outputs", "cached", "events", title="jobs")
    for i, job in enumerate(loaded.jobs):
        classes = " → ".join(str(n.get("class_type")) for n in job.workflow.values() if isinstance(n, dict))
        jobs.add_row(str(i), classes, job.status, str(len(job.outputs)), str(len(job.cached)), str(len(job.ws)))
    console.print(jobs)
    requests = Table("method", "uri", "status", title="interactions")
    for item in loaded.interactions:
        requests.add_row(item["request"]["method"], item["request"]["uri"], str(item["response"]["status"]["code"]))
    console.print(requests)


def main() -> None:
    """Entry point of the ``comfy-cassettes`` script."""
    app()
