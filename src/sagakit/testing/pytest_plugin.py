"""sagakit's pytest plugin, loaded by pytest once sagakit is installed (the
``pytest11`` entry point ``sagakit.testing.pytest_plugin``).

Fixtures (every name starts with ``sagakit_``, to stay out of the way of a
project's own):

* ``sagakit_clock``: a :class:`~sagakit.testing.FakeClock`;
* ``sagakit_memory_store``: an in-memory saga store;
* ``sagakit_sqlite_store``: a SQLite store in a file of ``tmp_path``;
* ``sagakit_postgres_url`` and ``sagakit_postgres_store``: a throw-away,
  migrated PostgreSQL database on the server named by
  ``--sagakit-postgres-url``, the ``sagakit_postgres_url`` ini option or
  ``$SAGAKIT_TEST_POSTGRES_URL`` (in that order), dropped after the test; the
  test is skipped, saying so, when none is set;
* ``sagakit_store``: the store ``sagakit_testbed`` runs on (in memory;
  override it in a ``conftest.py`` to run the testbed on another);
* ``sagakit_transport``: an in-process transport;
* ``sagakit_testbed``: a started :class:`~sagakit.testing.testbed.Testbed`:
  an orchestrator on ``sagakit_store`` with ``sagakit_clock``, serving
  ``sagakit_transport``, with the participants the test attaches;
* ``sagakit_orchestrator``: the testbed's orchestrator;
* ``sagakit_check``: ``await sagakit_check(saga, context)`` runs
  :func:`~sagakit.testing.check_saga` and fails the test with the report
  when an invariant breaks.

The marker ``@pytest.mark.sagakit_check(max_points=..., run_timeout=...)``
sets the options ``sagakit_check`` passes to ``check_saga`` for one test.

The asynchronous fixtures need pytest-asyncio (``pip install
'sagakit[testing]'``). This module imports nothing of sagakit until a
fixture is used, so it costs no start-up time to suites that do not.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sagakit.adapters.store.postgres import PostgresStore
    from sagakit.adapters.store.sqlite import SQLiteStore
    from sagakit.adapters.transport.inprocess import InProcessTransport
    from sagakit.definition.saga import Saga
    from sagakit.ports.store import SagaStore
    from sagakit.runtime.orchestrator import Orchestrator
    from sagakit.testing.check import CheckReport
    from sagakit.testing.clock import FakeClock
    from sagakit.testing.testbed import Testbed

POSTGRES_ENV = "SAGAKIT_TEST_POSTGRES_URL"
POSTGRES_OPTION = "--sagakit-postgres-url"
POSTGRES_INI = "sagakit_postgres_url"
CHECK_MARKER = "sagakit_check"
NO_POSTGRES = (
    f"no PostgreSQL server configured for sagakit_postgres_url: give "
    f"{POSTGRES_OPTION}, the {POSTGRES_INI} ini option or ${POSTGRES_ENV}"
)


def async_fixture(fn: Callable[..., Any]) -> Any:
    """``pytest_asyncio.fixture(fn)``; without pytest-asyncio, a fixture
    that fails the test saying what to install."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - the testing extra installs it

        @pytest.fixture(name=fn.__name__)
        def needs_asyncio() -> None:
            pytest.fail(
                f"{fn.__name__} is asynchronous and needs pytest-asyncio: "
                "pip install 'sagakit[testing]'"
            )

        return needs_asyncio
    return pytest_asyncio.fixture(fn)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sagakit")
    group.addoption(
        POSTGRES_OPTION,
        metavar="URL",
        default=None,
        help="PostgreSQL server on which sagakit_postgres_url makes a "
        f"throw-away database per test (default: the {POSTGRES_INI} ini "
        f"option, else ${POSTGRES_ENV})",
    )
    parser.addini(
        POSTGRES_INI,
        "PostgreSQL server for sagakit's throw-away test databases",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{CHECK_MARKER}(**options): keyword arguments of check_saga "
        "(max_points, run_timeout, participants, ...) for the sagakit_check "
        "fixture",
    )


def postgres_server(config: pytest.Config) -> str | None:
    """The configured PostgreSQL URL (option, ini, environment), or None."""
    for found in (
        config.getoption(POSTGRES_OPTION),
        config.getini(POSTGRES_INI),
        os.environ.get(POSTGRES_ENV),
    ):
        if isinstance(found, str) and found.strip():
            return found.strip()
    return None


# -- clock, stores, transport ---------------------------------------------


@pytest.fixture
def sagakit_clock() -> FakeClock:
    """A clock whose sleeps return at once, moving time forward."""
    from sagakit.testing.clock import FakeClock

    return FakeClock()


@pytest.fixture
def sagakit_memory_store() -> SagaStore:
    """A saga store in memory, empty."""
    from sagakit.adapters.store.memory import InMemoryStore

    return InMemoryStore()


@async_fixture
async def sagakit_sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A SQLite store in ``tmp_path/sagakit.db``, closed after the test."""
    from sagakit.adapters.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "sagakit.db")
    yield store
    await store.close()


@async_fixture
async def sagakit_postgres_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """URL of a new PostgreSQL database, migrated, dropped after the test."""
    server = postgres_server(request.config)
    if server is None:
        pytest.skip(NO_POSTGRES)
    from sagakit.adapters.store.postgres import PostgresStore
    from sagakit.adapters.store.scratch import scratch_database

    async with scratch_database(server) as url:
        store = await PostgresStore.connect(url, max_size=1)  # migrates
        await store.close()
        yield url


@async_fixture
async def sagakit_postgres_store(
    sagakit_postgres_url: str,
) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store on ``sagakit_postgres_url``, closed after."""
    from sagakit.adapters.store.postgres import PostgresStore

    store = await PostgresStore.connect(sagakit_postgres_url)
    yield store
    await store.close()


@pytest.fixture
def sagakit_store(sagakit_memory_store: SagaStore) -> SagaStore:
    """The store ``sagakit_testbed`` runs on: in memory. Override this
    fixture to pick another (``sagakit_sqlite_store``, ...)."""
    return sagakit_memory_store


@async_fixture
async def sagakit_transport() -> AsyncIterator[InProcessTransport]:
    """An in-process transport (queues in this event loop), closed after."""
    from sagakit.adapters.transport.inprocess import InProcessTransport

    transport = InProcessTransport()
    yield transport
    await transport.close()


# -- testbed and check_saga -----------------------------------------------


@async_fixture
async def sagakit_testbed(
    sagakit_store: SagaStore,
    sagakit_clock: FakeClock,
    sagakit_transport: InProcessTransport,
) -> AsyncIterator[Testbed]:
    """A started testbed: ``run``, ``start_saga``, ``advance``, ``attach``."""
    from sagakit.testing.testbed import Testbed

    async with Testbed(
        sagakit_store, clock=sagakit_clock, transport=sagakit_transport
    ) as bed:
        yield bed


@pytest.fixture
def sagakit_orchestrator(sagakit_testbed: Testbed) -> Orchestrator:
    """The testbed's orchestrator (fake clock, serving the in-process
    transport); ``sagakit_testbed.advance(seconds)`` skips time."""
    return sagakit_testbed.orchestrator


@pytest.fixture
def sagakit_check(
    request: pytest.FixtureRequest,
) -> Callable[..., Awaitable[CheckReport]]:
    """``await sagakit_check(saga, context, **options)``: ``check_saga``,
    failing the test with the report if an invariant breaks; the
    ``sagakit_check`` marker's keywords are its default options."""
    from sagakit.testing.check import check_saga

    marker = request.node.get_closest_marker(CHECK_MARKER)
    defaults: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}

    async def check(
        saga: Saga[Any], context: Any = None, **options: Any
    ) -> CheckReport:
        report = await check_saga(saga, context, **{**defaults, **options})
        if not report.ok:
            pytest.fail(report.summary(), pytrace=False)
        return report

    return check
