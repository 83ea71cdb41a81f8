"""pg-saga's shipped tests, run against ``sagakit.compat.pg_saga``.

pg-saga 0.1.7 is downloaded from PyPI into a throw-away folder (nothing is
installed; without a network this skips, or fails when ``CI=true``). Its
tests are the doctests in its modules; the four of its public API (the
methods ``Saga.start``, ``Saga.get_state``, ``Saga.start_event_loop`` and
the ``activerecord`` decorator) each run in a subprocess with their
imports pointed at the compat (:mod:`tests.integration.pg_saga_doctests`),
on SQLite and on PostgreSQL; the other 31 test pg-saga's internals.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.pg_saga_doctests import doctests, public
from tests.integration.pypi_originals import fetch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = [
    ("active_record", "activerecord"),
    ("saga", "Saga.start"),
    ("saga", "Saga.get_state"),
    ("saga", "Saga.start_event_loop"),
]


@pytest.fixture(scope="module")
def pg_saga_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = fetch("pg-saga==0.1.7", tmp_path_factory.mktemp("pg-saga"))
    return top / "src"


def test_the_public_api_doctests_are_the_four_run_here(pg_saga_src: Path) -> None:
    found = public(pg_saga_src)
    assert sorted((f.module, f.qualname) for f in found) == sorted(PUBLIC)
    assert len(doctests(pg_saga_src)) == 35  # the other 31 test internals


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pg_saga.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.mark.parametrize(("module", "qualname"), PUBLIC, ids=[q for _, q in PUBLIC])
def test_a_pg_saga_doctest_passes_on_the_compat(
    pg_saga_src: Path, database: str, module: str, qualname: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.pg_saga_doctests",
            str(pg_saga_src),
            module,
            qualname,
            database,
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        },
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
