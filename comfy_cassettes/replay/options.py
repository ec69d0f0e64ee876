"""The replay server's options, each described once: its default, type, help text and where a user sets it
(``serve``'s command line, the pytest command line and ini file, the ``comfy_cassette`` marker).

ReplayConfig takes its defaults from here; the CLI, the pytest plugin and the docs read the rest. Adding an option
is one row here and one field in ReplayConfig. The pytest plugin reads this table in every test run of every
project that installs the package, so it imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ADMIN_TOKEN_ENV = "COMFY_CASSETTES_ADMIN_TOKEN"
# How a replay paces a job (docs/serve.md "Timing"). The faithful ones start a job only once its POST /prompt answer
# has been sent and never end it sooner than real ComfyUI ended any job (comfy/latency.py).
TIMINGS = {
    "faithful": "like the recorded ComfyUI: each job after its POST answer, at its recorded pace (the default of serve)",
    "floor": "as quick as real ComfyUI ever was: each job after its POST answer, over no sooner than 0.6 ms after it "
             "while a socket receives its messages (the default of the pytest fixtures)",
    "instant": "zero latency: each job at once, its events back to back, maybe before the client has its POST answer",
    "recorded": "the cassette's recorded delays divided by --speed",
}
TIMING_MODES = tuple(TIMINGS)
# ComfyUI's --preview-method (cli_args.py); in 0.3.64 "auto", and "taesd" without its decoder, mean latent2rgb.
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8189
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "cassettes"
DEFAULT_CASSETTE = BUNDLED_DIR / "comfyui.yaml"
# The bundled bases: a real ComfyUI's informational answers, for the routes a session cassette never recorded, by
# the version each was recorded from (its cassette says the same). Without --base a replay takes the newest not
# newer than the ComfyUI it serves, the oldest for an older one (config.bundled_base).
BUNDLED_BASES = {"0.3.64": BUNDLED_DIR / "snapshots.yaml", "0.8.0": BUNDLED_DIR / "bases" / "comfyui-0.8.0.yaml"}
# --base when not given: stands for the bundled base of the version served.
DEFAULT_BASE = BUNDLED_BASES["0.3.64"]


@dataclass(frozen=True)
class Option:
    """One option. ``name`` is its ReplayConfig field (or, with ``config=False``, a ``serve``-only setting)."""

    name: str
    default: Any
    help: str
    kind: Any = None  # its type, when the default does not say it (None, a tuple)
    flag: str = ""  # serve's flag (default: --name-with-dashes)
    pytest_flag: str | None = None  # the pytest command-line flag, when the fixtures take it from there
    ini: str | None = None  # the ini key, when the fixtures take it from an ini file
    marker: bool = False  # a keyword of @pytest.mark.comfy_cassette
    metavar: str | None = None
    envvar: str | None = None
    config: bool = True  # a ReplayConfig field
    shown_default: str | None = None  # what --help says the default is, when the value itself says it badly
    fixture_default: Any = None  # the pytest fixtures' default, when it is not serve's

    @property
    def fixture_value(self) -> Any:
        """The default a comfy fixture's server takes."""
        return self.default if self.fixture_default is None else self.fixture_default

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def type(self) -> Any:
        return self.kind if self.kind is not None else type(self.default)

    @property
    def repeatable(self) -> bool:
        return isinstance(self.default, tuple) or self.kind in (tuple[str, ...], list[str])


OPTIONS: tuple[Option, ...] = (
    Option("host", DEFAULT_HOST, "Address to bind."),
    Option("port", DEFAULT_PORT, "Port to listen on (0 picks a free one)."),
    Option("output_dir", None, "ComfyUI output folder (default: a temporary folder).", Optional[Path]),
    Option("input_dir", None, "ComfyUI input folder, for /upload/image and LoadImage.", Optional[Path]),
    Option("temp_dir", None, "ComfyUI temp folder, for PreviewImage outputs.", Optional[Path]),
    Option("user_dir", None, "The web page's user folder: settings, workflows (default: a temporary folder; the admin reset "
           "restores it).", Optional[Path]),
    Option("front_end_root", None, "Serve this frontend build at / instead of the one the ComfyUI version requires (or the "
           "page the cassette recorded).", Optional[Path]),
    Option("source_image", None, "Serve this image for every output instead of the recorded ones.", Optional[Path],
           pytest_flag="--comfy-source-image", ini="comfy_cassettes_source_image", metavar="PATH"),
    Option("dynamic", False, "Dynamic mode: copy each job's outputs into the output folder under ComfyUI names (ComfyUI's "
           "own file behaviour; the default static mode writes nothing and serves the recorded or source image).",
           flag="--disable-static-return", marker=True),
    Option("timing", "faithful", "How jobs are paced: " + "; ".join(f"{name}: {text}" for name, text in TIMINGS.items()) + ".",
           pytest_flag="--comfy-timing", ini="comfy_cassettes_timing", metavar="MODE", marker=True, fixture_default="floor"),
    Option("speed", 1.0, "With timing recorded: divide recorded delays by this factor.", marker=True),
    Option("seed", 0, "Seed for generated prompt_ids and preview names.", pytest_flag="--comfy-seed", ini="comfy_cassettes_seed",
           metavar="N", marker=True),
    Option("models", (), "Declare a model file as FOLDER/NAME, e.g. checkpoints/v1-5-pruned-emaonly.safetensors (repeatable): "
           "listed where ComfyUI lists that folder, accepted by validation.", tuple[str, ...], flag="--model",
           pytest_flag="--comfy-model", ini="comfy_cassettes_models", metavar="FOLDER/NAME", marker=True),
    Option("preview_method", "none", f"Sampler previews like ComfyUI's --preview-method: {', '.join(PREVIEW_METHODS)} (none: "
           "no preview frames).", pytest_flag="--comfy-preview-method", ini="comfy_cassettes_preview_method", metavar="METHOD",
           marker=True),
    Option("preview_size", 512, "Largest side of a preview image, like ComfyUI's --preview-size.", pytest_flag="--comfy-preview-size",
           ini="comfy_cassettes_preview_size", metavar="PIXELS", marker=True),
    Option("comfyui_version", None, "The ComfyUI version to be, e.g. 0.3.64 or 0.38 (default: the version the cassettes were "
           "recorded from).", Optional[str], pytest_flag="--comfy-version", ini="comfy_cassettes_comfyui_version",
           metavar="VERSION", marker=True),
    Option("assets", False, "ComfyUI's assets system on (--enable-assets; ComfyUI 0.38): asset ids on uploads and outputs, "
           "/api/assets.", marker=True),
    Option("recorded_inputs", True, "Start with the input files the recording server had (its uploads, the images its jobs "
           "loaded); --no-recorded-inputs: an empty input folder.", flag="--recorded-inputs/--no-recorded-inputs"),
    Option("base", DEFAULT_BASE, "A cassette whose informational answers (/object_info, /system_stats, /models...) serve the "
           "routes yours never recorded.", Optional[Path],
           shown_default=f"the bundled base of the version served: ComfyUI {' or '.join(BUNDLED_BASES)}, the newest not newer"),
    Option("admin_token", None, "Token the admin API (/__cassettes__) requires as 'Authorization: Bearer TOKEN'. Bound to "
           "anything but loopback, one is generated and printed when not given.", Optional[str], envvar=ADMIN_TOKEN_ENV),
    Option("no_base", False, "Answer only what your cassettes recorded (no base).", config=False),
    Option("log_level", "warning", "uvicorn log level.", config=False),
    Option("fault", None, "ROUTE:STATUS[:COUNT], e.g. /prompt:503:2 (COUNT * = always; repeatable).", list[str], config=False),
    Option("delay", None, "ROUTE:SECONDS or ROUTE:MIN-MAX, e.g. /history/*:0.1-0.3 (repeatable).", list[str], config=False),
    Option("ready_file", None, "Once serving, write {\"url\", \"port\", \"pid\"} to this file (atomically), for a test harness "
           "in any language.", Optional[Path], config=False),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
MARKER_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.marker)
PYTEST_OPTIONS: tuple[Option, ...] = tuple(o for o in OPTIONS if o.pytest_flag or o.ini)


def default(name: str) -> Any:
    """The default of a ReplayConfig field."""
    return BY_NAME[name].default
