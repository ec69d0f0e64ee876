"""The package's layers import one way only (issue: the replay in three wings), read from the source's import
statements, so a change that breaks the rule fails here rather than in a reviewer's head."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "comfy_cassettes"
NAME = PACKAGE.name

# Lower layers first: a module may import its own layer and the layers after it in this list, never one before.
# Within replay: http -> sim -> harness -> config; everything in replay stands on contract, cassette and comfy.
LAYERS = [
    ("replay.http",),
    ("replay.sim",),
    ("replay.harness",),
    ("replay.config", "replay.options"),
    ("contract",),
    ("cassette",),
    ("comfy",),
    ("errors", "version", "listening", "doc_blocks"),
]
# Only the HTTP wing (and the recording proxy, its own HTTP server) may speak Starlette or uvicorn.
WEB_FRAMEWORKS = ("starlette", "uvicorn")
WEB_ALLOWED = ("replay.http", "replay.server", "record.proxy")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (top level, inside functions and under TYPE_CHECKING alike)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import engine`` names a module, not an attribute
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _is_module(candidate):
                    found.add(candidate)
    return found


def _is_module(name: str) -> bool:
    if not name.startswith(NAME + "."):
        return False
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] = _imports(path)
    return graph


def _layer(module: str) -> int | None:
    rel = module.removeprefix(NAME + ".")
    for index, prefixes in enumerate(LAYERS):
        if any(rel == p or rel.startswith(p + ".") for p in prefixes):
            return index
    return None


GRAPH = _graph()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_runs_up_the_layers(module: str) -> None:
    own = _layer(module)
    if own is None:
        return  # the entry points above the layers (cli, pytest plugin, record, vcr, verify, control) import freely
    upward = sorted(t for t in GRAPH[module] if t.startswith(NAME + ".") and (_layer(t) is None or _layer(t) < own)
                    and t != NAME)
    assert not upward, f"{module} imports {upward}, which sit above it"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_only_the_http_wing_speaks_starlette(module: str) -> None:
    rel = module.removeprefix(NAME + ".")
    if any(rel == p or rel.startswith(p + ".") for p in WEB_ALLOWED):
        return
    web = sorted(t for t in GRAPH[module] if t.split(".")[0] in WEB_FRAMEWORKS)
    assert not web, f"{module} imports {web}; only {', '.join(WEB_ALLOWED)} may"



def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import graph's strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_round_a_circle() -> None:
    # TYPE_CHECKING and function-level imports count too: a circle hidden from the interpreter still ties two
    # modules into one idea (the engine and the run it created did so).
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith(NAME + ".record")))
def test_recording_stands_beside_the_replay_not_on_it(module: str) -> None:
    # record and replay are two uses of the cassette, side by side: neither reaches into the other.
    sideways = sorted(t for t in GRAPH[module] if t.startswith(NAME + ".replay"))
    assert not sideways, f"{module} imports {sideways}"
