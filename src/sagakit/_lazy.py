"""Package attributes imported on first use (PEP 562).

A package ``__init__`` that re-exports names from its modules imports all
of them, and everything they import, as soon as anything below the package
is imported: ``import sagakit.engine.state`` would load the whole engine,
the definitions and pydantic. So the re-exporting packages (``sagakit``,
``sagakit.engine``, ``sagakit.ports``, ``sagakit.runtime``) declare their
names here instead, and each is imported when it is first read
(``from sagakit import Orchestrator`` works as before). The same names are
imported under ``if TYPE_CHECKING:`` in the package, for type checkers and
IDEs; ``tests/unit/test_lazy_exports.py`` keeps the two lists equal.
A module that is no package but hands out names of another module on first
read (``sagakit.ports.store``, ``sagakit.ports.locks``: the values only a
write or a lock reading needs, which ``sagakit list`` never builds) takes a
PEP 562 ``__getattr__`` from :func:`module_getattr` instead, and stays a
plain module: CPython specializes attribute reads on plain modules only,
and the adapters read these names per row.

Standard library only: it sits with ``errors`` at the bottom of the layers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from types import ModuleType


class LazyPackage(ModuleType):
    """A package whose ``exports`` (name -> module) load on first read.

    An export named like one of the package's modules (``decide`` in
    ``sagakit.engine``) stays the export: importing that module does not
    bind the module over it, as an eager ``from .decide import decide``
    in the package would not have either.
    """

    _exports: Mapping[str, str]

    def __getattr__(self, name: str) -> object:
        module = self._exports.get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value: object) -> None:
        if (
            isinstance(value, ModuleType)
            and name in self._exports
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            return  # the import system binding a submodule: keep the export
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(vars(self)) | set(self._exports))


def lazy_exports(package: str, modules: Mapping[str, tuple[str, ...]]) -> None:
    """Make ``package`` (its ``__name__``) load the names in ``modules``
    (module -> the names taken from it) when they are first read; call it
    at the end of the package's ``__init__``."""
    target = sys.modules[package]
    exports = {name: module for module, names in modules.items() for name in names}
    vars(target)["_exports"] = exports
    target.__class__ = LazyPackage


def module_getattr(
    namespace: dict[str, object], module: str, names: Collection[str]
) -> Callable[[str], object]:
    """The PEP 562 ``__getattr__`` of the module whose globals are
    ``namespace``: each of ``names`` is taken from ``module`` when first
    read and kept in ``namespace``; any other name is an AttributeError."""
    wanted = frozenset(names)
    owner = namespace["__name__"]

    def __getattr__(name: str) -> object:
        if name not in wanted:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
