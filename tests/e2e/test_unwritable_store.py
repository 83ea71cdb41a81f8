"""A store that refuses writes is an error, reported on one line.

``sagakit recover`` and ``sagakit worker --until-idle`` on a database they
cannot write to exit 2 with one ``error:`` line and no traceback, whether
the refusal comes at the first claim (a read-only SQLite file) or in the
middle of a saga (a PostgreSQL role whose write privileges are revoked
while a step runs); and the saga is not lost: once writes are allowed
again, it finishes. A store that only fails for a while is retried for
``--store-retry`` seconds, then given up on the same way.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from sagakit import Orchestrator, SagaStatus
from sagakit.adapters.store import open_store_async
from tests.conftest import admin, run_sync
from tests.e2e import recover_app, unwritable_app

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "recover": ["recover"],
    "worker": ["worker", "--until-idle", "--lease", "5"],
}


def sagakit(
    url: str, *args: str, prefix: Sequence[str] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """``sagakit --db URL ARGS`` in a process (run through ``prefix``)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "sagakit.cli.main", "--db", url, *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_error_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    shown = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 2, shown
    assert "Traceback" not in done.stderr, shown
    assert "resumed" not in done.stdout, shown
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == [lines[-1]], shown
    for word in words:
        assert word in errors[0], shown
    return errors[0]


async def submit(url: str, saga: object, n: int = 1) -> str:
    store = await open_store_async(url)
    try:
        return await Orchestrator(store).submit(saga, {"n": n})  # type: ignore[arg-type]
    finally:
        await store.close()


async def status_of(url: str, saga_id: str) -> SagaStatus:
    store = await open_store_async(url, migrate=False)
    try:
        return (await store.get(saga_id)).status
    finally:
        await store.close()


# -- a read-only SQLite file -----------------------------------------------


def read_only_prefix() -> list[str]:
    """How to run a process that file permissions apply to: as is, or for
    root, without the capabilities that override them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions do not apply")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_read_only_sqlite_file(tmp_path: Path, command: str) -> None:
    db = tmp_path / "sagas.db"
    saga_id = asyncio.run(submit(str(db), recover_app.saga))
    db.chmod(0o444)
    done = sagakit(
        str(db),
        *COMMANDS[command],
        "tests.e2e.recover_app:saga",
        prefix=read_only_prefix(),
    )
    assert_one_error_line(done, "readonly database")

    db.chmod(0o644)
    again = sagakit(str(db), "recover", "tests.e2e.recover_app:saga")
    assert again.returncode == 0, again.stderr
    assert asyncio.run(status_of(str(db), saga_id)) is SagaStatus.SUCCEEDED


# -- a PostgreSQL role that loses its write privileges mid-saga --------------


@pytest.fixture
def role_url(pg_url: str) -> Iterator[tuple[str, str]]:
    """(the role's URL to the test database, its name): a role that may
    read and write every table, and that the test may take writes from."""
    role = f"sagakit_rw_{uuid.uuid4().hex[:10]}"
    run_sync(admin(f'CREATE ROLE "{role}" LOGIN'))
    run_sync(
        admin(
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
            f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
            url=pg_url,
        )
    )
    parts = urlsplit(pg_url)
    netloc = f"{role}@{parts.hostname}:{parts.port or 5432}"
    yield urlunsplit(parts._replace(netloc=netloc)), role
    run_sync(admin(f'DROP OWNED BY "{role}"', url=pg_url))
    run_sync(admin(f'DROP ROLE IF EXISTS "{role}"'))


@pytest.mark.postgres
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_writes_revoked_in_the_middle_of_a_saga(
    pg_url: str, role_url: tuple[str, str], tmp_path: Path, command: str
) -> None:
    url, role = role_url
    saga_id = asyncio.run(submit(pg_url, unwritable_app.saga))
    env = {
        "UNWRITABLE_ADMIN_URL": pg_url,
        "UNWRITABLE_ROLE": role,
        "UNWRITABLE_ONCE": str(tmp_path / "revoked"),
    }
    done = sagakit(url, *COMMANDS[command], "tests.e2e.unwritable_app:saga", **env)
    assert_one_error_line(done, "permission denied", "resumable")
    assert (tmp_path / "revoked").exists()  # the step ran; its commit was refused
    assert asyncio.run(status_of(pg_url, saga_id)) is SagaStatus.RUNNING

    run_sync(admin(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"', url=pg_url))
    again = sagakit(url, "recover", "tests.e2e.unwritable_app:saga", **env)
    assert again.returncode == 0, again.stderr
    assert asyncio.run(status_of(pg_url, saga_id)) is SagaStatus.SUCCEEDED


# -- a store that fails for a while ------------------------------------------


@pytest.mark.postgres
def test_an_until_idle_worker_gives_up_past_its_retry_budget(pg_url: str) -> None:
    """Claims time out (a 200 ms statement timeout) while the test holds a
    lock on the saga table: the worker retries for --store-retry, then
    says it gave up."""
    saga_id = asyncio.run(submit(pg_url, recover_app.saga))

    async def locked() -> subprocess.CompletedProcess[str]:
        import asyncpg  # noqa: PLC0415 - the PostgreSQL tests' driver

        holder = await asyncpg.connect(pg_url)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE sagakit_saga IN ACCESS EXCLUSIVE MODE")
                return await asyncio.to_thread(
                    sagakit,
                    f"{pg_url}?statement_timeout=200",
                    "worker",
                    "tests.e2e.recover_app:saga",
                    "--until-idle",
                    "--store-retry",
                    "1",
                )
        finally:
            await holder.close()

    done = asyncio.run(locked())
    line = assert_one_error_line(done, "gave up", "claims failed for")
    assert "canceling statement due to statement timeout" in line
    assert "claim failed; retrying" in done.stderr  # retried before giving up
    assert asyncio.run(status_of(pg_url, saga_id)) is SagaStatus.RUNNING
