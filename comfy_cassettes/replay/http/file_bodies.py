"""The files /view serves as they are, with aiohttp's validators, kept in memory while the disk says they are
unchanged: opening and reading even a small file cost more than the rest of the request (a stat is a third of
that), and a static-mode replay serves every output from the same few files."""

from __future__ import annotations

import email.utils
import functools
import math
import os
from pathlib import Path

# What a file is answered with: its bytes, aiohttp's Etag and Last-Modified for it.
FileBody = tuple[bytes, str, str]
_Signature = tuple[int, int, int, int, int]  # what changes when the file does: mtime, ctime, size, inode, device

KEPT_BYTES = 8 << 20  # the most the bodies kept may add up to
LARGEST_KEPT = 1 << 20  # a bigger file is read each time


class FileBodies:
    """Files read for /view, each kept with the stat it was read at and answered again while a fresh stat agrees
    (a file replaced or written again has another mtime, ctime, size or inode). Bounded: the oldest go first.
    One per app: an app's requests come from one event loop."""

    def __init__(self, budget: int = KEPT_BYTES, largest: int = LARGEST_KEPT) -> None:
        self.budget, self.largest = budget, largest
        self._kept: dict[str, tuple[_Signature, FileBody]] = {}
        self._size = 0

    def read(self, path: Path | str, stat: os.stat_result | None = None) -> FileBody:
        """The file's bytes and validators (the OSError reading it raises); ``stat``: the file's, taken just now."""
        key = os.fspath(path)
        kept = self._kept.get(key)
        if kept is not None and kept[0] == _signature(stat or os.stat(key)):
            return kept[1]
        with open(key, "rb") as file:
            stat = os.fstat(file.fileno())
            body = file.read()
        answer = (body, etag(stat), last_modified(stat))
        self._keep(key, _signature(stat), answer)
        return answer

    def wrote(self, path: Path | str, stat: os.stat_result, body: bytes) -> None:
        """The replay just wrote ``body`` to ``path`` (``stat``: the file's right after): kept as if read, so the
        /view that follows a job serves it without reading it back; a later change to the file shows in its stat."""
        self._keep(os.fspath(path), _signature(stat), (body, etag(stat), last_modified(stat)))

    def _keep(self, key: str, signature: _Signature, answer: FileBody) -> None:
        old = self._kept.pop(key, None)
        if old is not None:
            self._size -= len(old[1][0])
        size = len(answer[0])
        if size > self.largest or size > self.budget:
            return
        while self._kept and self._size + size > self.budget:
            self._size -= len(self._kept.pop(next(iter(self._kept)))[1][0])
        self._kept[key] = (signature, answer)
        self._size += size


def read_once(path: Path | str) -> FileBody:
    """The file's bytes and validators, read now and not kept."""
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())
        return file.read(), etag(stat), last_modified(stat)


def etag(stat: os.stat_result) -> str:
    """aiohttp's FileResponse Etag: the mtime in nanoseconds and the size, in hex."""
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


def last_modified(stat: os.stat_result) -> str:
    """aiohttp's Last-Modified: the mtime rounded up to the next second (view_errors: Etag mtime ...40.83 ->
    09:07:41)."""
    return _http_date(math.ceil(stat.st_mtime))


@functools.lru_cache(maxsize=64)
def _http_date(second: int) -> str:
    # Files written within the same second share it: formatting it was a tenth of serving a small file.
    return email.utils.formatdate(second, usegmt=True)


def _signature(stat: os.stat_result) -> _Signature:
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino, stat.st_dev)
