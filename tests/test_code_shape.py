"""The package keeps the shape the README's architecture tour promises: small modules, classes, functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "otel_plugin_logs"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 320  # "about 300": a facade's docstrings may take it a little over
MAX_FUNCTION_LINES = 60
MODULES = sorted(PACKAGE.rglob("*.py"))


def _span(node: ast.AST) -> int:
    return int(getattr(node, "end_lineno", 0)) - int(getattr(node, "lineno", 0)) + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small(path: Path) -> None:
    """No module is longer than the limit."""
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_classes_and_functions_are_small(path: Path) -> None:
    """No class and no function of the module is longer than its limit."""
    too_long = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ClassDef) and _span(node) > MAX_CLASS_LINES:
            too_long.append(f"class {node.name}: {_span(node)} lines")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _span(node) > MAX_FUNCTION_LINES:
            too_long.append(f"def {node.name}: {_span(node)} lines")
    assert too_long == []
