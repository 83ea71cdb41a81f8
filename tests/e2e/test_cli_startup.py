"""What ``sagakit`` imports before it does anything: the start-up guard.

Timing is ``benchmarks/cli_startup.py``'s job; here each command runs in a
fresh interpreter that reports the modules it loaded, and the heavy ones a
command does not need must not be among them: drivers, web and tracing
libraries, the AsyncAPI builder, sagakit's runtime and pydantic models.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

DRIVERS = {"asyncpg", "aio_pika", "aiormq", "redis", "celery", "kombu", "psycopg"}
LIBRARIES = {
    "fastapi",
    "starlette",
    "jinja2",
    "uvicorn",
    "opentelemetry",
    "prometheus_client",
    "yaml",
    "sqlalchemy",
    "httpx",
}
HEAVY_SAGAKIT = (
    "sagakit.definition",
    "sagakit.runtime.orchestrator",
    "sagakit.runtime.driver",
    "sagakit.runtime.worker",
    "sagakit.messaging",
    "sagakit.asyncapi",
    "sagakit.choreography",
    "sagakit.workflow",
    "sagakit.participant",
    "sagakit.dashboard",
    "sagakit.observability",
    "sagakit.examples",
)

# Runs the CLI in-process and writes sys.modules, whatever the exit status.
PROBE = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["sagakit", *args]
from sagakit.cli.main import main
main()
"""


def loaded(tmp_path: Path, *args: str) -> list[str]:
    """The modules loaded by ``sagakit ARGS`` (which must exit 0)."""
    report = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "SAGAKIT_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(report.read_text())
    return modules


# what a saga listing needs none of: the other stores' ports, the values
# only a write or a lock reading makes (dataclasses cost their build at
# import), the operator actions, the audit view of `show`, rich's tables
NOT_FOR_LISTING = (
    "sagakit.ports.entry",
    "sagakit.ports.lock_entry",
    "sagakit.cli.render",
    "sagakit.ports.event_store",
    "sagakit.ports.workflow_store",
    "sagakit.ports.notification_store",
    "sagakit.adapters.store.event_",
    "sagakit.adapters.store.workflow_",
    "sagakit.adapters.store.notification_",
    "sagakit.admin.actions",
    "sagakit.admin.repair",
    "sagakit.views.audit",
)


def tops(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def heavy_sagakit(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith(HEAVY_SAGAKIT)]


def migrated_sqlite(tmp_path: Path) -> Path:
    db = tmp_path / "empty.db"
    done = subprocess.run(
        [sys.executable, "-m", "sagakit.cli.main", "--db", str(db), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return db


def test_help_loads_no_driver_no_pydantic_no_rich(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "--help")

    assert tops(modules) & (DRIVERS | LIBRARIES) == set()
    # typer's rich help (markdown, pygments) and its pydantic coercion of
    # option values are left out too; so are rich and asyncio themselves
    assert tops(modules) & {"pydantic", "rich", "markdown_it", "pygments"} == set()
    assert "asyncio" not in modules
    assert heavy_sagakit(modules) == []
    assert "sagakit.cli.main" in modules  # the probe did run the CLI


@pytest.mark.parametrize("args", [["--version"], ["db", "--help"], ["dlq", "--help"]])
def test_other_quick_commands_load_no_driver(tmp_path: Path, args: list[str]) -> None:
    modules = loaded(tmp_path, *args)

    assert tops(modules) & (DRIVERS | LIBRARIES) == set()
    assert tops(modules) & {"markdown_it", "pygments"} == set()
    assert heavy_sagakit(modules) == []


def test_list_on_sqlite_loads_the_store_alone(tmp_path: Path) -> None:
    db = migrated_sqlite(tmp_path)

    modules = loaded(tmp_path, "--db", str(db), "list")

    assert tops(modules) & (DRIVERS | LIBRARIES) == set()
    assert heavy_sagakit(modules) == []
    assert "sagakit.adapters.store.sqlite" in modules
    assert "sagakit.adapters.store.postgres" not in modules
    # typer (>= 0.2x) would convert every option value through a pydantic
    # TypeAdapter: sagakit's plain values do without (cli.coercion); and a
    # SQLite store's reads never wait, so no event loop runs them
    assert tops(modules) & {"pydantic", "pydantic_core", "asyncio", "uvloop"} == set()
    # piped, the table is drawn without rich (cli.table.plain)
    assert "rich" not in tops(modules)
    assert "sagakit.engine.results" not in modules
    assert [m for m in modules if m.startswith(NOT_FOR_LISTING)] == []


def test_show_on_sqlite_loads_no_event_loop(tmp_path: Path) -> None:
    from sagakit.adapters.store.sqlite import SQLiteStore  # noqa: PLC0415
    from sagakit.testing.contracts.store import make_record  # noqa: PLC0415

    db = migrated_sqlite(tmp_path)

    async def one_saga() -> None:
        store = SQLiteStore(db)
        await store.create(make_record("abc12345"), [])
        await store.close()

    asyncio.run(one_saga())

    modules = loaded(tmp_path, "--db", str(db), "show", "abc123")

    assert tops(modules) & {"pydantic", "asyncio", "uvloop"} == set()
    assert heavy_sagakit(modules) == []


@pytest.mark.postgres
def test_list_on_postgres_loads_its_driver_alone(tmp_path: Path, pg_url: str) -> None:
    modules = loaded(tmp_path, "--db", pg_url, "list")

    assert tops(modules) & (DRIVERS | LIBRARIES) == {"asyncpg"}
    assert heavy_sagakit(modules) == []
    assert "sagakit.adapters.store.postgres" in modules
    # a read's few statements run on asyncio's own loop: uvloop's import
    # would cost more than it saves; no pydantic either, as on SQLite
    assert tops(modules) & {"uvloop", "pydantic", "pydantic_core", "rich"} == set()
    assert "sagakit.engine.results" not in modules
    assert [m for m in modules if m.startswith(NOT_FOR_LISTING)] == []
