"""Shared fixtures: a fresh PostgreSQL database per test, cloned from a template,
and a clean, migrated MySQL/MariaDB database per test.

The servers come from ``$SAGAKIT_TEST_POSTGRES_URL`` and
``$SAGAKIT_TEST_MYSQL_URL``. When one cannot be reached the tests that need it
are skipped, or fail when ``CI=true``. Admin statements run on their own event
loop in a helper thread, away from the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
)
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from sagakit.adapters.store import Database
    from sagakit.adapters.transport.amqp import AmqpTransport
    from sagakit.adapters.transport.nats import NatsTransport
    from sagakit.adapters.transport.rabbitmq import RabbitTransport
    from sagakit.ports.store import SagaStore
    from sagakit.ports.workflow_store import WorkflowStore
    from tests.private_services import PrivatePostgres, PrivateRabbit

# sagakit's own pytest plugin, which an installed sagakit loads by its entry
# point under this same name (so it is not loaded twice)
pytest_plugins = ["sagakit.testing.pytest_plugin"]

POSTGRES_URL = os.environ.get(
    "SAGAKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TEMPLATE = f"sagakit_template_{os.getpid()}"  # one per pytest run
T = TypeVar("T")
ADMIN_PATIENCE = 30.0
"""Seconds :func:`admin` waits for a free connection slot on the server."""


class Closable(Protocol):
    async def close(self) -> None: ...


S = TypeVar("S", bound=Closable)
A = TypeVar("A", bound="AmqpTransport")


def database_url(name: str, server: str = POSTGRES_URL) -> str:
    """``server`` (``POSTGRES_URL``) pointing at another database on it."""
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def admin(*statements: str, url: str = POSTGRES_URL) -> None:
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

    # the server is shared: a moment when every connection slot is taken (by
    # the chaos tests' processes beside this one, say) is waited out, for a
    # while, rather than failing the whole worker's session fixture
    deadline = time.monotonic() + ADMIN_PATIENCE
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=5)
            break
        except asyncpg.TooManyConnectionsError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    try:
        import sagakit.adapters.store.postgres  # noqa: F401, PLC0415 - the driver

        run_sync(admin("SELECT 1"))
    except Exception as exc:  # any failure means "no server here"
        reason = f"PostgreSQL unavailable at {POSTGRES_URL}: {exc}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    with migrated_template(POSTGRES_URL) as template:
        yield template


@contextlib.contextmanager
def migrated_template(server: str) -> Iterator[str]:
    """A database :data:`TEMPLATE` on ``server``, migrated; dropped on exit."""
    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

    async def migrate() -> None:
        url = database_url(TEMPLATE, server)
        store = await PostgresStore.connect(url, max_size=1)
        await store.close()

    drop = f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"
    run_sync(admin(drop, f"CREATE DATABASE {TEMPLATE}", url=server))
    run_sync(migrate())
    try:
        yield TEMPLATE
    finally:
        run_sync(admin(drop, url=server))


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own; dropped after."""
    with cloned_database(pg_template) as url:
        yield url


@contextlib.contextmanager
def cloned_database(template: str, server: str = POSTGRES_URL) -> Iterator[str]:
    """URL of a new database on ``server`` cloned from ``template``, dropped
    on exit."""
    name = f"sagakit_test_{uuid.uuid4().hex[:12]}"
    run_sync(admin(f"CREATE DATABASE {name} TEMPLATE {template}", url=server))
    try:
        yield database_url(name, server)
    finally:
        left = run_sync(still_open(name, server))
        run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", url=server))
    if left:
        # a connection nobody closed: found here, at the test that left it,
        # not as a ResourceWarning in whichever test the collector runs in
        pytest.fail(f"the test left {left} connection(s) open to its database")


CLOSE_GRACE = 3.0
"""Seconds a test's connections get to leave the server after it ends (a
backend outlives its client's close for a moment)."""


async def still_open(name: str, server: str = POSTGRES_URL) -> int:
    """Connections to database ``name`` still open after :data:`CLOSE_GRACE`
    seconds (0 as soon as there are none)."""
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(server, timeout=5)
    try:
        deadline = time.monotonic() + CLOSE_GRACE
        while True:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name
            )
            if not count or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
async def sql_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Database]:
    """A fresh, open database of each SQL dialect: a SQLite file in
    ``tmp_path`` (its URL is the path), then PostgreSQL (:func:`pg_url`) and
    MySQL (:func:`mysql_url`)."""
    from sagakit.adapters.store import open_database  # noqa: PLC0415

    if request.param == "sqlite":
        url = str(tmp_path / "sagakit.db")
    else:
        url = request.getfixturevalue(SERVER_URLS[request.param])
    db = await open_database(url)
    yield db
    await db.close()


class Stores(Generic[S]):
    """Opens one test's stores on one database, SQLite, PostgreSQL or MySQL
    after ``request.param``: a new handle each call, as a restarted process
    opens it; ``close`` closes them all. ``server`` opens a server's URL."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        sqlite: Callable[[], S],
        server: Callable[[str], Awaitable[S]],
    ) -> None:
        self.request, self.sqlite, self.server = request, sqlite, server
        self.opened: list[S] = []
        # the server's database is set up now, before the stores: so it is
        # dropped after they are closed, not under their open connections
        self.url = (
            None
            if request.param == "sqlite"
            else request.getfixturevalue(SERVER_URLS[request.param])
        )

    async def __call__(self) -> S:
        if self.url is None:
            store = self.sqlite()
        else:
            store = await self.server(self.url)
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.close()


BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
"""``params`` of a fixture built on :class:`Stores`."""
SERVER_URLS = {"postgres": "pg_url", "mysql": "mysql_url"}
"""The fixture that gives a database of each server's."""


async def workflow_store_at(url: str, **pool: int) -> WorkflowStore:
    """A workflow store on a server's database (PostgreSQL or MySQL)."""
    from sagakit.adapters.store.database import is_mysql  # noqa: PLC0415

    if is_mysql(url):
        from sagakit.adapters.store.workflow_mysql import (  # noqa: PLC0415
            MySQLWorkflowStore,
        )

        return await MySQLWorkflowStore.connect(url, migrate=False, **pool)
    from sagakit.adapters.store.workflow_postgres import (  # noqa: PLC0415
        PostgresWorkflowStore,
    )

    return await PostgresWorkflowStore.connect(url, migrate=False, **pool)


OpenSagaStore = Callable[[], Awaitable["SagaStore"]]


@pytest.fixture(params=BACKENDS)
async def open_saga_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenSagaStore]:
    """Opens this test's saga store (see :class:`Stores`)."""
    from sagakit import SQLiteStore  # noqa: PLC0415
    from sagakit.adapters.store.database import is_mysql  # noqa: PLC0415

    async def server(url: str) -> SagaStore:
        if is_mysql(url):
            from sagakit.adapters.store.mysql import MySQLStore  # noqa: PLC0415

            return await MySQLStore.connect(url, migrate=False, max_size=2)
        from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

        return await PostgresStore.connect(url, migrate=False, max_size=2)

    stores: Stores[SagaStore] = Stores(
        request, lambda: SQLiteStore(tmp_path / "sagas.db"), server
    )
    yield stores
    await stores.close()


# --- MySQL / MariaDB -----------------------------------------------------------

MYSQL_URL = os.environ.get("SAGAKIT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
MYSQL_PREFIX = f"sagakit_test_{os.getpid()}"  # this pytest run's databases
# What a test wrote, deleted in an order the foreign keys allow; the workflow
# history refuses DELETE (append-only), so it is truncated, when it has rows
MYSQL_TABLES = (
    "sagakit_step_history",
    "sagakit_saga",
    "sagakit_saga_count",
    "sagakit_outbox",
    "sagakit_inbox",
    "sagakit_workflow",
    "sagakit_event_route",
    "sagakit_event_log",
    "sagakit_choreography",
    "sagakit_event_outbox",
    "sagakit_lock",
    "sagakit_lock_waiter",
    "sagakit_notification",
)


def mysql_database_url(name: str) -> str:
    """``MYSQL_URL`` pointing at another database on the same server."""
    return urlunsplit(urlsplit(MYSQL_URL)._replace(path=f"/{name}"))


async def mysql_admin(*statements: str, url: str = MYSQL_URL) -> list[Any]:
    """Run ``statements`` on one connection; the rows of the last."""
    import asyncmy  # noqa: PLC0415 - only the MySQL tests need the driver

    from sagakit.adapters.store.mysql_database import options  # noqa: PLC0415

    conn = await asyncmy.connect(**options(url), autocommit=True, connect_timeout=5)
    try:
        rows: list[Any] = []
        async with conn.cursor() as cur:
            for statement in statements:
                await cur.execute(statement)
                rows = list(await cur.fetchall())
        return rows
    finally:
        conn.close()


class MySQLDatabases:
    """Migrated databases of this pytest run, one per test at a time.

    MySQL cannot clone a database, and creating and migrating one costs
    most of a second of DDL here: so each test gets a database of this run
    that no other test is using, emptied of what the test before it wrote
    (a few milliseconds)."""

    def __init__(self) -> None:
        self.free: list[str] = []
        self.made = 0

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        self.made += 1
        name = f"{MYSQL_PREFIX}_{self.made}"

        async def make() -> None:
            from sagakit.adapters.store.mysql_database import (  # noqa: PLC0415
                MySQLDatabase,
            )

            await mysql_admin(f"CREATE DATABASE {name}")
            database = await MySQLDatabase.connect(mysql_database_url(name), max_size=1)
            await database.close()

        run_sync(make())
        return name

    def give_back(self, name: str) -> None:
        url = mysql_database_url(name)
        history = run_sync(
            mysql_admin(
                "SELECT EXISTS (SELECT 1 FROM sagakit_workflow_history)", url=url
            )
        )
        wipe = [f"DELETE FROM {table}" for table in MYSQL_TABLES]  # noqa: S608 - ours
        if history[0][0]:
            wipe.insert(0, "TRUNCATE TABLE sagakit_workflow_history")
        run_sync(mysql_admin(*wipe, url=url))
        self.free.append(name)

    def drop_all(self) -> None:
        names = [f"{MYSQL_PREFIX}_{n}" for n in range(1, self.made + 1)]
        run_sync(mysql_admin(*(f"DROP DATABASE IF EXISTS {n}" for n in names)))


@pytest.fixture(scope="session")
def mysql_databases() -> Iterator[MySQLDatabases]:
    """This run's MySQL databases (skip, or fail when ``CI=true``, when the
    server cannot be reached); dropped at the end."""
    try:
        import sagakit.adapters.store.mysql  # noqa: F401, PLC0415 - the driver

        run_sync(mysql_admin("SELECT 1"))
    except Exception as exc:  # any failure means "no server here"
        where = urlsplit(MYSQL_URL).netloc.rpartition("@")[2]  # no password
        unavailable(f"MySQL unavailable at {where}: {exc}".splitlines()[0])
    databases = MySQLDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def mysql_url(mysql_databases: MySQLDatabases) -> Iterator[str]:
    """URL of a migrated MySQL database of this test's own, empty."""
    name = mysql_databases.take()
    yield mysql_database_url(name)
    mysql_databases.give_back(name)


# --- RabbitMQ ------------------------------------------------------------------

RABBITMQ_URL = os.environ.get(
    "SAGAKIT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)


async def delete_rabbitmq_queues(*names: str, exchanges: Collection[str] = ()) -> None:
    """Delete the named queues (and ``exchanges``, and the reply exchanges
    a queue used as a reply queue may have: ``<name>.owners``, ``<name>.any``);
    with no names, just check the server answers."""
    import aio_pika  # noqa: PLC0415 - only the RabbitMQ tests need the driver

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
        routes = [f"{name}.{kind}" for name in names for kind in ("owners", "any")]
        for name in (*exchanges, *routes):
            await channel.exchange_delete(name)  # no such exchange: fine
    finally:
        await connection.close()


async def rabbitmq_ready(name: str) -> int | None:
    """Messages ready in the RabbitMQ queue ``name`` (None: no such queue)."""
    import aio_pika  # noqa: PLC0415 - only the RabbitMQ tests need the driver

    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
        return declared.declaration_result.message_count or 0


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """``RABBITMQ_URL`` once the server answers (skip, or fail when ``CI=true``)."""
    try:
        run_sync(delete_rabbitmq_queues())
    except Exception as exc:  # any failure means "no server here"
        where = urlsplit(RABBITMQ_URL).netloc.rpartition("@")[2]  # no password
        reason = f"RabbitMQ unavailable at {where}: {exc!r}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return RABBITMQ_URL


@contextlib.asynccontextmanager
async def amqp_transport(kind: type[A], url: str) -> AsyncIterator[A]:
    """An AMQP transport (``RabbitTransport``, ``CeleryTransport``) with a
    queue prefix of its own; its queues and exchanges are deleted after."""
    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    transport = await kind.connect(url, prefix=prefix)
    try:
        yield transport
    finally:
        await transport.close()
        await delete_rabbitmq_queues(
            *sorted(transport.declared_queues),
            exchanges=sorted(transport.declared_exchanges),
        )


@pytest.fixture
async def rabbit_transport(rabbitmq_url: str) -> AsyncIterator[RabbitTransport]:
    """A ``RabbitTransport`` with a queue prefix of its own; its queues are
    deleted afterwards."""
    rabbitmq = pytest.importorskip("sagakit.adapters.transport.rabbitmq")
    async with amqp_transport(rabbitmq.RabbitTransport, rabbitmq_url) as transport:
        yield transport


# --- NATS ----------------------------------------------------------------------

NATS_URL = os.environ.get("SAGAKIT_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def delete_nats_streams(start: str | None = None) -> None:
    """Delete the streams whose names start with ``start``; with none, just
    check the server answers with JetStream."""
    import nats  # noqa: PLC0415 - only the NATS tests need the driver

    client = await nats.connect(
        NATS_URL, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0
    )
    try:
        js = client.jetstream()
        await js.account_info()
        if start is not None:
            for info in await js.streams_info():
                if info.config.name and info.config.name.startswith(start):
                    await js.delete_stream(info.config.name)
    finally:
        await client.close()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """``NATS_URL`` once the server answers with JetStream (skip, or fail when
    ``CI=true``)."""
    try:
        run_sync(delete_nats_streams())
    except Exception as exc:  # any failure means "no server here"
        where = urlsplit(NATS_URL).netloc.rpartition("@")[2]  # no password
        unavailable(f"NATS JetStream unavailable at {where}: {exc!r}".splitlines()[0])
    return NATS_URL


@pytest.fixture
async def nats_transport(nats_url: str) -> AsyncIterator[NatsTransport]:
    """A ``NatsTransport`` with a prefix of its own; its streams are deleted
    afterwards."""
    module = pytest.importorskip("sagakit.adapters.transport.nats")
    prefix = f"sagakit-test-{uuid.uuid4().hex[:12]}"
    transport = await module.NatsTransport.connect(nats_url, prefix=prefix)
    try:
        yield transport
    finally:
        await transport.close()
        await delete_nats_streams(f"{prefix}_")


# --- Redis ---------------------------------------------------------------------

REDIS_URL = os.environ.get("SAGAKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def delete_redis_keys(pattern: str | None = None) -> None:
    """Delete the keys matching ``pattern``; with none, just check the server."""
    from redis.asyncio import Redis  # noqa: PLC0415 - only the Redis tests need it

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
        if pattern is not None:
            keys = [key async for key in client.scan_iter(match=pattern)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``REDIS_URL`` once the server answers (skip, or fail when ``CI=true``)."""
    try:
        run_sync(delete_redis_keys())
    except Exception as exc:  # any failure means "no server here"
        where = urlsplit(REDIS_URL).netloc.rpartition("@")[2]  # no password
        reason = f"Redis unavailable at {where}: {exc}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REDIS_URL


# --- Redis Cluster -------------------------------------------------------------

CLUSTER_MASTERS = 3
CLUSTER_CONFIG = """\
bind 127.0.0.1
port {port}
cluster-port {bus}
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 5000
appendonly no
save ""
dir {dir}
logfile redis.log
"""


def unavailable(reason: str) -> NoReturn:
    """Skip the tests that need a service, or fail them when ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (the OS picks them; all distinct)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def redis_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", *args], capture_output=True, text=True, timeout=30, check=False
    )


def wait_for_nodes(
    processes: list[subprocess.Popen[bytes]],
    ports: list[int],
    args: list[str],
    answer: str,
    deadline: float,
) -> None:
    """Until ``redis-cli -p PORT ARGS`` prints ``answer`` on every port."""
    for port in ports:
        while answer not in redis_cli("-p", str(port), *args).stdout:
            if any(process.poll() is not None for process in processes):
                raise OSError("a redis-server exited (see its redis.log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis on port {port}: no {answer!r} in time")
            time.sleep(0.05)


def start_redis_cluster(root: Path, processes: list[subprocess.Popen[bytes]]) -> str:
    """Start ``CLUSTER_MASTERS`` servers in ``root``, join them and wait for
    ``cluster_state:ok``; the address of the first. Each process is added to
    ``processes`` as it starts, for the caller to stop."""
    ports = free_ports(2 * CLUSTER_MASTERS)  # client ports, then bus ports
    nodes = ports[:CLUSTER_MASTERS]
    for port, bus in zip(nodes, ports[CLUSTER_MASTERS:], strict=True):
        workdir = root / str(port)
        workdir.mkdir()
        config = workdir / "redis.conf"
        config.write_text(CLUSTER_CONFIG.format(port=port, bus=bus, dir=workdir))
        processes.append(
            subprocess.Popen(
                ["redis-server", str(config)],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    deadline = time.monotonic() + 30
    wait_for_nodes(processes, nodes, ["ping"], "PONG", deadline)
    addresses = [f"127.0.0.1:{port}" for port in nodes]
    created = redis_cli(
        "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"
    )
    if created.returncode != 0:
        raise OSError(f"redis-cli --cluster create: {created.stdout}{created.stderr}")
    wait_for_nodes(processes, nodes, ["cluster", "info"], "cluster_state:ok", deadline)
    return addresses[0]


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://`` URL of a 3-master Redis Cluster started for this
    session from the installed ``redis-server`` (skip, or fail when
    ``CI=true``, when it is missing or does not start); stopped at the end."""
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        unavailable("Redis Cluster unavailable: redis-server or redis-cli not found")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        try:
            address = start_redis_cluster(
                tmp_path_factory.mktemp("redis-cluster"), processes
            )
        except (OSError, subprocess.SubprocessError) as exc:
            unavailable(f"Redis Cluster did not start: {exc}".splitlines()[0])
        yield f"redis+cluster://{address}"
    finally:
        for process in processes:
            process.kill()
            process.wait()


# --- private servers, to restart -----------------------------------------------


@pytest.fixture(scope="session")
def private_servers() -> Iterator[tuple[PrivatePostgres, PrivateRabbit]]:
    """A PostgreSQL server and a RabbitMQ node of this session's own (see
    :mod:`tests.private_services`), for the tests that restart them; the
    shared servers are never stopped. Skipped, or failed when ``CI=true``,
    if they cannot be started; stopped and removed at the end."""
    from tests.private_services import (  # noqa: PLC0415 - only restart tests
        PrivatePostgres,
        PrivateRabbit,
        ServiceError,
    )

    started: list[PrivatePostgres | PrivateRabbit] = []
    try:
        try:
            rabbit = PrivateRabbit()
            started.append(rabbit)
            rabbit.start_detached()  # boots while PostgreSQL is made
            postgres = PrivatePostgres()
            started.append(postgres)
            postgres.start_new()
            rabbit.await_startup(60)
        except ServiceError as exc:
            unavailable(f"private servers did not start: {exc}".splitlines()[0])
        yield postgres, rabbit
    finally:
        for server in started:
            with contextlib.suppress(ServiceError):
                server.close()


@pytest.fixture(scope="session")
def private_pg_template(
    private_servers: tuple[PrivatePostgres, PrivateRabbit],
) -> Iterator[str]:
    """Like :func:`pg_template`, on the private PostgreSQL server."""
    with migrated_template(private_servers[0].url) as template:
        yield template


@pytest.fixture
def private_pg_url(
    private_servers: tuple[PrivatePostgres, PrivateRabbit], private_pg_template: str
) -> Iterator[str]:
    """Like :func:`pg_url`, on the private PostgreSQL server."""
    postgres = private_servers[0]
    postgres.ensure()  # a test before may have left it stopped
    with cloned_database(private_pg_template, postgres.url) as url:
        yield url


@pytest.fixture
def private_rabbitmq_url(
    private_servers: tuple[PrivatePostgres, PrivateRabbit],
) -> str:
    """Like :func:`rabbitmq_url`, on the private RabbitMQ node."""
    rabbit = private_servers[1]
    rabbit.ensure()
    return rabbit.url
