"""The replay server's options, each described once: its help text and where a user sets it (``serve``'s command
line, the pytest command line and ini file, the ``comfy_cassette`` marker). Their defaults are ReplayConfig's.

The CLI, the pytest plugin and the docs read this table; adding an option is one row here and one field in
ReplayConfig.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .replay.config import ADMIN_TOKEN_ENV, PREVIEW_METHODS, TIMINGS, ReplayConfig


@dataclass(frozen=True)
class Option:
    """One option. ``name`` is its ReplayConfig field (or, with ``config=False``, a ``serve``-only setting)."""

    name: str
    help: str
    flag: str = ""  # serve's flag (default: --name-with-dashes); "" with cli=False: not on serve's command line
    cli: bool = True
    pytest_flag: str | None = None  # the pytest command-line flag, when the fixtures take it from there
    ini: str | None = None  # the ini key, when the fixtures take it from an ini file
    marker: bool = False  # a keyword of @pytest.mark.comfy_cassette
    metavar: str | None = None
    envvar: str | None = None
    config: bool = True  # a ReplayConfig field
    default: Any = None  # a serve-only option's default (a config option's is ReplayConfig's)
    kind: Any = None  # a serve-only option's type
    shown_default: str | None = None  # what --help says the default is, when the value itself says it badly

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def config_default(self) -> Any:
        if not self.config:
            return self.default
        field = next(f for f in dataclasses.fields(ReplayConfig) if f.name == self.name)
        return field.default

    @property
    def type(self) -> Any:
        """The Python type the option's value has where it is parsed (ReplayConfig's, or ``kind``)."""
        return typing.get_type_hints(ReplayConfig)[self.name] if self.config else self.kind


OPTIONS: tuple[Option, ...] = (
    Option("host", "Address to bind."),
    Option("port", "Port to listen on (0 picks a free one)."),
    Option("output_dir", "ComfyUI output folder (default: a temporary folder)."),
    Option("input_dir", "ComfyUI input folder, for /upload/image and LoadImage."),
    Option("temp_dir", "ComfyUI temp folder, for PreviewImage outputs."),
    Option("user_dir", "The web page's user folder: settings, workflows (default: a temporary folder; the admin reset restores it)."),
    Option("front_end_root", "Serve this frontend build at / instead of the one the ComfyUI version requires (or the page the "
           "cassette recorded)."),
    Option("source_image", "Serve this image for every output instead of the recorded ones.",
           pytest_flag="--comfy-source-image", ini="comfy_cassettes_source_image", metavar="PATH"),
    Option("dynamic", "Dynamic mode: copy each job's outputs into the output folder under ComfyUI names (ComfyUI's own file "
           "behaviour; the default static mode writes nothing and serves the recorded or source image).",
           flag="--disable-static-return", marker=True),
    Option("timing", "How jobs are paced: " + "; ".join(f"{name}: {text}" for name, text in TIMINGS.items()) + ".",
           pytest_flag="--comfy-timing", ini="comfy_cassettes_timing", metavar="MODE", marker=True),
    Option("speed", "With timing recorded: divide recorded delays by this factor.", marker=True),
    Option("seed", "Seed for generated prompt_ids and preview names.", pytest_flag="--comfy-seed", ini="comfy_cassettes_seed",
           metavar="N", marker=True),
    Option("models", "Declare a model file as FOLDER/NAME, e.g. checkpoints/v1-5-pruned-emaonly.safetensors (repeatable): listed "
           "where ComfyUI lists that folder, accepted by validation.", flag="--model", pytest_flag="--comfy-model",
           ini="comfy_cassettes_models", metavar="FOLDER/NAME", marker=True),
    Option("preview_method", f"Sampler previews like ComfyUI's --preview-method: {', '.join(PREVIEW_METHODS)} (none: no preview frames).",
           pytest_flag="--comfy-preview-method", ini="comfy_cassettes_preview_method", metavar="METHOD", marker=True),
    Option("preview_size", "Largest side of a preview image, like ComfyUI's --preview-size.", pytest_flag="--comfy-preview-size",
           ini="comfy_cassettes_preview_size", metavar="PIXELS", marker=True),
    Option("comfyui_version", "The ComfyUI version to be, any from 0.3.64 to 0.38.1 (default: the version the cassettes were recorded from).",
           pytest_flag="--comfy-version",
           ini="comfy_cassettes_comfyui_version", metavar="VERSION", marker=True),
    Option("assets", "ComfyUI's assets system on (--enable-assets; ComfyUI 0.38): asset ids on uploads and outputs, /api/assets.",
           marker=True),
    Option("base", "A cassette whose informational answers (/object_info, /system_stats, /models...) serve the routes yours never "
           "recorded.", shown_default="the bundled snapshots.yaml"),
    Option("recorded_inputs", "Start with the input files the recording server had (its uploads, the images its jobs loaded); "
           "--no-recorded-inputs: an empty input folder.", flag="--recorded-inputs/--no-recorded-inputs"),
    Option("no_base", "Answer only what your cassettes recorded (no base).", config=False, default=False, kind=bool),
    Option("log_level", "uvicorn log level.", config=False, default="warning", kind=str),
    Option("fault", "ROUTE:STATUS[:COUNT], e.g. /prompt:503:2 (COUNT * = always; repeatable).", config=False, kind=list[str]),
    Option("delay", "ROUTE:SECONDS or ROUTE:MIN-MAX, e.g. /history/*:0.1-0.3 (repeatable).", config=False, kind=list[str]),
    Option("admin_token", "Token the admin API (/__cassettes__) requires as 'Authorization: Bearer TOKEN'. Bound to anything but "
           "loopback, one is generated and printed when not given.", envvar=ADMIN_TOKEN_ENV),
    Option("ready_file", "Once serving, write {\"url\", \"port\", \"pid\"} to this file (atomically), for a test harness in any "
           "language.", config=False, kind=Optional[Path]),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
MARKER_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.marker)
PYTEST_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.pytest_flag or o.ini)
