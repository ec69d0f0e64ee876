"""The README's example tests run as written: each ```python block with a test is a small user suite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
WORKFLOW = next(b for b in BLOCKS if b.startswith("WORKFLOW = {"))
PRELUDE = "import json\nimport os\nimport time\n\nimport httpx\nimport pytest\n\n" + WORKFLOW + "\n"
# Needs a live ComfyUI to record from: the only example the suite cannot run.
LIVE_ONLY = ("test_generate_for_real",)
EXAMPLES = [b for b in BLOCKS if "def test_" in b and not any(name in b for name in LIVE_ONLY)]
# Later examples call the app-style client the README defines once (`def generate`).
APP = next(b for b in BLOCKS if "def generate(" in b)
APP_FUNCTIONS = APP[APP.index("def generate(") :].split("\n\n\ndef test_")[0]


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 8


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
