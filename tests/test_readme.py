"""Every code block of the README and the documentation site works as written: each ```python block with a test
is a small user suite run with pytester, other Python compiles, shell passes `bash -n`, YAML and ini parse, the
GitHub Actions service matches the Dockerfile, and the `serve` synopsis names only options `serve` has."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# (page, language, code) for every fenced block, in page order.
BLOCKS = [(page, lang, code) for page in PAGES
          for lang, code in re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), re.S | re.M)]
PYTHON = [code for _, lang, code in BLOCKS if lang == "python"]
WORKFLOW = next(b for b in PYTHON if b.startswith("WORKFLOW = {") and "def test_" not in b)
PRELUDE = "import json\nimport os\nimport time\n\nimport httpx\nimport pytest\n\n" + WORKFLOW + "\n"
# Needs a live ComfyUI to record from: the only example the suite cannot run.
LIVE_ONLY = ("test_generate_for_real",)
EXAMPLES = [b for b in PYTHON if "def test_" in b and not any(name in b for name in LIVE_ONLY)]
# Later examples call the app-style client the docs define once (`def generate`).
APP = next(b for b in PYTHON if "def generate(" in b)
APP_FUNCTIONS = APP[APP.index("def generate(") :].split("\n\n\ndef test_")[0]
CHECKED = {"python", "bash", "yaml", "ini", "text"}


def _id(page: Path, code: str) -> str:
    return f"{page.relative_to(ROOT)}:{code.splitlines()[0][:40] if code else ''}"


def test_the_docs_have_examples_and_every_block_says_its_language() -> None:
    assert len(EXAMPLES) >= 8
    assert [(str(page), lang) for page, lang, _ in BLOCKS if lang not in CHECKED] == []


@pytest.mark.parametrize("example", EXAMPLES, ids=[re.search(r"def (test_\w+)", b).group(1) for b in EXAMPLES])  # type: ignore[union-attr]
def test_readme_example_passes(example: str, pytester: pytest.Pytester) -> None:
    # `from __future__` and other imports must stay first: move the block's imports above the prelude.
    if "generate(" in example and "def generate(" not in example:
        example = APP[: APP.index("def generate(")] + APP_FUNCTIONS + "\n\n\n" + example
    lines = example.splitlines()
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    body = [line for line in lines if line not in imports]
    pytester.makepyfile(test_example="\n".join(imports) + "\n" + PRELUDE + "\n".join(body) + "\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=example.count("def test_"))


def test_every_other_python_block_compiles() -> None:
    for page, lang, code in BLOCKS:
        if lang == "python" and code not in EXAMPLES:
            compile(code, _id(page, code), "exec")


def test_every_shell_block_parses() -> None:
    for page, lang, code in BLOCKS:
        if lang == "bash":
            done = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True, timeout=10)
            assert done.returncode == 0, f"{_id(page, code)}: {done.stderr}"


def test_every_yaml_and_ini_block_parses() -> None:
    for page, lang, code in BLOCKS:
        if lang == "yaml":
            assert yaml.safe_load(code.replace("{...}", "{}")) is not None, _id(page, code)
        elif lang == "ini":
            configparser.ConfigParser().read_string(code)


def test_the_actions_service_runs_the_dockerfile_as_it_is() -> None:
    [service] = [yaml.safe_load(code)["jobs"]["test"]["services"]["comfyui"] for _, lang, code in BLOCKS
                 if lang == "yaml" and "services:" in code]
    dockerfile = (ROOT / "Dockerfile").read_text()
    port = re.search(r'"--port", "(\d+)"', dockerfile).group(1)  # type: ignore[union-attr]
    assert service["ports"] == [f"{port}:{port}"] and f"EXPOSE {port}" in dockerfile
    assert "COMFY_CASSETTES_ADMIN_TOKEN" in service["env"]
    assert f"http://127.0.0.1:{port}/system_stats" in service["options"]


def test_the_serve_synopsis_names_only_options_serve_has() -> None:
    from typer.testing import CliRunner

    from comfy_cassettes.cli import app

    [synopsis] = [code for _, lang, code in BLOCKS if lang == "text" and code.startswith("comfy-cassettes serve")]
    shown = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200, env={"NO_COLOR": "1", "COLUMNS": "200"}).output
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", synopsis))
    assert len(flags) > 15 and [flag for flag in sorted(flags) if flag not in shown] == []
