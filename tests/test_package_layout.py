"""The package map holds: a small top level, one-way dependencies between subpackages, no hidden imports.

Each subpackage's `__init__` docstring says what it may import; this test is the same rule, checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "segloop"
TOP_LEVEL = {"__init__", "__main__", "cli", "config", "errors"}
BASE = {"config", "errors"}
#: What each subpackage may import (besides itself); the order is the layering, lowest first.
ALLOWED = {
    "io": BASE,
    "data": BASE | {"io"},
    "model": BASE | {"io", "data"},
    "display": BASE | {"io"},
    "editing": BASE | {"io", "display"},
    "store": BASE | {"io", "data", "model"},
    "training": BASE | {"io", "data", "model", "store"},
    "wholehead": BASE | {"io", "data", "display", "model"},
    "batch": BASE | {"io", "data", "model", "store", "wholehead"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _segloop_imports(path: Path) -> list[tuple[str, int]]:
    """(imported segloop subpackage or module, column) for every import statement in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module + ("." + a.name if node.module == "segloop" else "") for a in node.names]
        else:
            continue
        out += [(n.split(".")[1], node.col_offset) for n in names if n.startswith("segloop.")]
    return out


def test_top_level_holds_only_cli_config_errors_and_main():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= TOP_LEVEL, f"move {sorted(top - TOP_LEVEL)} into a subpackage"
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert subpackages == set(ALLOWED)


@pytest.mark.parametrize("sub", sorted(ALLOWED))
def test_subpackage_imports_only_what_its_docstring_allows(sub):
    doc = ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text())) or ""
    assert "May import" in doc or "may import" in doc, f"segloop/{sub}/__init__.py must say what it may import"
    for path in (PACKAGE / sub).rglob("*.py"):
        for target, col in _segloop_imports(path):
            assert col == 0, f"{path.relative_to(PACKAGE)} imports segloop.{target} inside a function"
            assert target == sub or target in ALLOWED[sub], (
                f"{path.relative_to(PACKAGE)} imports segloop.{target}; segloop.{sub} may import {sorted(ALLOWED[sub])}")


def test_allowed_dependencies_have_no_cycles():
    seen: dict[str, int] = {}

    def depth(sub: str, stack: tuple[str, ...] = ()) -> int:
        assert sub not in stack, f"dependency cycle: {' -> '.join(stack + (sub,))}"
        if sub not in seen:
            seen[sub] = 1 + max((depth(d, stack + (sub,)) for d in ALLOWED.get(sub, ()) if d in ALLOWED), default=0)
        return seen[sub]

    for sub in ALLOWED:
        depth(sub)


def test_pages_and_components_never_parse_case_names_or_card_layouts():
    """Domain facts (corrected-case names '<scan>@v<N>', card JSON layouts) live in the core only."""
    root = PACKAGE.parent
    for path in [*root.glob("pages/*.py"), *root.glob("components/*.py"), root / "app.py"]:
        text = path.read_text()
        assert '"@v"' not in text, f"{path.name} parses case names"
        assert "card.json" not in text.replace(".card.json", "") and "json.loads" not in text, (
            f"{path.name} reads JSON itself; use segloop.model.card")
