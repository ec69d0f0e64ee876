"""/view keeps the files it serves in memory (replay/http/file_bodies.py): a file changed on disk, even in place
with its size and mtime kept, is served as it is now, with validators from its new stat."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx

from comfy_cassettes.replay.http.file_bodies import LARGEST_KEPT, FileBodies
from comfy_cassettes.replay.server import ReplayServer


def view(server: ReplayServer, name: str) -> httpx.Response:
    answer = httpx.get(f"{server.url}/view", params={"filename": name, "type": "input"})
    assert answer.status_code == 200, answer
    return answer


def test_a_file_changed_on_disk_is_served_as_it_is_now(start_server: Callable[..., ReplayServer], tmp_path: Path) -> None:
    server = start_server(input_dir=tmp_path / "in")
    path = tmp_path / "in" / "a.png"
    path.write_bytes(b"first")
    first = view(server, "a.png")
    assert first.content == b"first" and view(server, "a.png").headers["Etag"] == first.headers["Etag"]

    stat = path.stat()
    with open(path, "r+b") as file:  # in place: same size, same inode, and the mtime put back
        file.write(b"again")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert view(server, "a.png").content == b"again"

    path.write_bytes(b"longer now")
    later = view(server, "a.png")
    assert later.content == b"longer now" and later.headers["Content-Length"] == "10"
    assert later.headers["Etag"] == f'"{path.stat().st_mtime_ns:x}-a"' != first.headers["Etag"]

    big = os.urandom(LARGEST_KEPT + 1)
    (tmp_path / "in" / "big.png").write_bytes(big)
    assert view(server, "big.png").content == big == view(server, "big.png").content
    path.unlink()
    assert httpx.get(f"{server.url}/view", params={"filename": "a.png", "type": "input"}).status_code == 404


def test_the_bodies_kept_stay_within_their_budget(tmp_path: Path) -> None:
    files = FileBodies(budget=10, largest=6)
    for name, data in (("a", b"12345"), ("b", b"1234"), ("c", b"123"), ("d", b"1234567")):
        (tmp_path / name).write_bytes(data)
        assert files.read(tmp_path / name)[0] == data
    assert sorted(Path(kept).name for kept in files._kept) == ["b", "c"]  # a went first; d is over `largest`
    assert files._size == 7
