"""Tests for comfy_cassettes.comfy.folders and replay.files, replaying the real ComfyUI captures."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import re
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy_cassettes.comfy.folders import FileRoots, OutputName, OutputNamer
from comfy_cassettes.replay.http.files import ViewResult, render_view_body, resolve_view, store_upload
from helpers import (
    HarEntry,
    http_entries,
    multipart_fields,
    query_params,
    request_path,
    response_bytes,
    response_headers,
    ws_received,
)


@pytest.fixture
def roots(tmp_path: Path) -> FileRoots:
    made = FileRoots(output=tmp_path / "output", input=tmp_path / "input", temp=tmp_path / "temp")
    for directory in (made.output, made.input, made.temp):
        directory.mkdir()
    return made


@pytest.fixture
def namer(roots: FileRoots) -> OutputNamer:
    return OutputNamer(roots, rng=random.Random(1234))


def _write(roots: FileRoots, name: OutputName, data: bytes = b"png") -> None:
    folder = getattr(roots, name.type) / name.subfolder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name.filename).write_bytes(data)


# --- output names ------------------------------------------------------------------------------


def _saves_in_order(scenario: str) -> list[tuple[str, int, int, int, list[dict[str, Any]]]]:
    """(prefix, width, height, batch, images) of every SaveImage fed by an EmptyImage, as executed."""
    graphs: dict[str, dict[str, Any]] = {}
    for entry in http_entries(scenario):
        if request_path(entry).endswith("/prompt") and entry["request"]["method"] == "POST":
            if entry["response"]["status"] == 200:
                prompt_id = json.loads(entry["response"]["content"]["text"])["prompt_id"]
                graphs[prompt_id] = json.loads(entry["request"]["postData"]["text"])["prompt"]
    saves = []
    for message in ws_received(scenario):
        if message["type"] != "executed":
            continue
        graph = graphs[message["data"]["prompt_id"]]
        node = graph[message["data"]["node"]]
        source = graph[node["inputs"]["images"][0]]
        if node["class_type"] != "SaveImage" or source["class_type"] != "EmptyImage":
            continue
        size = source["inputs"]
        saves.append(
            (
                node["inputs"]["filename_prefix"],
                size["width"],
                size["height"],
                size["batch_size"],
                message["data"]["output"]["images"],
            )
        )
    return saves


@pytest.mark.parametrize("write_files", [True, False], ids=["disk", "static"])
@pytest.mark.parametrize(
    "scenario", ["basic_save", "batch_3", "subfolder_prefix", "two_save_nodes", "view_errors"]
)
def test_save_names_match_the_capture(
    scenario: str, write_files: bool, roots: FileRoots, namer: OutputNamer
) -> None:
    saves = _saves_in_order(scenario)
    assert saves
    for prefix, width, height, batch, captured in saves:
        names = namer.save_names(prefix, width=width, height=height, count=batch)
        assert [asdict(n) for n in names] == captured
        if write_files:
            for name in names:
                _write(roots, name)


def test_named_sequences(namer: OutputNamer) -> None:
    def files(prefix: str, count: int = 1, width: int = 64, height: int = 64) -> list[str]:
        return [
            f"{n.subfolder}/{n.filename}" if n.subfolder else n.filename
            for n in namer.save_names(prefix, width=width, height=height, count=count)
        ]

    assert files("batch", 3) == ["batch_00001_.png", "batch_00002_.png", "batch_00003_.png"]
    assert files("batch", 3) == ["batch_00004_.png", "batch_00005_.png", "batch_00006_.png"]
    assert files("gen/job_7") == ["gen/job_7_00001_.png"]
    assert files("gen/job_7") == ["gen/job_7_00002_.png"]
    assert files("job_7") == ["job_7_00001_.png"]  # the counter is per folder
    assert files("dims/img_%width%x%height%", width=48, height=32) == ["dims/img_48x32_00001_.png"]
    assert files("bn/frame_%batch_num%", 2) == ["bn/frame_0_00001_.png", "bn/frame_1_00002_.png"]


def test_batch_num_names_restart_like_comfyui(roots: FileRoots, namer: OutputNamer) -> None:
    # "frame_0_00001_.png" never matches the basename "frame_%batch_num%", so ComfyUI starts at 1 again.
    first = namer.save_names("bn/frame_%batch_num%", width=8, height=8, count=2)
    for name in first:
        _write(roots, name)
    again = namer.save_names("bn/frame_%batch_num%", width=8, height=8, count=2)
    assert again == first


def test_counter_continues_from_disk(roots: FileRoots, namer: OutputNamer) -> None:
    for existing in (
        "ComfyUI_00007_.png",
        "ComfyUI_00003_.png",
        "ComfyUI_00012_.webp",  # any extension counts
        "ComfyUI_temp_abcde_00099_.png",  # "temp" is not a number: counts as 0
        "ComfyUIx_00050_.png",
        "comfyui_00077_.png",  # case matters on POSIX
        "Other_00042_.png",
    ):
        (roots.output / existing).write_bytes(b"")
    (roots.output / "sub").mkdir()
    (roots.output / "sub" / "ComfyUI_00100_.png").write_bytes(b"")
    names = namer.save_names("ComfyUI", width=1, height=1, count=2)
    assert [n.filename for n in names] == ["ComfyUI_00013_.png", "ComfyUI_00014_.png"]
    assert namer.save_names("sub/ComfyUI", width=1, height=1, count=1)[0].filename == "ComfyUI_00101_.png"


def test_only_unparsable_matches_start_at_one(roots: FileRoots, namer: OutputNamer) -> None:
    (roots.temp / "ComfyUI_temp_abcde_00003_.png").write_bytes(b"")
    name = namer.save_names("ComfyUI", width=1, height=1, count=1)[0]
    assert name.filename == "ComfyUI_00001_.png"


def test_static_names_never_repeat_until_reset(roots: FileRoots, namer: OutputNamer) -> None:
    seen = [namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename for _ in range(50)]
    assert seen == [f"ComfyUI_{i:05}_.png" for i in range(1, 51)]
    assert list(roots.output.iterdir()) == []  # nothing written, no folder created
    namer.save_names("deep/er/x", width=8, height=8, count=1)
    assert not (roots.output / "deep").exists()
    namer.reset()
    assert namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename == "ComfyUI_00001_.png"


def test_reset_keeps_counting_files_on_disk(roots: FileRoots, namer: OutputNamer) -> None:
    _write(roots, namer.save_names("ComfyUI", width=8, height=8, count=1)[0])
    namer.save_names("ComfyUI", width=8, height=8, count=1)
    namer.reset()
    assert namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename == "ComfyUI_00002_.png"


def test_the_replays_own_writes_keep_the_listing_and_anyone_elses_are_seen(roots: FileRoots, namer: OutputNamer) -> None:
    for _ in range(3):  # the replay writes what it names, telling the namer: the listing stays current
        [name] = namer.save_names("ComfyUI", width=8, height=8, count=1)
        before = roots.output.stat().st_mtime_ns
        _write(roots, name)
        namer.wrote(roots.output / name.filename, before)
    namer.reset()  # forget handed-out names: only the disk speaks now
    assert namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename == "ComfyUI_00004_.png"
    # Someone else writes into the folder: its mtime moves past the listing's, so the folder is listed again.
    time.sleep(0.01)
    (roots.output / "ComfyUI_00040_.png").write_bytes(b"")
    assert namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename == "ComfyUI_00041_.png"
    (roots.output / "ComfyUI_00040_.png").unlink()
    namer.reset()
    assert namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename == "ComfyUI_00004_.png"


def test_on_the_loop_a_folder_is_looked_at_once_per_callback(roots: FileRoots, namer: OutputNamer) -> None:
    async def scenario() -> list[str]:
        namer.settle_on(asyncio.get_running_loop())
        names = [namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename]
        time.sleep(0.01)
        (roots.output / "ComfyUI_00040_.png").write_bytes(b"")  # another process, racing the callback naming
        names.append(namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename)
        await asyncio.sleep(0)  # the loop runs another callback: whatever it did is seen
        names.append(namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename)
        time.sleep(0.01)
        (roots.output / "ComfyUI_00050_.png").write_bytes(b"")  # seen by a thread: it looks every time
        await asyncio.to_thread(lambda: names.append(namer.save_names("ComfyUI", width=8, height=8, count=1)[0].filename))
        namer.settle_on(None)
        return names

    assert asyncio.run(scenario()) == ["ComfyUI_00001_.png", "ComfyUI_00002_.png", "ComfyUI_00041_.png", "ComfyUI_00051_.png"]


def test_concurrent_allocation_gives_distinct_names(namer: OutputNamer) -> None:
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(200)

    def allocate() -> None:
        barrier.wait()
        name = namer.save_names("race", width=8, height=8, count=1)[0].filename
        with lock:
            results.append(name)

    threads = [threading.Thread(target=allocate) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [f"race_{i:05}_.png" for i in range(1, 201)]


@pytest.mark.parametrize("prefix", ["../outside/x", "/etc/x", "a/../../x"])
def test_prefix_outside_output_is_refused(prefix: str, roots: FileRoots, namer: OutputNamer) -> None:
    with pytest.raises(ValueError, match="Saving image outside the output folder is not allowed") as info:
        namer.save_names(prefix, width=64, height=64, count=1)
    assert f"\n         output_dir: {roots.output}\n" in str(info.value)


def test_prefix_normalised_inside_output(namer: OutputNamer) -> None:
    assert namer.save_names("a/../b/./x", width=1, height=1, count=1) == [
        OutputName("x_00001_.png", "b", "output")
    ]


def test_temp_names(roots: FileRoots) -> None:
    namer = OutputNamer(roots, rng=random.Random(7))
    first = namer.temp_names(width=64, height=64, count=2)
    pattern = re.compile(r"ComfyUI_temp_([a-z]{5})_(\d{5})_\.png")
    matches = [pattern.fullmatch(n.filename) for n in first]
    assert all(matches) and {n.type for n in first} == {"temp"} and {n.subfolder for n in first} == {""}
    letters = {m.group(1) for m in matches if m}
    assert len(letters) == 1  # one suffix per node run, the counter advances
    assert [m.group(2) for m in matches if m] == ["00001", "00002"]
    assert "w" not in "".join(
        n.filename[13:18] for _ in range(200) for n in namer.temp_names(width=1, height=1, count=1)
    )
    # The same seed gives the same suffix.
    again = OutputNamer(roots, rng=random.Random(7)).temp_names(width=64, height=64, count=1)
    assert again[0].filename[:18] == first[0].filename[:18]


def test_temp_names_match_capture_shape(roots: FileRoots) -> None:
    captured = [m for m in ws_received("preview_image") if m["type"] == "executed"]
    image = captured[0]["data"]["output"]["images"][0]
    names = OutputNamer(roots, rng=random.Random(0)).temp_names(width=64, height=64, count=1)
    assert asdict(names[0]).keys() == image.keys()
    assert (names[0].subfolder, names[0].type) == (image["subfolder"], image["type"])
    assert re.sub("_temp_[a-z]{5}_", "_temp_?_", names[0].filename) == re.sub(
        "_temp_[a-z]{5}_", "_temp_?_", image["filename"]
    )


# --- GET /view ---------------------------------------------------------------------------------

_VIEW_SCENARIOS = [
    "view_errors",
    "preview_image",
    "subfolder_prefix",
    "basic_save",
    "batch_3",
    "load_transform_save",
]


def _view_entries(scenario: str) -> list[HarEntry]:
    return [e for e in http_entries(scenario) if request_path(e) in ("/view", "/api/view")]


def _place_served_files(roots: FileRoots, entries: list[HarEntry]) -> None:
    """Put every file a plain 200 /view served where the query says it lives, with its captured mtime."""
    for entry in entries:
        headers = response_headers(entry)
        if entry["response"]["status"] != 200 or "Etag" not in headers:
            continue
        query = query_params(entry)
        filename = re.sub(r" \[(output|input|temp)\]$", "", query["filename"])
        directory = getattr(roots, query.get("type", "output")) / query.get("subfolder", "")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / filename
        path.write_bytes(response_bytes(entry))
        mtime_ns = int(headers["Etag"].strip('"').split("-")[0], 16)
        os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.mark.parametrize("scenario", _VIEW_SCENARIOS)
def test_view_replays_capture(scenario: str, roots: FileRoots) -> None:
    entries = _view_entries(scenario)
    assert entries
    _place_served_files(roots, entries)
    for entry in entries:
        query = query_params(entry)
        captured_status = entry["response"]["status"]
        result = resolve_view(roots, query)
        assert result.status == captured_status, entry["request"]["url"]
        if captured_status != 200:
            assert result == ViewResult(captured_status, None, None, None)
            continue
        body, headers = render_view_body(result, query)
        captured = response_headers(entry)
        for volatile in ("Date", "Server"):
            captured.pop(volatile)
        assert list(headers) == list(captured), entry["request"]["url"]
        assert headers["Content-Disposition"] == captured["Content-Disposition"]
        assert headers["Content-Type"] == captured["Content-Type"]
        expected = response_bytes(entry)
        if "Etag" in captured:
            assert headers == captured
            assert body == expected
        else:
            _assert_same_image(body, expected, lossless=captured["Content-Type"] == "image/png")


def _assert_same_image(body: bytes, expected: bytes, *, lossless: bool) -> None:
    with Image.open(io.BytesIO(body)) as ours, Image.open(io.BytesIO(expected)) as theirs:
        assert (ours.format, ours.size, ours.mode) == (theirs.format, theirs.size, theirs.mode)
        if lossless:
            assert ours.tobytes() == theirs.tobytes()


def test_view_error_statuses(roots: FileRoots) -> None:
    (roots.output / "gen").mkdir()
    (roots.output / "gen" / "a.png").write_bytes(b"x")
    (roots.output / "root.png").write_bytes(b"x")

    def status(**query: str) -> int:
        return resolve_view(roots, query).status

    assert status() == 404
    assert status(filename="") == 400
    assert status(filename=" [output]") == 400
    assert status(filename="../x.png") == 400
    assert status(filename="a..png") == 400  # any "..", as ComfyUI checks
    assert status(filename="/etc/passwd") == 400
    assert status(filename="a.png", type="bogus") == 400
    assert status(filename="a.png", type="") == 400
    assert status(filename="a.png", subfolder="../input") == 403
    assert status(filename="a.png", subfolder="/etc") == 403
    assert status(filename="a.png", subfolder="gen/../..") == 403
    assert status(filename="a.png", subfolder="gen") == 200
    assert status(filename="a.png", subfolder="gen/") == 200
    assert status(filename="a.png", subfolder="./gen") == 200
    assert status(filename="a.png") == 404
    assert status(filename="gen/a.png") == 404  # a "/" in filename is not a subfolder
    assert status(filename="x/root.png") == 200  # ...only the last part is looked up
    assert status(filename="root.png", subfolder="") == 200
    assert status(filename="gen", type="output") == 404  # directories are not files
    assert status(filename="root.png [output]", type="bogus") == 200  # the annotation wins
    assert status(filename="root.png [input]") == 404


def test_view_content_type_from_extension(roots: FileRoots) -> None:
    for name in ("a.png", "a.jpg", "a.webp", "a.html", "a.css", "a.unknownext"):
        (roots.output / name).write_bytes(b"x")
    types = {
        name: resolve_view(roots, {"filename": name}).content_type
        for name in ("a.png", "a.jpg", "a.webp", "a.html", "a.css", "a.unknownext")
    }
    assert types == {
        "a.png": "image/png",
        "a.jpg": "image/jpeg",
        "a.webp": "image/webp",
        "a.html": "application/octet-stream",
        "a.css": "application/octet-stream",
        "a.unknownext": "application/octet-stream",
    }


def test_virtual_files_are_consulted_first(roots: FileRoots, tmp_path: Path) -> None:
    source = tmp_path / "source.png"
    Image.new("RGBA", (4, 3), (10, 20, 30, 40)).save(source)
    calls: list[tuple[str, str, str]] = []

    def virtual(type_name: str, subfolder: str, filename: str) -> Path | None:
        calls.append((type_name, subfolder, filename))
        return source if filename == "job_7_00009_.png" else None

    result = resolve_view(
        roots, {"filename": "job_7_00009_.png", "subfolder": "gen/", "type": "output"}, virtual=virtual
    )
    assert result == ViewResult(200, source, "image/png", "job_7_00009_.png")
    assert resolve_view(roots, {"filename": "nope.png", "type": "temp"}, virtual=virtual).status == 404
    resolve_view(roots, {"filename": "x.png [input]"}, virtual=virtual)
    assert calls == [
        ("output", "gen", "job_7_00009_.png"),
        ("temp", "", "nope.png"),
        ("input", "", "x.png"),
    ]
    # Validation still comes first: no lookup for refused requests.
    assert resolve_view(roots, {"filename": "../a.png"}, virtual=virtual).status == 400
    assert resolve_view(roots, {"filename": "a.png", "subfolder": "../.."}, virtual=virtual).status == 403
    assert len(calls) == 3
    body, headers = render_view_body(result, {"channel": "rgb"})
    assert headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(body)) as image:
        assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (4, 3), (10, 20, 30))


@pytest.mark.parametrize(
    ("query", "content_type", "mode", "plain"),
    [
        ({"preview": "webp;50"}, "image/webp", None, False),
        ({"preview": "jpeg;80"}, "image/jpeg", "RGB", False),
        ({"preview": "jpeg"}, "image/jpeg", "RGB", False),
        ({"preview": "png;50"}, "image/webp", None, False),  # only webp and jpeg are allowed
        ({"preview": "jpeg;80", "channel": "a"}, "image/webp", "RGBA", False),  # alpha forces webp
        ({"preview": "jpeg;80", "channel": "rgba"}, "image/webp", "RGBA", False),  # "a" in "rgba"
        ({"preview": "webp;90", "channel": "rgb"}, "image/webp", "RGB", False),
        ({"channel": "rgb"}, "image/png", "RGB", False),
        ({"channel": "a"}, "image/png", "RGBA", False),
        ({"channel": "rgba"}, "image/png", "RGBA", True),
        ({"channel": "bogus"}, "image/png", "RGBA", True),
        ({}, "image/png", "RGBA", True),
    ],
)
def test_view_variants(
    query: dict[str, str], content_type: str, mode: str | None, plain: bool, roots: FileRoots
) -> None:
    source = roots.temp / "ComfyUI_temp_abcde_00001_.png"
    Image.new("RGBA", (6, 5), (200, 100, 50, 128)).save(source)
    full_query = {"filename": source.name, "type": "temp", **query}
    result = resolve_view(roots, full_query)
    body, headers = render_view_body(result, full_query)
    assert headers["Content-Type"] == content_type
    assert headers["Content-Disposition"] == f'filename="{source.name}"'
    assert headers["Content-Length"] == str(len(body))
    assert ("Accept-Ranges" in headers) is plain and ("Etag" in headers) is plain
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (6, 5)
        if mode is not None:
            assert image.mode == mode
        if query.get("channel") == "a" and "preview" not in query:
            assert image.getpixel((0, 0)) == (0, 0, 0, 128)


def test_channel_a_of_an_opaque_image(roots: FileRoots) -> None:
    Image.new("RGB", (2, 2), (1, 2, 3)).save(roots.output / "rgb.png")
    query = {"filename": "rgb.png", "channel": "a"}
    body, _ = render_view_body(resolve_view(roots, query), query)
    with Image.open(io.BytesIO(body)) as image:
        assert image.getpixel((1, 1)) == (0, 0, 0, 255)


def test_render_refuses_errors() -> None:
    with pytest.raises(ValueError, match="status 404"):
        render_view_body(ViewResult(404, None, None, None), {})


# --- POST /upload/image ------------------------------------------------------------------------


def test_upload_replays_capture(roots: FileRoots) -> None:
    entries = http_entries("load_transform_save")
    uploads = [e for e in entries if request_path(e) == "/upload/image"]
    assert len(uploads) == 6
    for entry in uploads:
        fields = multipart_fields(entry)
        image = fields.get("image")
        result = store_upload(
            roots,
            filename=image.filename if image else None,
            data=image.data if image else None,
            subfolder=fields["subfolder"].text if "subfolder" in fields else "",
            type=fields["type"].text if "type" in fields else None,
            overwrite=fields["overwrite"].text if "overwrite" in fields else None,
        )
        assert result.status == entry["response"]["status"]
        if result.status == 200:
            # Key order matters: the body is serialised as ComfyUI does it.
            assert json.dumps(result.body) == entry["response"]["content"]["text"]
        else:
            assert result.body is None
    # What the later requests of the capture saw: LoadImage's file list and the /view bodies.
    object_info = next(e for e in entries if request_path(e) == "/object_info/LoadImage")
    listed = json.loads(object_info["response"]["content"]["text"])["LoadImage"]["input"]["required"]
    assert sorted(p.name for p in roots.input.iterdir() if p.is_file()) == listed["image"][0]
    for entry in _view_entries("load_transform_save"):
        query = query_params(entry)
        if query["type"] == "input":
            view = resolve_view(roots, query)
            assert view.path is not None and view.path.read_bytes() == response_bytes(entry)


def test_upload_rules(roots: FileRoots) -> None:
    def upload(data: bytes | None, filename: str | None = "a.png", **options: Any) -> tuple[int, Any]:
        result = store_upload(roots, filename=filename, data=data, **options)
        return result.status, result.body

    assert upload(b"one") == (200, {"name": "a.png", "subfolder": "", "type": "input"})
    assert upload(b"one") == (200, {"name": "a.png", "subfolder": "", "type": "input"})
    assert upload(b"two")[1]["name"] == "a (1).png"
    assert upload(b"three")[1]["name"] == "a (2).png"
    assert upload(b"two")[1]["name"] == "a (1).png"  # a duplicate of a renamed copy
    assert upload(b"four", overwrite=True)[1]["name"] == "a.png"
    assert (roots.input / "a.png").read_bytes() == b"four"
    assert upload(b"five", overwrite="1")[1]["name"] == "a.png"
    assert upload(b"six", overwrite="True")[1]["name"] == "a (3).png"  # only "true" and "1"
    assert upload(b"x", subfolder="deep/er")[1] == {"name": "a.png", "subfolder": "deep/er", "type": "input"}
    assert (roots.input / "deep" / "er" / "a.png").read_bytes() == b"x"
    assert upload(b"t", type="temp")[1]["type"] == "temp" and (roots.temp / "a.png").exists()
    assert upload(b"o", type="output")[1]["type"] == "output"
    assert upload(b"n", filename="b", type=None)[1] == {"name": "b", "subfolder": "", "type": "input"}
    assert upload(b"m", filename="b")[1]["name"] == "b (1)"
    assert upload(b"", filename="empty.png")[0] == 200  # an empty file is still a file


def test_upload_refusals(roots: FileRoots) -> None:
    def status(data: bytes | None = b"x", filename: str | None = "a.png", **options: Any) -> int:
        return store_upload(roots, filename=filename, data=data, **options).status

    assert status(data=None) == 400
    assert status(filename=None) == 400
    assert status(filename="") == 400
    assert status(filename="../a.png") == 400
    assert status(filename="/etc/a.png") == 400
    assert status(subfolder="../../etc") == 400
    assert status(subfolder="/etc") == 400
    assert status(type="bogus") == 500
    assert status(data=None, type="bogus") == 500  # the type is looked at first
    (roots.input / "dir.png").mkdir()
    assert status(filename="dir.png") == 500
    assert status(filename="missing/a.png") == 500
    assert status(filename="nul\x00.png") == 500
    assert sorted(p.name for p in roots.input.iterdir()) == ["dir.png"]
    assert not (roots.input.parent / "a.png").exists()
