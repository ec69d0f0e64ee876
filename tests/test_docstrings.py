"""The package's docstring examples run as written (doctest): each docstring with examples is one test.

Not ``--doctest-modules``: collecting the package's files puts the checkout on ``sys.path``, where the editable
install's ``*.egg-info`` makes pytester's in-process runs warn that ``comfy_cassettes`` cannot be rewritten.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil

import pytest

import comfy_cassettes


def _docstrings_with_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    names = ["comfy_cassettes"] + [m.name for m in pkgutil.walk_packages(comfy_cassettes.__path__, "comfy_cassettes.")]
    found: list[doctest.DocTest] = []
    for name in names:
        if name.endswith(".__main__"):
            continue  # running it is the CLI
        found.extend(test for test in finder.find(importlib.import_module(name)) if test.examples)
    return sorted(found, key=lambda test: test.name)


DOCTESTS = _docstrings_with_examples()


def test_the_package_has_docstring_examples() -> None:
    assert len(DOCTESTS) >= 7


@pytest.mark.parametrize("test", DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_docstring_examples_run(test: doctest.DocTest) -> None:
    report = io.StringIO()
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=report.write)
    assert result.failed == 0, report.getvalue()
