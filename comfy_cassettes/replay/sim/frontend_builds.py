"""The frontend build of the version a ComfyUI needs, found or fetched once: each ComfyUI release pins one
``comfyui-frontend-package`` (requirements.txt), and one Python environment holds only one installed, so the
replay keeps the others' static folders in the user cache, fetched from the package index on first use (as
ComfyUI's own FrontendManager fetches a ``--front-end-version`` it does not have).

A version that cannot be had (offline, no such release) is not an error: the page of the installed package is
served instead, and :attr:`ServedBuild.note` says so in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import NamedTuple

from ...comfy.frontend import FRONTEND, WebPackage
from ...errors import ComfyCassettesError

__all__ = ["FrontendFetchError", "ServedBuild", "build_for", "cache_folder", "cached_build", "fetch_build", "fetch_hint"]

FETCH_TIMEOUT_S = 600  # pip's own network timeout is shorter (see _pip_download); this bounds a stalled pip
_lock = threading.Lock()  # one fetch at a time in a process; processes race safely through one rename
_served: dict[str, ServedBuild] = {}  # what each wanted version resolved to in this process


class FrontendFetchError(ComfyCassettesError):
    """A frontend version could not be fetched; the message is one line naming the requirement and the cause."""


class ServedBuild(NamedTuple):
    """The frontend build served for a wanted version: its static folder and version (None: no frontend at all),
    and one line when it is not the version wanted."""

    wanted: str
    folder: Path | None
    version: str | None
    note: str | None = None


def cache_folder(version: str, package: WebPackage = FRONTEND) -> Path:
    """Where a fetched build is kept: ``$XDG_CACHE_HOME/comfy-cassettes/frontend/<version>/static``
    (``~/.cache`` without XDG_CACHE_HOME)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "comfy-cassettes" / "frontend" / version / package.folder


def cached_build(version: str, package: WebPackage = FRONTEND) -> Path | None:
    """The cached static folder of ``version``, if it was fetched before."""
    folder = cache_folder(version, package)
    return folder if (folder / "index.html").is_file() else None


def fetch_hint(version: str, package: WebPackage = FRONTEND) -> str:
    """The commands that fetch a version by hand (the folder they leave is a ``--front-end-root``)."""
    requirement = f"{package.distribution}=={version}"
    return (f"python -m pip download --no-deps --only-binary=:all: -d /tmp/fe {requirement} && "
            f"unzip -q /tmp/fe/*.whl '{package.module}/{package.folder}/*' -d /tmp/fe")


def fetch_build(version: str, package: WebPackage = FRONTEND) -> Path:
    """The static folder of ``version``: cached, else fetched into the cache (pip download of its wheel, the
    static folder moved into place in one rename, so concurrent fetches never leave half a build)."""
    found = cached_build(version, package)
    if found is not None:
        return found
    build = cache_folder(version, package)
    requirement = f"{package.distribution}=={version}"
    try:
        build.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=build.parent, prefix=".fetch-") as tmp:
            wheel = _pip_download(requirement, Path(tmp))
            prefix = f"{package.module}/{package.folder}/"
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(tmp, members=[name for name in archive.namelist() if name.startswith(prefix)])
            if not (Path(tmp) / prefix / "index.html").is_file():
                raise FrontendFetchError(f"could not fetch {requirement}: its wheel has no {prefix}index.html")
            try:
                os.rename(Path(tmp) / prefix, build)
            except OSError:
                if cached_build(version, package) is None:  # else another process was first
                    raise
    except (OSError, zipfile.BadZipFile) as exc:
        raise FrontendFetchError(f"could not fetch {requirement}: {exc}") from None
    return build


def _pip_download(requirement: str, into: Path) -> Path:
    """The wheel of ``requirement``, downloaded by this Python's pip (its index and proxy settings apply)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "--retries", "1", "--timeout", "15", "-d", str(into), requirement]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=FETCH_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        lines = [line.strip() for line in exc.stderr.decode(errors="replace").splitlines() if line.strip()]
        cause = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else f"pip exited {exc.returncode}")
        raise FrontendFetchError(f"could not fetch {requirement}: {cause}") from None
    except subprocess.TimeoutExpired:
        raise FrontendFetchError(f"could not fetch {requirement}: pip took over {FETCH_TIMEOUT_S} s") from None
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise FrontendFetchError(f"could not fetch {requirement}: pip downloaded no wheel")
    return wheels[0]


def build_for(wanted: str) -> ServedBuild:
    """The build to serve for a wanted frontend version: the installed package when it is that version, else the
    cached or fetched build; when neither can be had, the installed package with a one-line note. Resolved once
    a process (a failed fetch is not retried by every request)."""
    with _lock:
        served = _served.get(wanted)
        if served is None:
            served = _served[wanted] = _resolve(wanted)
        return served


def _resolve(wanted: str) -> ServedBuild:
    installed, installed_version = FRONTEND.installed(), FRONTEND.installed_version()
    if installed is not None and installed_version == wanted:
        return ServedBuild(wanted, installed, wanted)
    try:
        return ServedBuild(wanted, fetch_build(wanted), wanted)
    except FrontendFetchError as exc:
        cause = str(exc)
    if installed is None:
        return ServedBuild(wanted, None, None, f"{cause}; no frontend installed to serve instead")
    return ServedBuild(wanted, installed, installed_version, f"{cause}; serving the installed {installed_version} instead")
