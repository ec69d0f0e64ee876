"""Puts a file folder back as the next test should find it, touching only what changed.

The fixtures reset the folders before every test. Deleting the input files the recordings had and writing them
again was most of a test's overhead, so a file a reset wrote is kept by the next reset when a stat shows it
untouched (same inode, size, mode, mtime and ctime), and a folder is listed only when its own stat changed (an
entry added or removed). A stat cannot tell a change made within the file system's timestamp tick of the moment
it was last looked at (git's "racy" files), so a file whose ctime was that recent then is compared by content,
and such a folder listed, instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

# A file or folder seen less than this long after its last change is looked into again next time: ten times the
# coarsest tick a file system with sub-second timestamps stamps changes by (Linux's jiffy, 10 ms at most); one whose
# timestamps are whole seconds (HFS+, FAT: 1 to 2 s) gets the longer window.
RACY_NS = 100_000_000
WHOLE_SECOND_RACY_NS = 3_000_000_000

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
    """A folder that holds ``files`` (relative POSIX path -> bytes) and ``folders`` after each :meth:`write_missing`,
    and only them after each :meth:`restore`. With no files, a folder a reset empties."""

    def __init__(self, folder: Path, files: Mapping[str, bytes], folders: Iterable[str] = ()) -> None:
        self.folder = os.fspath(folder)
        self.files = files
        self._folders = sorted(set(folders))  # parents first
        parents = {name.rsplit("/", i)[0] for name in [*files, *folders] for i in range(1, name.count("/") + 1)}
        self._dirs = parents | set(folders)
        # Everything a restore looks at, with its path: the folder, its folders (parents first), the files.
        self._looks = [(name, self._path(name)) for name in ["", *sorted(self._dirs), *files]]
        # What the folder, its folders and each file written here looked like when last written or found unchanged,
        # and whether that look was too soon after the ctime to trust a stat (looked into again next time).
        self._seen: dict[str, tuple[Signature, bool]] = {}

    def write_missing(self, present: set[str] | frozenset[str] = frozenset()) -> None:
        """Write every file the folder lacks; one already there (``present``: known to be) is kept as it is."""
        for name, data in self.files.items():
            if name in present:
                continue
            path = self._path(name)
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
        """Remove what is not one of ``files`` or ``folders``, rewrite a file that changed, write one that is
        missing. When no folder's own stat changed (nothing added or removed) and no file's did, a stat of each is
        all it costs."""
        if self._untouched():
            return
        present: set[str] = set()
        self._prune("", present)
        for name in self._folders:
            os.makedirs(self._path(name), exist_ok=True)
        self.write_missing(present)
        for name, path in self._looks[: len(self._dirs) + 1]:
            try:
                self._saw(name, os.lstat(path))
            except OSError:
                self._seen.pop(name, None)

    def untouched(self, name: str) -> bool:
        """Whether the file ``name`` is still the one this folder wrote: not changed, replaced or removed since."""
        try:
            stat = os.lstat(self._path(name))
        except OSError:
            return False
        return self._unchanged(name, stat)

    def _untouched(self) -> bool:
        for name, path in self._looks:
            try:
                stat = os.lstat(path)
            except OSError:
                return False
            if not self._unchanged(name, stat):
                return False
        return True

    def _prune(self, prefix: str, present: set[str]) -> None:
        for entry in listing(self._path(prefix.rstrip("/"))):
            name = prefix + entry.name
            if name in self.files and entry.is_file(follow_symlinks=False) and self._unchanged(name, entry.stat(follow_symlinks=False)):
                present.add(name)
            elif name in self._dirs and entry.is_dir(follow_symlinks=False):
                self._prune(name + "/", present)
            else:
                self._seen.pop(name, None)
                remove(entry)

    def _unchanged(self, name: str, stat: os.stat_result) -> bool:
        """Whether a file is as this folder last wrote it (one it never wrote is rewritten), or a folder as it
        was last seen (one seen too soon after a change is listed again)."""
        seen = self._seen.get(name)
        if seen is None or seen[0] != _signature(stat):
            return False
        if not seen[1]:
            return True
        data = self.files.get(name)
        if data is None:
            return False
        try:
            with open(self._path(name), "rb") as file:
                if file.read() != data:
                    return False
        except OSError:
            return False
        self._saw(name, stat)
        return True

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name) if name else self.folder

    def _saw(self, name: str, stat: os.stat_result) -> None:
        window = RACY_NS if stat.st_ctime_ns % 1_000_000_000 else WHOLE_SECOND_RACY_NS
        self._seen[name] = (_signature(stat), time.time_ns() - stat.st_ctime_ns < window)
