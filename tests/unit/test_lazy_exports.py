"""The packages whose names load on first use (``sagakit._lazy``): what type
checkers see (the ``if TYPE_CHECKING:`` imports), what ``__all__`` promises
and what the package hands out at run time are the same names, from the
same modules, and reading one imports only its module."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import sagakit
from sagakit._lazy import LazyPackage

PACKAGE = Path(sagakit.__file__).parent
LAZY = (
    "sagakit",
    "sagakit.admin",
    "sagakit.engine",
    "sagakit.ports",
    "sagakit.runtime",
    "sagakit.testing",
    "sagakit.hooks",
)


def type_checking_imports(package: str) -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` block of ``package``."""
    path = PACKAGE.parent.joinpath(*package.split("."), "__init__.py")
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                for alias in imp.names:
                    found[alias.asname or alias.name] = imp.module or ""
    return found


@pytest.mark.parametrize("package", LAZY)
def test_typed_names_are_the_lazy_names(package: str) -> None:
    module = importlib.import_module(package)
    assert isinstance(module, LazyPackage)
    exports = dict(vars(module)["_exports"])
    assert exports == type_checking_imports(package)
    eager = {name for name in module.__all__ if name in vars(module)}
    assert sorted(module.__all__) == sorted(set(exports) | eager)


@pytest.mark.parametrize("package", LAZY)
def test_every_name_is_its_module_s_object(package: str) -> None:
    module = importlib.import_module(package)
    for name, home in dict(vars(module)["_exports"]).items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name)
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = module.nope


def test_an_export_named_like_its_module_stays_the_export() -> None:
    # sagakit.engine.decide, the module, was imported (by the runtime, here by
    # this file): the package still hands out decide(), the function
    module = importlib.import_module("sagakit.engine.decide")
    engine = importlib.import_module("sagakit.engine")

    assert engine.decide is module.decide
    assert callable(engine.decide)
