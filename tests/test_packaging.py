"""What a maintainer ships: the built sdist and wheel carry the licence and metadata, the sdist no half test
suite, the README renders on the package index, and the changelog starts at the package's version."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from comfy_cassettes.version import __version__

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from this checkout (the venv's setuptools: CI builds in isolation too)."""
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy: each xdist worker that runs a test here builds once, and two builds in the checkout
    # itself would share (and break) its build/ and egg-info folders.
    source = tmp_path_factory.mktemp("source") / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "node_modules", "build", "dist", "site", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
        "test-artifacts"))
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_sdist_ships_the_package_and_licence_but_no_tests(dist: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "comfy_cassettes/version.py"} <= set(names)
    assert any(name.startswith("comfy_cassettes/data/cassettes/") for name in names)
    assert not [name for name in names if name.startswith(("tests/", "bench/", "examples/", "docs/"))]


def test_wheel_metadata_has_spdx_licence_classifiers_urls_and_keywords(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = f"comfy_cassettes-{__version__}.dist-info"
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        assert "Permission is hereby granted" in archive.read(f"{info}/licenses/LICENSE").decode()
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "MIT"
    assert "Framework :: Pytest" in metadata.get_all("Classifier", [])
    assert {url.split(",")[0] for url in metadata.get_all("Project-URL", [])} >= {"Documentation", "Source", "Changelog"}
    assert "comfyui" in metadata["Keywords"]


def test_installing_the_wheel_adds_no_pytest_plugin_and_no_vcrpy(dist: Path) -> None:
    # pytest autoloads every installed pytest11 plugin: a dependency that is one changes every suite of the project we
    # are installed into (pytest-recording refuses to run beside pytest-vcr). vcrpy's floor would upgrade a pinned vcrpy.
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = Parser().parsestr(archive.read(f"comfy_cassettes-{__version__}.dist-info/METADATA").decode())
    requirements = metadata.get_all("Requires-Dist", [])
    core = [re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0] for r in requirements if "extra ==" not in r]
    assert core and "vcrpy" not in core and "pytest" in core
    plugins = [name for name in core if name != "pytest" and importlib.metadata.distribution(name).entry_points.select(group="pytest11")]
    assert plugins == []
    vcr_extra = [r for r in requirements if re.search(r"extra == .vcr.", r)]
    assert sorted(r.split(">=")[0] for r in vcr_extra) == ["pytest-recording", "vcrpy"]


def test_twine_accepts_both(dist: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_links_and_images_work_on_the_index() -> None:
    # The index renders README.md away from the repository: a relative link or image there is broken.
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)", readme) + re.findall(r"<img [^>]*src=\"([^\"]+)", readme)
    assert targets, "the README links to the documentation"
    assert [t for t in targets if not t.startswith("https://")] == []


def test_changelog_starts_with_this_version() -> None:
    first = re.search(r"^## \[(?P<version>[^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert first is not None and first["version"] == __version__
