"""/view keeps the files it serves in memory (replay/http/file_bodies.py): a file changed on disk, even in place
with its size and mtime kept, is served as it is now, with validators from its new stat. A job's output written in
dynamic mode is kept from the bytes written, under the same rule."""

from __future__ import annotations

import os
import time
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


def test_an_output_written_in_dynamic_mode_is_served_as_written_then_as_it_is_now(start_server: Callable[..., ReplayServer]) -> None:
    server = start_server("basic_save", dynamic=True)
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 3}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kept"}}}
    prompt_id = httpx.post(f"{server.url}/prompt", json={"prompt": workflow}).json()["prompt_id"]
    for _ in range(500):
        entry = httpx.get(f"{server.url}/history/{prompt_id}").json().get(prompt_id)
        if entry:
            break
        time.sleep(0.01)
    image = entry["outputs"]["2"]["images"][0]
    path = server.config.output_dir / image["filename"]
    answer = httpx.get(f"{server.url}/view", params=image)
    assert answer.content == path.read_bytes() and answer.headers["Etag"] == f'"{path.stat().st_mtime_ns:x}-{path.stat().st_size:x}"'

    stat = path.stat()
    changed = bytes(255 - b for b in path.read_bytes())  # in place: same size, same inode, the mtime put back
    with open(path, "r+b") as file:
        file.write(changed)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert httpx.get(f"{server.url}/view", params=image).content == changed


def test_the_bodies_kept_stay_within_their_budget(tmp_path: Path) -> None:
    files = FileBodies(budget=10, largest=6)
    for name, data in (("a", b"12345"), ("b", b"1234"), ("c", b"123"), ("d", b"1234567")):
        (tmp_path / name).write_bytes(data)
        assert files.read(tmp_path / name)[0] == data
    assert sorted(Path(kept).name for kept in files._kept) == ["b", "c"]  # a went first; d is over `largest`
    assert files._size == 7
