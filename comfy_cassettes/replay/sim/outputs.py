"""Makes a job's output images answerable by /view: copied to disk in dynamic mode, virtual in static mode."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ...cassette.model import Cassette, OutputImage
from ...comfy.folders import FileRoots, write_whole
from ..harness.kept_files import KeptFiles
from .pixels import output_png


@functools.lru_cache(maxsize=64)
def solid_png(width: int, height: int, color: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    """A plain PNG of the requested size, for outputs no recording has bytes for."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (max(1, width), max(1, height)), color).save(buffer, format="PNG")
    return buffer.getvalue()


_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt"}


def png_with_text(png: bytes, text: Mapping[str, str]) -> bytes:
    """``png`` with its text chunks replaced by ``text``, placed after IHDR as ComfyUI's SaveImage writes them
    (basic_save capture: IHDR, tEXt "prompt", IDAT, IEND). The pixels are not re-encoded."""
    chunks = []
    for key, value in text.items():
        data = key.encode("latin-1") + b"\0" + value.encode("latin-1", "backslashreplace")
        chunks.append(struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data)))
    return b"".join(chunks).join(_around_text(png))


_SPLIT_KEPT = 32
# A new file only; not inherited by child processes (os.open's default, PEP 446); no newline translation where
# there is any (Windows' O_BINARY, which open() adds by itself).
_CREATE_NEW: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_REPLACE: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
_SPILLED_KEPT = 64  # generated images whose private file is remembered (the latest few)
_FOLDERS_KEPT = 256  # output folders whose joined path is kept (a prompt's prefix may name a new one each time)
_SIZES_KEPT = 256  # written files whose size is remembered (the latest: a job's entries are enriched as it ends)
_splits: dict[int, tuple[bytes, tuple[bytes, ...]]] = {}  # id(png) -> (png, its pieces): the same source image for many jobs


def _around_text(png: bytes) -> tuple[bytes, ...]:
    """``png`` without its text chunks, cut after each IHDR (where the text goes), read once per source image:
    every job that saves it adds its own text to the same bytes."""
    kept = _splits.get(id(png))
    if kept is not None and kept[0] is png:
        return kept[1]
    pieces, piece = [], [png[:8]]
    position = 8
    while position < len(png):
        length = struct.unpack(">I", png[position : position + 4])[0]
        kind = png[position + 4 : position + 8]
        end = position + 12 + length
        if kind not in _TEXT_CHUNKS:
            piece.append(png[position:end])
        if kind == b"IHDR":
            pieces.append(b"".join(piece))
            piece = []
        position = end
    pieces.append(b"".join(piece))
    if len(_splits) >= _SPLIT_KEPT:
        _splits.pop(next(iter(_splits)))
    _splits[id(png)] = (png, tuple(pieces))
    return tuple(pieces)


@functools.lru_cache(maxsize=32)
def _as_png(path: Path, mtime_ns: int) -> bytes:
    """A source image as PNG bytes (ComfyUI always saves PNG), converted once per file version."""
    data = path.read_bytes()
    if data.startswith(_SIGNATURE):
        return data
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


@functools.lru_cache(maxsize=32)
def _is_png(path: Path, mtime_ns: int) -> bool:
    with path.open("rb") as file:
        return file.read(len(_SIGNATURE)) == _SIGNATURE


@functools.lru_cache(maxsize=1024)
def _dimensions(path: str, mtime_ns: int) -> tuple[int, int] | None:
    return _opened_size(path)


@functools.lru_cache(maxsize=_SPLIT_KEPT)  # holds its sources, as _splits does: as many
def _png_dimensions(png: bytes) -> tuple[int, int] | None:
    """The size of a source image the replay writes (with text chunks added, which leave it as it is): read once
    per source, not from each job's new file."""
    return _opened_size(io.BytesIO(png))


def _opened_size(file: str | io.BytesIO) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return int(image.width), int(image.height)
    except (OSError, UnidentifiedImageError):
        return None


def _exists(path: str) -> bool:
    """``os.path.exists(path)`` without the exception it catches when nothing is there, the usual answer for a new
    output's name (an OSError with its message decoded from the locale: half the call's cost)."""
    try:
        return os.access(path, os.F_OK)
    except ValueError:  # a NUL in the name, as exists() answers it
        return False


def _version(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file is written again, even within the clock tick that keeps its mtime."""
    return stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino


class OutputFiles:
    """Where each handed-out output name's bytes come from, and whether they are written.

    Static mode writes nothing to the output folder: a name maps to the source image or the recorded
    image. Dynamic mode (and PreviewImage's temp files, always) writes a real file under the ComfyUI name.
    """

    def __init__(self, roots: FileRoots, *, dynamic: bool, source_image: Path | None, make_dir: Callable[[str], Path]) -> None:
        self.roots = roots
        self.dynamic = dynamic
        self.source_image = source_image
        self._make_dir = make_dir
        self._spill_dir: Path | None = None
        self._spilled: dict[int, tuple[bytes, Path]] = {}  # id(generated bytes) -> them, their file in _spill_dir
        self.virtual: dict[tuple[str, str, str], Path] = {}
        self._emptied = [KeptFiles(roots.output, {}), KeptFiles(roots.temp, {})]
        # Told of each file written, with its stat just after and its bytes: /view keeps them (FileBodies.wrote)
        # and answers the job's request for it without reading the file back.
        self.written: list[Callable[[str, os.stat_result, bytes], None]] = []
        # The size of each file lately written, with its _version then: enrichment asks for it right after.
        self._written_sizes: dict[str, tuple[tuple[int, int, int, int], tuple[int, int] | None]] = {}
        self._folders: dict[tuple[str, str], tuple[str, str]] = {}  # (type, subfolder) -> its folder, with a separator after and without

    def empty_folders(self) -> None:
        """Empty the output and temp folders: the fixtures' reset between tests (a restart keeps the files, as
        ComfyUI's restart does)."""
        for folder in self._emptied:
            folder.restore()

    def reset(self) -> None:
        self.virtual.clear()

    def lookup(self, kind: str, subfolder: str, filename: str) -> Path | None:
        """A static-mode name's source file (the ``virtual`` hook of files.resolve_view)."""
        return self.virtual.get((kind, subfolder, filename))

    def materialize(
        self, output: Any, recorded: Mapping[int, OutputImage], cassette: Cassette | None,
        metadata: Callable[[], Mapping[str, str]] | None = None, *, seed: int | None = None,
        wrote: Callable[[str, int | None], None] | None = None, ran: bool = False,
    ) -> None:
        """Make every image of one node's ``output`` viewable; ``recorded`` maps image index to its recording.
        Written files carry ``metadata()`` as PNG text chunks (the job's ``prompt`` and ``extra_pnginfo``; asked
        for only when a file is written). An image
        no recording has bytes for is drawn from the ``seed`` of the sampler that made it, else plain grey.
        ``wrote`` is told of each file created (OutputNamer.wrote: its folder was not looked at before). ``ran``: the
        node ran in this job (not cached), so its files are new even under a name handed out before (a
        ``%batch_num%`` prefix restarts its counter on every run): they replace the earlier run's, as ComfyUI's
        SaveImage overwrites them; a cached node's ``executed`` reports the files it wrote before."""
        images = output.get("images", []) if isinstance(output, dict) else []
        if metadata is not None and len(images) > 1:
            metadata = functools.cache(metadata)  # the same text for every image of the batch: encoded once
        for index, image in enumerate(images):
            if not isinstance(image, dict) or "filename" not in image:
                continue
            kind, subfolder, filename = image.get("type", "output"), image.get("subfolder", ""), image["filename"]
            if not ran and (kind, subfolder, filename) in self.virtual:
                continue  # a cached re-run reports files that already exist
            folder, path = self._path(kind, subfolder, filename)
            if self.dynamic or kind == "temp":
                self._write(path, folder, self._source(recorded.get(index), cassette, seed, index), metadata, wrote, ran)
            elif ran or not _exists(path):
                source = self._source(recorded.get(index), cassette, seed, index)
                self.virtual[(kind, subfolder, filename)] = source if isinstance(source, Path) else self._spill(source)

    def _path(self, kind: str, subfolder: str, filename: str) -> tuple[str, str]:
        """``os.path.join(<kind's root>, subfolder, filename)`` and its dirname, the folder joined once per subfolder:
        a name with no separator or drive in it (every name the namer hands out) is then only appended to it."""
        known = self._folders.get((kind, subfolder))
        if known is None:
            if len(self._folders) >= _FOLDERS_KEPT:
                self._folders.pop(next(iter(self._folders)))
            joined = os.path.join(self.roots.temp if kind == "temp" else self.roots.output, subfolder, "")
            known = self._folders[(kind, subfolder)] = (joined, os.path.dirname(joined + "name"))
        if "/" in filename or "\\" in filename or ":" in filename:
            path = os.path.join(known[0], filename)
            return os.path.dirname(path), path
        return known[1], known[0] + filename

    def _write(self, path: str, folder: str, source: Path | bytes, metadata: Callable[[], Mapping[str, str]] | None,
               wrote: Callable[[str, int | None], None] | None, replace: bool = False) -> None:
        """Create ``path`` with the image's bytes, unless it exists (a cached re-run reports files it wrote before).
        Written in place, as PIL's save in ComfyUI's SaveImage does: a failed write (a full disk) removes the
        file, so none is left empty or cut off; the name was handed out by the namer, so nothing else writes it
        meanwhile, and the loop runs nothing else while it is written. Cheaper than a hidden file renamed into
        place: one directory entry made instead of two changes. The bytes are made once the file is known to be
        new: a cached re-run's files cost one failed open. ``folder``: the path's dirname, made when missing (found
        so by the open itself: a look at it first was a stat per file); ``replace``: an existing file is written
        over (a node that ran again under a name handed out before)."""
        before: int | None = None  # (not looked at: OutputNamer.wrote)
        try:
            try:
                descriptor = os.open(path, _REPLACE if replace else _CREATE_NEW, 0o666)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                before = -1  # a new folder
                descriptor = os.open(path, _REPLACE if replace else _CREATE_NEW, 0o666)
        except FileExistsError:
            return
        try:
            png = _as_png(source, os.stat(source).st_mtime_ns) if isinstance(source, Path) else source
            text = metadata() if metadata is not None and png.startswith(_SIGNATURE) else None
            data = png_with_text(png, text) if text else png
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
            stat = os.fstat(descriptor)
        except BaseException:
            os.close(descriptor)
            os.unlink(path)
            raise
        os.close(descriptor)
        if png.startswith(_SIGNATURE):
            if len(self._written_sizes) >= _SIZES_KEPT:
                self._written_sizes.pop(next(iter(self._written_sizes)))
            self._written_sizes[path] = (_version(stat), _png_dimensions(png))
        if wrote is not None:
            wrote(path, before)
        for listener in self.written:
            listener(path, stat, data)

    def served(self, image: Mapping[str, Any]) -> Path | None:
        """The file /view answers for an output entry (a static-mode name's source), None when there is none."""
        path = self._file_of(image)
        return Path(path) if os.path.isfile(path) else None

    def dimensions(self, image: Mapping[str, Any]) -> tuple[int, int] | None:
        """(width, height) of the file an output entry names, read from its header as ComfyUI's media
        enrichment does; None when there is no such image."""
        path = os.fspath(self._file_of(image))
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if not S_ISREG(stat.st_mode):
            return None
        written = self._written_sizes.get(path)
        return written[1] if written is not None and written[0] == _version(stat) else _dimensions(path, stat.st_mtime_ns)

    def _file_of(self, image: Mapping[str, Any]) -> Path | str:
        kind, subfolder, filename = str(image.get("type", "output")), str(image.get("subfolder", "")), str(image.get("filename", ""))
        path = self.virtual.get((kind, subfolder, filename))
        return path if path is not None else os.path.join(self.roots.temp if kind == "temp" else self.roots.output, subfolder, filename)

    def _source(self, image: OutputImage | None, cassette: Cassette | None, seed: int | None, index: int) -> Path | bytes:
        if self.source_image is not None:
            # Served under ComfyUI's .png names: another format is converted once, not sent as image/png.
            version = self.source_image.stat().st_mtime_ns
            return self.source_image if _is_png(self.source_image, version) else _as_png(self.source_image, version)
        if image is not None and image.file and cassette is not None:
            return cassette.blob_path(image.file)
        width, height = (image.width or 512, image.height or 512) if image is not None else (512, 512)
        return output_png(seed, width, height, index) if seed is not None else solid_png(width, height)

    def _spill(self, data: bytes) -> Path:
        """Static mode needs a path for generated bytes: one file per distinct image in a private folder. The same
        bytes object (solid_png's and output_png's are kept) comes for job after job: its file is found once."""
        known = self._spilled.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
        if self._spill_dir is None:
            self._spill_dir = self._make_dir("static")
        path = self._spill_dir / f"{hashlib.sha256(data).hexdigest()[:16]}.png"
        if not path.exists():
            write_whole(path, data)
        if len(self._spilled) >= _SPILLED_KEPT:
            self._spilled.pop(next(iter(self._spilled)))
        self._spilled[id(data)] = (data, path)
        return path


__all__ = ["OutputFiles", "solid_png"]
