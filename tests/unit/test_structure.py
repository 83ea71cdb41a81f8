"""Size limits that keep the code easy to change: no class over 500 lines, no
module over 600 (STYLE: aim for ~300, split by concern before 600)."""

from __future__ import annotations

import ast
from pathlib import Path

import sagakit

PACKAGE = Path(sagakit.__file__).parent
MAX_CLASS_LINES = 500
MAX_MODULE_LINES = 600


def oversized(source: str, where: str) -> list[str]:
    """What in ``source`` is over the limits, as ``where:Name (N lines)``."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{where} ({lines} lines)")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            size = node.end_lineno - node.lineno + 1
            if size > MAX_CLASS_LINES:
                found.append(f"{where}:{node.name} ({size} lines)")
    return found


def test_no_class_or_module_is_over_the_limits() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        found += oversized(path.read_text(encoding="utf-8"), where)
    assert found == []


def test_the_check_finds_a_long_class_and_a_long_module() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_CLASS_LINES))
    assert oversized(f"class Big:\n{body}\n", "m.py") == ["m.py:Big (501 lines)"]
    long_module = "\n".join(f"x{i} = {i}" for i in range(MAX_MODULE_LINES + 1))
    assert oversized(long_module, "m.py") == ["m.py (601 lines)"]
    assert oversized("class Small:\n    pass\n", "m.py") == []
