"""MkDocs hook: the command-line reference page, generated from the Typer app by typer's own `utils docs`.

Typer renders the reference from the same app `--help` uses, so the page cannot drift from the command line; the
hook runs it with the interpreter MkDocs runs in and fails the build when it fails (a silent empty page is worse).
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the marker with typer's reference of ``comfy_cassettes.commands:app``, headings one level down."""
    if MARKER not in markdown:
        return markdown
    done = subprocess.run([sys.executable, "-m", "typer", "comfy_cassettes.commands", "utils", "docs", "--name", "comfy-cassettes"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or "## `comfy-cassettes serve`" not in done.stdout:
        raise RuntimeError(f"typer utils docs failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    reference = re.sub(r"^(#+) ", r"#\1 ", done.stdout, flags=re.M)
    return markdown.replace(MARKER, reference)
