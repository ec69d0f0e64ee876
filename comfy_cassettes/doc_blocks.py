"""Generated blocks in the docs pages: text between ``<!-- TAG:name -->`` and ``<!-- /TAG:name -->`` is rendered
from the code, so a table of routes, methods or differences cannot drift from what it describes. Tests compare
each page with its rendering; ``python -m`` on a module that has blocks rewrites the pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path


class DocBlocks:
    """The blocks of one tag (``api``, ``contract``), each rendered by a function of no arguments."""

    def __init__(self, tag: str, blocks: Mapping[str, Callable[[], str]]) -> None:
        self.blocks = blocks
        self._pattern = re.compile(rf"(<!-- {tag}:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /{tag}:(?P=name) -->)", re.S)

    def render(self, text: str) -> str:
        """``text`` with every block of this tag re-rendered."""
        return self._pattern.sub(lambda found: found.group(1) + self.blocks[found.group("name")]() + "\n" + found.group(4), text)

    def rewrite(self, pages: list[str]) -> int:
        """Re-render the blocks in ``pages`` (default: every page under docs/); the exit code of ``python -m``."""
        for name in pages or sorted(str(page) for page in Path("docs").rglob("*.md")):
            path = Path(name)
            path.write_text(self.render(path.read_text()))
        return 0
