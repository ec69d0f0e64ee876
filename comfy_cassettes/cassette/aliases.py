"""YAML aliases in a cassette: what they expand to, so an alias bomb (a few lines that nest aliases into
billions of values) is refused at once instead of hanging every walk over the document and the JSON cache."""

from __future__ import annotations

import re
from typing import Any

# An anchor (``&name`` after a key, a dash, a bracket or a line start): without one there is nothing to expand.
_ANCHOR = re.compile(r"(?:^|[\s\[{,:-])&[^\s,\[\]{}]+", re.MULTILINE)
MIN_LIMIT = 64 << 20  # expanded bytes any cassette may reach, however short its text


def may_alias(text: str) -> bool:
    """Whether ``text`` may hold YAML anchors (a false yes only costs a walk)."""
    return _ANCHOR.search(text) is not None


def expansion_limit(text: str) -> int:
    """How large a document parsed from ``text`` may be once expanded: a cassette written without aliases is
    about its text's size, and recorded ones share little."""
    return max(MIN_LIMIT, 16 * len(text))


def expanded_size(document: Any, limit: int) -> int | None:
    """About how many bytes ``document`` takes written out with every alias expanded (strings by length, other
    values as a few bytes), or None when that passes ``limit`` or the document contains itself. Each shared
    value is measured once, so this costs what the document holds, not what it expands to."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # containers whose children are still being measured
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if not children_done:
            if key in sizes:
                continue
            if key in open_:
                return None  # a recursive alias (``&a [*a]``): no finite expansion
            open_.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if isinstance(child, (dict, list)))
            continue
        open_.discard(key)
        total = 2 + sum(sizes[id(child)] if isinstance(child, (dict, list)) else _scalar_size(child) for child in _children(node))
        if total > limit:
            return None
        sizes[key] = total
    return sizes.get(id(document), _scalar_size(document))


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    return list(node) if isinstance(node, list) else []


def _scalar_size(value: Any) -> int:
    return len(value) + 2 if isinstance(value, (str, bytes)) else 8
