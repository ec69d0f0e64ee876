"""ComfyUI's folders and names (folder_paths.py): output names by SaveImage's rule, annotated input paths.

The counter rule, the ``%width%``-style variables and the ``name.png [output]`` annotations are ComfyUI's;
every layer that names or finds a file (replay, vcr, verify) uses this one copy.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FileRoots", "OutputName", "OutputNamer", "annotated_path", "dir_for_type", "split_annotation"]

# PreviewImage's alphabet, typo included: no "w", "p" twice (nodes.py, PreviewImage.__init__).
TEMP_ALPHABET = "abcdefghijklmnopqrstupvxyz"


@dataclass(frozen=True)
class FileRoots:
    """The three directories ComfyUI exposes through /view and /upload/image (absolute paths)."""

    output: Path
    input: Path
    temp: Path


@dataclass(frozen=True)
class OutputName:
    """One entry of an output node's `images` list, e.g. `OutputName("ComfyUI_00001_.png", "", "output")`."""

    filename: str
    subfolder: str
    type: str


class OutputNamer:
    """Allocates output names exactly as ComfyUI's SaveImage and PreviewImage do; thread-safe.

    The counter is 1 + the highest counter among the folder's files named `<basename>_<digits>_...`
    (folder_paths.get_save_image_path). Names handed out earlier count as if they were on disk,
    so a server that writes nothing (static mode) still never hands out the same name twice.
    Creating the folder and writing the file is the caller's job.

    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> roots = FileRoots(*(Path(folder.name, name) for name in ("output", "input", "temp")))
    >>> namer = OutputNamer(roots, rng=random.Random(0))
    >>> namer.save_names("gen/job_7", width=64, height=64, count=1)
    [OutputName(filename='job_7_00001_.png', subfolder='gen', type='output')]
    >>> namer.save_names("gen/job_7", width=64, height=64, count=1)[0].filename  # not on disk, yet not reused
    'job_7_00002_.png'
    >>> folder.cleanup()
    """

    def __init__(self, roots: FileRoots, *, rng: random.Random) -> None:
        self._roots = roots
        self._rng = rng
        self._lock = threading.Lock()
        # folder -> what a listing of it says while its mtime_ns stays the same: listing and parsing a folder of
        # thousands of outputs for every job made naming grow with the folder. Files the replay writes itself
        # are added (wrote()), so a server writing every output (dynamic mode) still lists each folder once.
        self._listings: dict[str, _Listing] = {}
        self._next: dict[tuple[str, str], int] = {}
        # Each named folder's text and whether it is absolute (asked per name; a Path hashes in Python).
        self._root_texts = {"output": (str(roots.output), roots.output.is_absolute()), "temp": (str(roots.temp), roots.temp.is_absolute())}
        # settle_on's loop and its thread; the folders found current during the loop's running callback.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._checked: set[str] = set()
        self._forgetting = False  # a callback that forgets them is scheduled

    def settle_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Name on ``loop``'s thread looking at each folder once per callback of the loop, not once per name.

        A callback is a stretch of the loop's work nothing else on the loop interrupts: the worker naming the jobs
        of a pass. A folder listed current in it stays so until the callback ends, but for another process writing
        into it at that very moment, a race the real server runs too: ComfyUI lists the folder as it saves, and
        either order may win. Whatever a client did before its prompt reached the loop (a file written, an upload,
        a reset) comes first: the callback that forgets the folders is scheduled before the worker can yield to any
        of it. None: look at the folder for every name (another thread, a server without a loop)."""
        with self._lock:
            self._loop, self._loop_thread = loop, threading.get_ident() if loop is not None else 0
            self._forget()

    def save_names(
        self, filename_prefix: str, *, width: int, height: int, count: int
    ) -> list[OutputName]:
        """Names for `count` images saved by SaveImage with `filename_prefix`.

        Raises ValueError with ComfyUI's message when the prefix leads outside the output directory.
        """
        return self._allocate("output", filename_prefix, width, height, count)

    def temp_names(
        self, *, width: int, height: int, count: int, prefix: str = "ComfyUI"
    ) -> list[OutputName]:
        """Names for `count` images of one PreviewImage run: `ComfyUI_temp_<5 letters>_00001_.png`, ..."""
        with self._lock:
            letters = "".join(self._rng.choice(TEMP_ALPHABET) for _ in range(5))
        return self._allocate("temp", f"{prefix}_temp_{letters}", width, height, count)

    def reset(self, rng: random.Random | None = None) -> None:
        """Forget the names handed out so far (and draw temp names from ``rng`` when given); files on disk still
        count."""
        with self._lock:
            if rng is not None:
                self._rng = rng
            self._listings.clear()
            self._next.clear()
            self._checked.clear()

    def wrote(self, path: str | Path, before: int | None = None) -> None:
        """The replay created ``path``; ``before``: its folder's mtime_ns just before (-1: the folder was new; None:
        not looked at, so a listing found current in this loop callback (settle_on) is taken as current then). A
        listing that was current then stays current with the new name, so the next name needs no rescan."""
        head, name = os.path.split(path)
        if name in ("", ".", ".."):
            folder, name = os.path.split(os.path.abspath(path))
        else:
            folder = absolute_path(head)  # (a file's name: abspath keeps it)
        try:
            after = os.stat(folder).st_mtime_ns
        except OSError:
            return
        with self._lock:
            listing = self._listings.get(folder)
            if before is None:
                current = folder in self._checked and self._loop is not None and threading.get_ident() == self._loop_thread
            else:
                current = listing is not None and listing.mtime == before
            if listing is not None and current:
                listing.add(name, after)
            else:
                self._checked.discard(folder)  # someone else changed it meanwhile: look again

    def _allocate(self, type_name: str, prefix: str, width: int, height: int, count: int) -> list[OutputName]:
        subfolder, names = self.allocate(type_name, prefix, width, height, count)
        return [OutputName(name, subfolder, type_name) for name in names]

    def allocate(self, type_name: str, prefix: str, width: int, height: int, count: int) -> tuple[str, list[str]]:
        """:meth:`save_names` (``type_name`` "output") or a PreviewImage's names with its ``prefix`` ("temp"),
        as their subfolder and file names."""
        if "%" in prefix:
            prefix = _compute_vars(prefix, width, height)
        # A relative root depends on the working directory: only an absolute one's answers are kept.
        text, absolute = self._root_texts[type_name]
        subfolder, basename, folder = (_place if absolute else _place.__wrapped__)(text, prefix)
        # %batch_num% is replaced after the counter was computed, so such files never match the basename and the
        # counter restarts at 1 on every run, overwriting (ComfyUI does this).
        per_batch = "%batch_num%" in basename
        with self._lock:
            on_loop = self._loop is not None and threading.get_ident() == self._loop_thread
            counter = max(self._disk_next(folder, basename, on_loop), self._next.get((folder, basename), 1))
            if per_batch:
                names = [f"{basename.replace('%batch_num%', str(batch))}_{counter + batch:05}_.png" for batch in range(count)]
            else:
                names = [f"{basename}_{counter + batch:05}_.png" for batch in range(count)]
                self._next[(folder, basename)] = counter + count
        return subfolder, names

    def _disk_next(self, folder: str, basename: str, on_loop: bool) -> int:
        """1 + the highest counter on disk for ``basename``, listed again only when someone else changed the folder
        (its mtime moved), looked at once per loop callback ``on_loop`` (settle_on)."""
        listing = self._listings.get(folder)
        if listing is not None and on_loop and folder in self._checked:
            return listing.next_counter(basename)
        try:
            mtime = os.stat(folder).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return 1
        if listing is None or listing.mtime != mtime:
            listing = self._listings[folder] = _Listing(mtime, _list_dir(folder))
        if on_loop and self._loop is not None:
            self._checked.add(folder)
            if not self._forgetting:
                self._forgetting = True
                self._loop.call_soon(self._forget_locked)
        return listing.next_counter(basename)

    def _forget_locked(self) -> None:
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        """The loop's callback ended: its folders may change before the next (held: the namer's lock)."""
        self._checked.clear()
        self._forgetting = False


class _Listing:
    """A folder's file names as of one mtime, and the next counter of each basename asked about."""

    def __init__(self, mtime: int, names: list[str]) -> None:
        self.mtime = mtime
        self.names = names
        self.counters: dict[str, int] = {}

    def next_counter(self, basename: str) -> int:
        if basename not in self.counters:
            self.counters[basename] = _next_counter(basename, self.names)
        return self.counters[basename]

    def add(self, name: str, mtime: int) -> None:
        self.names.append(name)
        self.mtime = mtime
        name = os.path.normcase(name)
        for basename, counter in self.counters.items():
            stem = os.path.normcase(basename) + "_"
            if name.startswith(stem):  # _next_counter's rule for one name, without its regex over a listing
                digits = name[len(stem) :].split("_", 1)[0].split("\n", 1)[0]
                try:
                    value = int(digits)
                except ValueError:
                    value = 0
                self.counters[basename] = max(counter, value + 1)


def absolute_path(path: str | Path) -> str:
    """``os.path.abspath(path)``, kept for an absolute ``path`` (a relative one's depends on the working directory):
    every file the replay writes in a folder, and every GET /view of a root, asks for it."""
    return _absolute_of(path) if os.path.isabs(path) else os.path.abspath(path)


@functools.lru_cache(maxsize=256)
def _absolute_of(path: str | Path) -> str:
    return os.path.abspath(path)


@functools.lru_cache(maxsize=256)
def _place(root: str, prefix: str) -> tuple[str, str, str]:
    """Where SaveImage puts ``prefix``'s files under ``root``: (subfolder, basename, folder); kept per prefix, since
    a server names many jobs' images with the same few. ValueError with ComfyUI's message outside ``root``."""
    normalized = os.path.normpath(prefix)
    subfolder = os.path.dirname(normalized)
    basename = os.path.basename(normalized)
    base_dir = os.path.abspath(root)
    folder = os.path.abspath(os.path.join(base_dir, subfolder))
    common = os.path.commonpath((base_dir, folder))
    if common != base_dir:
        # Same text as folder_paths.get_save_image_path; it becomes execution_error's
        # exception_message (see the error_execution capture).
        raise ValueError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}"
            f"\n         output_dir: {base_dir}"
            f"\n         commonpath: {common}"
        )
    return subfolder, basename, folder


def _compute_vars(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    replacements = (
        ("%width%", str(width)),
        ("%height%", str(height)),
        ("%year%", str(now.tm_year)),
        ("%month%", str(now.tm_mon).zfill(2)),
        ("%day%", str(now.tm_mday).zfill(2)),
        ("%hour%", str(now.tm_hour).zfill(2)),
        ("%minute%", str(now.tm_min).zfill(2)),
        ("%second%", str(now.tm_sec).zfill(2)),
    )
    for variable, value in replacements:
        prefix = prefix.replace(variable, value)
    return prefix


def _next_counter(basename: str, names: Iterable[str]) -> int:
    # get_save_image_path's map_filename: the name must start with "<basename>_" and the counter is
    # int() of what follows up to the next "_"; names that do not parse count as 0. One regex over the
    # joined listing picks the candidates, so a folder of thousands of outputs stays cheap to scan.
    pattern = re.compile(rf"^{re.escape(os.path.normcase(basename))}_([^_\n]*)", re.MULTILINE)
    highest: int | None = None
    for digits in pattern.findall("\n".join(os.path.normcase(n) for n in names)):
        try:
            value = int(digits)
        except ValueError:
            value = 0
        highest = value if highest is None else max(highest, value)
    return 1 if highest is None else highest + 1


def _list_dir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def annotated_path(roots: FileRoots, name: str, *, default: str = "input") -> Path | None:
    """The file a node input such as ``"x.png"`` or ``"sub/x.png [output]"`` names, or None when it is not a
    file inside its folder (folder_paths.get_annotated_filepath, as LoadImage's validation uses it)."""
    bare, tag = split_annotation(name)
    base = dir_for_type(roots, tag or default)
    if base is None or not bare:
        return None
    root = base.resolve()
    path = (root / bare).resolve()
    return path if path.is_file() and root in path.parents else None


def split_annotation(name: str) -> tuple[str, str | None]:
    # folder_paths.annotated_filepath slices a fixed width, assuming one space before the tag.
    for tag in ("output", "input", "temp"):
        if name.endswith(f"[{tag}]"):
            return name[: -(len(tag) + 3)], tag
    return name, None


def dir_for_type(roots: FileRoots, type_name: str) -> Path | None:
    return {"output": roots.output, "input": roots.input, "temp": roots.temp}.get(type_name)


def write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` so that it exists only whole: through a hidden file beside it, renamed into place. A full
    disk leaves no empty or cut-off file for /view to serve (ComfyUI's saves leave none either), and the
    hidden name never matches a ComfyUI prefix, so the output counter does not see it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
