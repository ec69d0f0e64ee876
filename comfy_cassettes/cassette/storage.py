"""How cassettes sit on disk: atomic writes, content-addressed blobs, and the parsed-cassette cache."""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CassetteExistsError

BLOB_DIR = "blobs"
_CACHE_VERSION = "comfy-cassettes parsed cassette, format 1, 1"


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Parsers allocate an object per scalar; the collector running over them cost more than parsing did."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


CACHE_MIN_BYTES = 32 << 10  # below this YAML parses in a few ms; the bundled 280 KB cassette took 50 ms of every start-up


def parsed_cache(text: str) -> Path | None:
    """Where the parsed form of ``text`` is (or would be) kept, or None when not cached."""
    if len(text) < CACHE_MIN_BYTES or os.environ.get("COMFY_CASSETTES_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(f"{_CACHE_VERSION}\n".encode() + text.encode("utf-8")).hexdigest()
    return Path(base) / "comfy-cassettes" / f"{key}.json"


CACHE_LIMIT_BYTES = 256 << 20  # the most the kept parsed cassettes may add up to; the least recently used go first


def keep_parsed(cache: Path, data: Any) -> None:
    """Write the parsed cassette next to the others, and drop the least recently used ones past
    CACHE_LIMIT_BYTES; a cache that cannot be written is simply not used."""
    try:
        encoded = json.dumps(_to_json(data)).encode("utf-8")
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, encoded, overwrite=True)
    except (OSError, TypeError, ValueError):
        return
    prune_parsed(cache.parent, keep=cache)


def used_parsed(cache: Path) -> None:
    """Mark a kept parsed cassette as just used (its mtime), so pruning keeps it longest."""
    try:
        os.utime(cache)
    except OSError:
        pass


def prune_parsed(folder: Path, *, keep: Path | None = None, limit: int | None = None) -> None:
    """Remove the least recently used parsed cassettes of ``folder`` until they add up to ``limit`` at most (never
    ``keep``; ``limit`` defaults to CACHE_LIMIT_BYTES). Each is keyed by its text's hash: an edited cassette leaves
    its old entry behind for good."""
    limit = CACHE_LIMIT_BYTES if limit is None else limit
    entries: list[tuple[float, int, Path]] = []
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                if entry.name.endswith(".json") and entry.is_file(follow_symlinks=False):
                    stat = entry.stat(follow_symlinks=False)
                    entries.append((stat.st_mtime, stat.st_size, Path(entry.path)))
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries, key=lambda found: found[0]):
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size


def _to_json(document: Any) -> Any:
    """The document with YAML ``!!binary`` request bodies (multipart uploads) as base64; any other non-JSON
    value makes json.dumps refuse, and that cassette is just not cached."""
    if not isinstance(document, dict):
        return document
    interactions = []
    for item in document.get("interactions") or []:
        body = (item.get("request") or {}).get("body") if isinstance(item, dict) else None
        if isinstance(body, bytes):
            item = {**item, "request": {**item["request"], "body": {"__bytes__": base64.b64encode(body).decode("ascii")}}}
        interactions.append(item)
    return {**document, "interactions": interactions}


def from_json(document: Any) -> Any:
    """The reverse of :func:`_to_json`, touching only request bodies (an object hook ran on every dict)."""
    for item in (document.get("interactions") or []) if isinstance(document, dict) else []:
        body = (item.get("request") or {}).get("body") if isinstance(item, dict) else None
        if isinstance(body, dict) and set(body) == {"__bytes__"}:
            item["request"]["body"] = base64.b64decode(body["__bytes__"])
    return document


class BlobStore:
    """Writes content-addressed sidecar files under ``<cassette folder>/blobs``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, ext: str) -> str:
        """Store ``data`` once and return its reference (``blobs/<sha256>.<ext>``)."""
        name = f"{hashlib.sha256(data).hexdigest()}.{ext.lstrip('.') or 'bin'}"
        target = self.root / BLOB_DIR / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data, overwrite=True)
        return f"{BLOB_DIR}/{name}"


def atomic_write(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write via a temp file in the same folder; a crash leaves the old file whole."""
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the target exists, with no window for a race
            except FileExistsError:
                raise CassetteExistsError(path, None, "already exists; pass overwrite (--force) to replace it") from None
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def create_temp(path: Path) -> tuple[int, str]:
    """A new hidden file beside ``path``, opened for writing.

    Not ``mkstemp``: its files are 0600, and a cassette is a shared file like any other. Created 0666, the
    kernel applies the process umask itself; reading the umask means setting it, which races with other threads
    (the proxy saves from a worker thread while it serves).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
