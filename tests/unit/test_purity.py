from __future__ import annotations

from pathlib import Path

import pytest

import sagakit
from tests.unit.test_layers import imports_of

PACKAGE = Path(sagakit.__file__).parent
PURE = ("definition", "engine")

FORBIDDEN = frozenset(
    {
        "asyncio",
        "time",
        "uuid",
        "random",
        "socket",
        "sqlite3",
        "threading",
        "psycopg",
        "psycopg2",
        "asyncpg",
        "aio_pika",
        "aiormq",
        "pika",
        "redis",
        "celery",
        "kombu",
    }
)
"""Top-level modules the pure layers must never import: I/O, clocks, ids, drivers."""

ENGINE_FORBIDDEN = ("sagakit.runtime", "sagakit.adapters", "sagakit.ports")
DEFINITION_FORBIDDEN = (*ENGINE_FORBIDDEN, "sagakit.engine")


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module ``source`` imports (at any depth, including
    ``TYPE_CHECKING`` blocks and ``importlib.import_module("x")`` calls), and of
    every name taken ``from`` one (it may be a module too)."""
    names: set[str] = set()
    for imp in imports_of(source, module):
        names.add(imp.module)
        names.update(f"{imp.module}.{name}" for name in imp.names)
    return names


def violations(source: str, module: str, banned_packages: tuple[str, ...]) -> list[str]:
    found = []
    for name in sorted(imported_modules(source, module)):
        if name.split(".")[0] in FORBIDDEN or any(
            name == p or name.startswith(p + ".") for p in banned_packages
        ):
            found.append(name)
    return found


def pure_modules() -> list[tuple[str, Path]]:
    out = []
    for layer in PURE:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            rel = path.relative_to(PACKAGE.parent).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append((".".join(parts), path))
    return out


MODULES = pure_modules()


def test_pure_layers_have_modules() -> None:
    names = {name for name, _ in MODULES}
    assert {
        "sagakit.definition",
        "sagakit.definition.saga",
        "sagakit.definition.retry",
        "sagakit.engine",
        "sagakit.engine.decide",
        "sagakit.engine.state",
        "sagakit.engine.events",
        "sagakit.engine.commands",
    } <= names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_pure_module_imports_nothing_impure(module: str, path: Path) -> None:
    banned = DEFINITION_FORBIDDEN if ".definition" in module else ENGINE_FORBIDDEN
    # __init__ modules name their own package, so resolve relative imports from it
    name = f"{module}.__init__" if path.name == "__init__.py" else module
    found = violations(path.read_text(encoding="utf-8"), name, banned)
    assert found == [], f"{module} imports {found}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio", ["asyncio"]),
        ("import time as t", ["time"]),
        ("from uuid import uuid4", ["uuid", "uuid.uuid4"]),
        ("from random import random", ["random", "random.random"]),
        ("import os, socket", ["socket"]),
        ("import sqlite3.dbapi2", ["sqlite3.dbapi2"]),
        ("from threading import Lock", ["threading", "threading.Lock"]),
        ("import psycopg", ["psycopg"]),
        ("import asyncpg", ["asyncpg"]),
        ("import aio_pika", ["aio_pika"]),
        ("from redis.asyncio import Redis", ["redis.asyncio", "redis.asyncio.Redis"]),
        ("from celery import Celery", ["celery", "celery.Celery"]),
        ("def f():\n    import time\n", ["time"]),
        ("if TYPE_CHECKING:\n    import asyncio\n", ["asyncio"]),
        ("import importlib\nimportlib.import_module('uuid')", ["uuid"]),
        ("__import__('random')", ["random"]),
        ("from sagakit.runtime import orchestrator", ["sagakit.runtime"]),
        ("import sagakit.adapters.store", ["sagakit.adapters.store"]),
        ("from sagakit import ports", ["sagakit.ports"]),
        ("from ..runtime.clock import Clock", ["sagakit.runtime.clock"]),
        ("from .. import adapters", ["sagakit.adapters"]),
        ("import timeit, datetime, typing", []),
        ("from sagakit.errors import StateError", []),
        ("from .state import SagaState", []),
    ],
)
def test_checker_catches_impure_imports(source: str, expected: list[str]) -> None:
    found = violations(source, "sagakit.engine.decide", ENGINE_FORBIDDEN)
    for name in expected:
        assert name in found, (name, found)
    if not expected:
        assert found == []


def test_definition_must_not_import_the_engine() -> None:
    found = violations(
        "from sagakit.engine.state import ErrorInfo",
        "sagakit.definition.saga",
        DEFINITION_FORBIDDEN,
    )
    assert found == ["sagakit.engine.state", "sagakit.engine.state.ErrorInfo"]
