"""Puts a file folder back as the next test should find it, touching only what changed.

The fixtures reset the folders before every test. Deleting the input files the recordings had and writing them
again was most of a test's overhead, so a file a reset wrote is kept by the next reset when a stat shows it
untouched: same inode, size, mode, mtime and ctime. A stat cannot tell a change made within the file system's
timestamp tick of the moment it was last looked at (git's "racy" files), so a file whose ctime was that recent
then is compared by content instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

# A file seen less than this long after its last change is compared by content next time: more than any file
# system's timestamp granularity (FAT's is 2 s).
RACY_NS = 3_000_000_000

Signature = tuple[int, int, int, int, int]


def _signature(stat: os.stat_result) -> Signature:
    return (stat.st_ino, stat.st_size, stat.st_mode, stat.st_mtime_ns, stat.st_ctime_ns)


def remove(entry: os.DirEntry[str]) -> None:
    """Remove a folder's entry: a folder with all it holds, a file or a link (not what it points to)."""
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
        return
    try:
        os.unlink(entry.path)
    except FileNotFoundError:
        pass


def listing(folder: str | Path) -> list[os.DirEntry[str]]:
    """The entries of ``folder``, created first when it is missing (a test may have removed it)."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        entries = os.scandir(folder)
    with entries:
        return list(entries)


def empty(folder: Path) -> None:
    """Remove everything in ``folder``; create it when missing."""
    for entry in listing(folder):
        remove(entry)


class KeptFiles:
    """A folder that holds ``files`` (relative POSIX path -> bytes) after each :meth:`write_missing`, and only
    them after each :meth:`restore`."""

    def __init__(self, folder: Path, files: Mapping[str, bytes]) -> None:
        self.folder = os.fspath(folder)
        self.files = files
        self._dirs = {name.rsplit("/", i)[0] for name in files for i in range(1, name.count("/") + 1)}
        # What each file written here looked like when last written or found unchanged, and whether that look was
        # too soon after its ctime to trust a stat (the content is compared next time).
        self._seen: dict[str, tuple[Signature, bool]] = {}

    def write_missing(self, present: set[str] | frozenset[str] = frozenset()) -> None:
        """Write every file the folder lacks; one already there (``present``: known to be) is kept as it is."""
        for name, data in self.files.items():
            if name in present:
                continue
            path = os.path.join(self.folder, name)
            if os.path.lexists(path):
                continue
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "xb") as file:
                    file.write(data)
                self._saw(name, os.lstat(path))
            except OSError:
                continue  # a folder in the way of a name: that file stays missing, as ComfyUI would find it

    def restore(self) -> None:
        """Remove what is not one of ``files``, rewrite one that changed, write one that is missing."""
        present: set[str] = set()
        self._prune("", present)
        self.write_missing(present)

    def _prune(self, prefix: str, present: set[str]) -> None:
        for entry in listing(os.path.join(self.folder, prefix) if prefix else self.folder):
            name = prefix + entry.name
            if name in self.files and entry.is_file(follow_symlinks=False) and self._unchanged(name, entry):
                present.add(name)
            elif name in self._dirs and entry.is_dir(follow_symlinks=False):
                self._prune(name + "/", present)
            else:
                self._seen.pop(name, None)
                remove(entry)

    def _unchanged(self, name: str, entry: os.DirEntry[str]) -> bool:
        """Whether the file is as this folder last wrote it (a file it never wrote is rewritten)."""
        seen = self._seen.get(name)
        stat = entry.stat(follow_symlinks=False)
        if seen is None or seen[0] != _signature(stat):
            return False
        if seen[1]:
            try:
                with open(entry.path, "rb") as file:
                    if file.read() != self.files[name]:
                        return False
            except OSError:
                return False
            self._saw(name, stat)
        return True

    def _saw(self, name: str, stat: os.stat_result) -> None:
        self._seen[name] = (_signature(stat), time.time_ns() - stat.st_ctime_ns < RACY_NS)
