"""What the comfy fixture's reset between tests guarantees, now that it keeps what did not change: every test
starts from the folders, queue, worker and problems of a fresh server, whatever the test before it did."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from comfy_cassettes.replay.harness import kept_files
from comfy_cassettes.replay.harness.kept_files import KeptFiles

FILES = {"a.png": b"A" * 10, "sub/b.png": b"B" * 20, "sub/deeper/c.png": b"C" * 5}


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_restore_leaves_exactly_the_files_and_keeps_the_untouched_ones(tmp_path: Path) -> None:
    folder = tmp_path / "input"
    kept = KeptFiles(folder, FILES)
    kept.restore()  # the folder is created, every file written
    assert _tree(folder) == FILES
    inode = (folder / "a.png").stat().st_ino
    (folder / "extra.txt").write_text("the test's")
    (folder / "sub" / "extra").mkdir()
    (folder / "sub" / "extra" / "x.png").write_bytes(b"x")
    (folder / "sub" / "b.png").write_bytes(b"b" * 20)  # same size, at once: only the content tells
    (folder / "sub" / "deeper" / "c.png").unlink()
    kept.restore()
    assert _tree(folder) == FILES
    assert sorted(p.name for p in (folder / "sub").iterdir()) == ["b.png", "deeper"]
    assert (folder / "a.png").stat().st_ino == inode  # untouched: kept, not rewritten


def test_a_file_changed_in_kind_or_mode_is_rewritten_and_a_link_is_removed_not_followed(tmp_path: Path) -> None:
    folder, outside = tmp_path / "input", tmp_path / "outside.png"
    outside.write_bytes(b"theirs")
    kept = KeptFiles(folder, FILES)
    kept.restore()
    (folder / "a.png").unlink()
    (folder / "a.png").symlink_to(outside)
    shutil.rmtree(folder / "sub" / "deeper")
    (folder / "sub" / "deeper").write_bytes(b"a file where a folder was")
    (folder / "sub" / "b.png").chmod(0o600)
    kept.restore()
    assert _tree(folder) == FILES
    assert not (folder / "a.png").is_symlink() and outside.read_bytes() == b"theirs"
    shutil.rmtree(folder)
    kept.restore()  # a test may remove the folder itself
    assert _tree(folder) == FILES


def test_past_the_racy_window_a_stat_decides_without_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_files, "RACY_NS", 0)  # every file's last change is long enough ago
    folder = tmp_path / "input"
    kept = KeptFiles(folder, FILES)
    kept.restore()

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an untouched file was read")

    monkeypatch.setattr(kept_files, "open", no_reading, raising=False)
    kept.restore()  # nothing changed: a stat each, nothing read or written
    monkeypatch.undo()
    monkeypatch.setattr(kept_files, "RACY_NS", 0)
    replacement = tmp_path / "new.png"
    replacement.write_bytes(b"Z" * 10)
    os.replace(replacement, folder / "a.png")  # same size, another file
    kept.restore()
    assert _tree(folder) == FILES


def test_a_write_missing_keeps_what_is_there(tmp_path: Path) -> None:
    """The admin route's reset: a file already at a recorded name is a `serve` user's, and stays."""
    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"mine")
    (folder / "other.png").write_bytes(b"mine too")
    KeptFiles(folder, FILES).write_missing()
    assert _tree(folder) == {**FILES, "a.png": b"mine", "other.png": b"mine too"}


def test_each_test_starts_from_clean_folders_whatever_the_last_one_wrote(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import httpx

        def test_one_writes_everywhere(comfy):
            recorded = {p.relative_to(comfy.input_dir).as_posix(): p.read_bytes() for p in comfy.input_dir.rglob("*") if p.is_file()}
            assert recorded, "the default cassette's recordings had input files"
            (comfy.input_dir / "mine.png").write_bytes(b"x")
            (comfy.input_dir / "deep" / "er").mkdir(parents=True)
            name, data = next(iter(recorded.items()))
            (comfy.input_dir / name).write_bytes(bytes(len(data)))  # same size, other bytes
            (comfy.output_dir / "out.png").write_bytes(b"x")
            (comfy.output_dir / "sub").mkdir()
            (comfy.temp_dir / "tmp.png").write_bytes(b"x")
            (comfy.user_dir / "default").mkdir()
            (comfy.user_dir / "default" / "comfy.settings.json").write_text("{}")
            uploaded = httpx.post(comfy.url + "/upload/image", files={"image": ("up.png", b"png bytes", "image/png")})
            assert uploaded.status_code == 200
            (comfy.root / "recorded.json").write_text(repr(recorded))

        def test_two_finds_the_server_as_it_started(comfy):
            recorded = eval((comfy.root / "recorded.json").read_text())
            assert {p.relative_to(comfy.input_dir).as_posix(): p.read_bytes() for p in comfy.input_dir.rglob("*") if p.is_file()} == recorded
            assert sorted(p.name for p in comfy.input_dir.iterdir()) == sorted({name.split("/")[0] for name in recorded})
            assert list(comfy.output_dir.iterdir()) == list(comfy.temp_dir.iterdir()) == []
            assert list(comfy.user_dir.iterdir()) == []
            (comfy.root / "inodes.json").write_text(repr({str(p): p.stat().st_ino for p in comfy.input_dir.rglob("*")}))

        def test_three_after_a_test_that_changed_nothing_has_the_same_files(comfy):
            inodes = eval((comfy.root / "inodes.json").read_text())
            assert {str(p): p.stat().st_ino for p in comfy.input_dir.rglob("*")} == inodes
        """
    )
    suite.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)


def test_work_left_by_a_test_is_gone_and_the_worker_runs_the_next_tests_jobs(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import httpx
        import pytest

        WORKFLOW = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 1}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ComfyUI"}},
        }

        @pytest.mark.comfy_cassette(hold="queued")
        def test_one_leaves_a_held_job_and_a_queued_one(comfy):
            comfy.submit(WORKFLOW)
            comfy.submit(WORKFLOW)
            assert httpx.get(comfy.url + "/prompt").json()["exec_info"]["queue_remaining"] == 2

        def test_two_starts_empty_and_runs_its_job(comfy):
            assert httpx.get(comfy.url + "/queue").json() == {"queue_running": [], "queue_pending": []}
            assert comfy.run(WORKFLOW)["status"]["completed"]

        def test_three_after_an_idle_reset_mid_test(comfy):
            assert comfy.run(WORKFLOW)["status"]["completed"]
            comfy.reset()
            assert httpx.get(comfy.url + "/history").json() == {}
            assert comfy.run(WORKFLOW)["status"]["completed"]
        """
    )
    suite.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)


def test_a_problem_fails_its_own_tests_teardown_only(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import httpx

        def test_one_after_a_reset(comfy):
            comfy.reset()
            assert httpx.get(comfy.url + "/no/such/route").status_code == 404

        def test_two_is_clean(comfy):
            assert comfy.problems() == {"errors": [], "unmatched": []}

        def test_three_reports_an_engine_error(comfy):
            comfy.server.engine.journal.error("broken on purpose")
        """
    )
    result = suite.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=2)
    output = result.stdout.str()
    assert "ERROR at teardown of test_one_after_a_reset" in output and "unmatched request: GET /no/such/route" in output
    assert "ERROR at teardown of test_three_reports_an_engine_error" in output and "engine error: broken on purpose" in output
    assert "test_two_is_clean" not in output.split("short test summary info")[-1]


def test_past_the_racy_window_a_stat_of_each_folder_and_file_is_all_a_restore_costs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_files, "RACY_NS", 0)
    monkeypatch.setattr(kept_files, "WHOLE_SECOND_RACY_NS", 0)
    folder = tmp_path / "input"
    kept = KeptFiles(folder, FILES)
    kept.restore()
    kept.restore()  # looks again at what the first one wrote: now known
    listed: list[str] = []
    real_listing = kept_files.listing
    monkeypatch.setattr(kept_files, "listing", lambda path: listed.append(str(path)) or real_listing(path))
    kept.restore()
    assert listed == []
    time.sleep(0.05)  # past any timestamp tick: the folder's own stat changes with what is added to it
    (folder / "sub" / "deeper" / "new.png").write_bytes(b"n")
    kept.restore()
    assert listed and _tree(folder) == FILES


def test_an_empty_folder_kept_empty_and_a_user_folder_put_back(tmp_path: Path) -> None:
    emptied = KeptFiles(tmp_path / "output", {})
    emptied.restore()
    (tmp_path / "output" / "a" / "b").mkdir(parents=True)
    emptied.restore()
    assert list((tmp_path / "output").iterdir()) == []
    seeded = KeptFiles(tmp_path / "user", {"default/comfy.settings.json": b"{}"}, folders=["default/workflows"])
    seeded.restore()
    (tmp_path / "user" / "default" / "workflows" / "w.json").write_text("{}")
    seeded.restore()
    assert sorted(p.relative_to(tmp_path / "user").as_posix() for p in (tmp_path / "user").rglob("*")) == [
        "default", "default/comfy.settings.json", "default/workflows"]
