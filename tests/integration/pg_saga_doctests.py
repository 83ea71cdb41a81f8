"""Running pg-saga's own doctests against ``sagakit.compat.pg_saga``.

pg-saga ships its tests as doctests in its modules (``pytest
--doctest-modules``), with a ``conftest.py`` whose fixtures (``db``,
``dal``) build pg-saga's internal DAL on a PostgreSQL database. The doctests
of its public API (what its ``__init__`` exports: ``Saga``, ``SagaReturn``,
``SagaError``, ``activerecord``, ``LogEntry``, ``LogLevel``) run here with
their module's imports pointed at the compat: the names the module
imported from pg-saga's own modules, and those it defined, come from the
compat module of the same name; its other imports and the conftest's
doctest namespace (``asyncio``, ``raises``, ``run_async``, ``uuid``) are
kept. ``getfixture("dal")`` is a database URL holding what the conftest's
``dal`` fixture wrote (saga ``test`` instance ``random`` with state
``'abc'``; saga ``event_loop`` instance ``random`` due on step
``step123``), written through the compat's public API.

The other doctests test pg-saga's internals (its DAL, connection wrapper,
stream utilities and the ``Logger`` class), which the compat does not have.

Run one: ``python -m tests.integration.pg_saga_doctests SRC MODULE QUALNAME URL``.
"""

from __future__ import annotations
import __future__

import ast
import asyncio
import doctest
import importlib
import sys
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPAT = "sagakit.compat.pg_saga"


@dataclass(frozen=True)
class Found:
    """A docstring with examples: its module (file stem) and object."""

    module: str
    qualname: str
    docstring: str
    lineno: int

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"


def exported(src: Path) -> set[str]:
    """The names pg-saga's ``__init__.py`` exports."""
    names: set[str] = set()
    for node in ast.parse((src / "__init__.py").read_text()).body:
        if isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _documented(tree: ast.Module) -> Iterator[tuple[str, ast.AST]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, node
        if isinstance(node, ast.ClassDef):
            for inner in node.body:
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{node.name}.{inner.name}", inner


def doctests(src: Path) -> list[Found]:
    """Every docstring with examples that ``--doctest-modules`` collects
    (module level, classes, their methods), in file and line order."""
    found = []
    for path in sorted(src.glob("*.py")):
        tree = ast.parse(path.read_text())
        for qualname, node in _documented(tree):
            text = ast.get_docstring(node, clean=False)  # type: ignore[arg-type]
            if text and ">>>" in text:
                lineno = getattr(node, "lineno", 0)
                found.append(Found(path.stem, qualname, text, lineno))
    return found


def public(src: Path) -> list[Found]:
    names = exported(src)
    return [f for f in doctests(src) if f.qualname.split(".")[0] in names]


def run_async(co: Coroutine[Any, Any, Any]) -> Any:
    """The conftest's helper, as it is."""
    return asyncio.get_event_loop().run_until_complete(co)


def namespace(src: Path, module: str, url: str) -> dict[str, Any]:
    """The doctest's globals: the module's namespace, imports pointed at
    the compat, plus the conftest's doctest namespace and ``getfixture``."""
    compat = importlib.import_module(f"{COMPAT}.{module}")
    globs: dict[str, Any] = {}
    tree = ast.parse((src / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:  # from .x import y
            source = importlib.import_module(COMPAT)
            for alias in node.names:
                for where in (source, _compat_module(node.module)):
                    if where is not None and hasattr(where, alias.name):
                        globs[alias.asname or alias.name] = getattr(where, alias.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            exec(compile(ast.Module([node], []), "<imports>", "exec"), globs)  # noqa: S102
    globs.update(
        (k, v)
        for k, v in vars(compat).items()
        if not k.startswith("__") and not isinstance(v, __future__._Feature)
    )
    fixtures = {"dal": url}

    def getfixture(name: str) -> Any:
        if name not in fixtures:
            raise LookupError(f"fixture {name!r} tests pg-saga's internals")
        return fixtures[name]

    globs.update(
        asyncio=asyncio,
        raises=__import__("pytest").raises,
        run_async=run_async,
        uuid=uuid,
        getfixture=getfixture,
        __name__=compat.__name__,
    )
    return globs


def _compat_module(name: str | None) -> Any:
    try:
        return importlib.import_module(f"{COMPAT}.{name}") if name else None
    except ImportError:
        return None


async def seed(url: str) -> None:
    """What pg-saga's conftest ``dal`` fixture writes, through the compat."""
    from sagakit.compat.pg_saga import Saga  # noqa: PLC0415

    for name, step, delay in (("test", "step", None), ("event_loop", "step123", -20)):
        saga = Saga(name, url)
        try:
            await saga.start("random", step, "abc", "abc", delay=delay)
        finally:
            await saga.close()


def main(argv: list[str]) -> int:
    src, module, qualname, url = Path(argv[0]), argv[1], argv[2], argv[3]
    (found,) = [
        f for f in doctests(src) if (f.module, f.qualname) == (module, qualname)
    ]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(seed(url))
    test = doctest.DocTestParser().get_doctest(
        found.docstring,
        namespace(src, module, url),
        found.name,
        str(src / f"{module}.py"),
        found.lineno,
    )
    runner = doctest.DocTestRunner(verbose=False)
    runner.run(test)
    result = runner.summarize(verbose=False)
    print(
        f"{found.name}: {result.attempted - result.failed}/{result.attempted} examples"
    )
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
