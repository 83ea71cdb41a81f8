"""Fixtures of the tests with real processes: a database of each dialect
(SQLite, PostgreSQL, MySQL),
and the processes started on it (killed at the end)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import Procs


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "e2e.db")
    fixture = {"postgres": "pg_url", "mysql": "mysql_url"}[request.param]
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def procs(url: str, tmp_path: Path) -> Iterator[Procs]:
    running = Procs(url, tmp_path / "effects.txt", tmp_path)
    yield running
    running.kill_all()
