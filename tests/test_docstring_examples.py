"""The Examples in the core's docstrings are true: each one runs as a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import segloop

MODULES = sorted(m.name for m in pkgutil.walk_packages(segloop.__path__, "segloop.") if m.name != "segloop.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (run python -m doctest -v)"
