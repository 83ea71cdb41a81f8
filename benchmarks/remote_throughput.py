"""Throughput of a remote 3-step saga over RabbitMQ: sagakit against Celery.

Both systems run the same saga on the same broker in the same run: three
steps, each carried out by another service (``a``, ``b``, ``c``) whose
handler returns a small dict; the orchestrator keeps the saga's state in
SQLite. A third system, the floor, measures what the broker and machine allow
at all. Scenarios:

sk-seq        sagakit, one saga at a time (``await orch.run(saga)``)
sk-conc       sagakit, ``--concurrency`` sagas in flight (``asyncio.gather``)
celery-seq    the Celery saga (saga-framework style), one saga at a time
celery-conc   the Celery saga, ``--concurrency`` sagas in flight
floor-seq     bare aio-pika, one "saga" at a time
floor-conc    bare aio-pika, ``--concurrency`` "sagas" in flight

sagakit: the orchestrator runs in this process (``Orchestrator`` with a store
and ``RabbitTransport``, inside ``serving()``); its store is SQLite in a temp
directory, or with ``--store postgres`` a fresh PostgreSQL database. Each
service is a ``Participant`` (``benchmarks/remote_services.py``) in a process
of its own, started as ``python -m sagakit.cli.main participant``, with its
own SQLite inbox.

Celery (``benchmarks/celery_saga_peer.py``, no sagakit code): this process
inserts the saga's state row in SQLite and sends step 1 as a Celery task; one
Celery worker per service runs it and sends ``{task}.response.success`` as a
Celery task to the orchestrator's queue, where the orchestrator's own Celery
worker records the step in SQLite and sends the next step; after the last it
sends a finish notice that this process consumes. JSON serializer.

The floor (``benchmarks/amqp_echo.py``, no saga library, no database) is an
upper bound, not a competitor: the same messages as a sagakit saga with no
saga work, no state and no inbox. This process publishes each step to an echo
service (one process per service, consuming with prefetch 32 like sagakit's
participants), which publishes the body back to this process's reply queue;
then the next step. 6 broker messages per saga, all persistent, published
with confirms and acked by hand, as on the sagakit side. No saga library can
beat it on this broker and machine, so sagakit/Celery can exceed the target
only where floor/Celery does; the table shows each sagakit row against the
floor too, and the report prints floor/Celery as the ceiling.

Both sides get the same processes: three participant processes, plus the
orchestrator (in this process for sagakit; a Celery worker, fed by this
process, for Celery); the floor has three echo processes and its driver in
this process. Sagas in flight are started in batches of ``--concurrency`` and
each batch is awaited, on every side. Each row is the median of ``--repeats``
timed runs after one warm-up run; the three systems' runs alternate, so that
a change in the machine's load hits all of them. Numbers
are printed (and written with ``--json``), never asserted: the exit status is
0 whatever they are.

    python benchmarks/remote_throughput.py [--n 400] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika

from sagakit import Orchestrator, SagaStatus, SQLiteStore
from sagakit.adapters.transport.rabbitmq import RabbitTransport
from sagakit.ports.store import SagaStore
from sagakit.runtime import loop as event_loop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # benchmarks/durable_path.py, also via runpy
from durable_path import StoreTimer, inbox_step_seconds, write_ceiling  # noqa: E402

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"
BROKER_ENV = "SAGAKIT_TEST_RABBITMQ_URL"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DSN_ENV = "SAGAKIT_TEST_POSTGRES_URL"
SAGAKIT_PREFIX = "sagakit"  # RabbitTransport's default, which the CLI uses
STEPS = 3
CELERY_MESSAGES = 2 * STEPS + 1  # step tasks, response tasks, the finish notice
TARGET_RATIO = 5.0  # sagakit / Celery, sagas/s
FLOOR_TARGET = 0.85  # sagakit / the floor, sagas/s (issue 17)
READY_TIMEOUT = 60.0  # seconds for the subprocesses to start consuming
BATCH_TIMEOUT = 120.0  # seconds for one batch of sagas to end
POOL_SIZE = 20  # asyncpg pool of the orchestrator with --store postgres


# -- results -------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str  # first column of the table; stable, the smoke test reads it
    label: str
    library: str  # "sagakit", "celery" or "floor"
    mode: str  # "seq" or "conc"
    concurrency: int
    n: int


@dataclass
class Result:
    scenario: Scenario
    runs: list[float] = field(default_factory=list)  # sagas/s of each timed run
    messages: int = 0  # broker messages over the timed runs
    sagas: int = 0
    cpu_here: float = 0.0  # CPU seconds of this process over the timed runs
    cpu_services: float = 0.0  # of the side's service processes (see cpu_of)
    write_s: float = 0.0  # the orchestrator store's write calls (sagakit, seq)

    @property
    def sagas_per_s(self) -> float:
        return statistics.median(self.runs)

    @property
    def messages_per_saga(self) -> float:
        return self.messages / self.sagas if self.sagas else 0.0

    def cpu_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.sagas if self.sagas else 0.0


def scenarios(
    n: int, concurrency: int, celery_pool: str, batch: bool = False
) -> list[Scenario]:
    rows = []
    for mode, conc in (("seq", 1), ("conc", concurrency)):
        flight = f", {conc} in flight" if conc > 1 else ", one at a time"
        rows.append(
            Scenario(
                f"sk-{mode}",
                f"sagakit, RabbitTransport{flight}",
                "sagakit",
                mode,
                conc,
                n,
            )
        )
        if batch:
            rows.append(
                Scenario(
                    f"skb-{mode}",
                    f"sagakit, RabbitTransport ?batch=true{flight}",
                    "sagakit-batch",
                    mode,
                    conc,
                    n,
                )
            )
        rows.append(
            Scenario(
                f"celery-{mode}",
                f"Celery saga, {celery_pool} pool{flight}",
                "celery",
                mode,
                conc,
                n,
            )
        )
        rows.append(
            Scenario(
                f"floor-{mode}",
                f"floor: bare aio-pika, no saga library{flight}",
                "floor",
                mode,
                conc,
                n,
            )
        )
    return rows


# -- subprocesses and the broker ----------------------------------------------


class Processes:
    """Subprocesses in their own process groups, each logging to a file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(  # noqa: S603 - our own commands
                command,
                cwd=HERE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {proc.returncode}:\n"
                    f"{self.log_tail(name)}"
                )

    def stop_all(self) -> None:
        """SIGTERM every group (a warm shutdown), then SIGKILL what is left."""
        for proc in self.running.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        self.running.clear()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 if unknown
    (no ``/proc``). Threads count; children (a prefork pool's) do not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVICE_PROCESSES = {
    "sagakit": "sagakit-{tag}-",
    "sagakit-batch": "sagakit-{tag}b-",
    "celery": "celery-",
    "floor": "floor-",
}
"""Names of each side's service processes (participants, Celery workers with
the Celery orchestrator, echo services) start with these."""


def cpu_of(procs: Processes, library: str, tag: str) -> float:
    """CPU seconds so far of the service processes of ``library``'s side."""
    prefix = SERVICE_PROCESSES[library].format(tag=tag)
    return sum(
        process_cpu(p.pid)
        for name, p in procs.running.items()
        if name.startswith(prefix)
    )


async def consumer_count(url: str, queue: str) -> int:
    """Consumers of ``queue`` on the broker; 0 if it does not exist yet."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        return declared.declaration_result.consumer_count or 0


async def wait_for_consumers(url: str, queues: list[str], procs: Processes) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = list(queues)
    while waiting:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no consumer on {', '.join(waiting)} in time")
        counts = [await consumer_count(url, q) for q in waiting]
        waiting = [q for q, count in zip(waiting, counts, strict=True) if count < 1]
        if waiting:
            await asyncio.sleep(0.2)


async def delete_from_broker(url: str, queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


async def broker_version(url: str) -> str:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        properties = connection.transport.connection.server_properties
        version = properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)


def child_env(tag: str, extra: dict[str, str]) -> dict[str, str]:
    paths = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "SAGAKIT_BENCH_TAG": tag,
        **extra,
    }


def import_bench_module(name: str) -> ModuleType:
    """A module next to this script (its environment variables are set first)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(name)


# -- sagakit -------------------------------------------------------------------


class SagakitSide:
    """The orchestrator of the sagakit side, serving in this process."""

    def __init__(self, store: SagaStore, transport: RabbitTransport, tag: str) -> None:
        services = import_bench_module("remote_services")
        self.saga = services.remote_saga(tag)
        self.context = services.Order
        self.store = store
        self.transport = transport
        self.writes = StoreTimer(store)  # before the orchestrator takes its calls
        self.orchestrator = Orchestrator(
            store,
            [self.saga],
            transport=transport,
            reply_queue=services.reply_queue_of(tag),
        )
        self.replies = 0
        intake = self.orchestrator.intake
        handle = intake.handle_reply

        async def counting(message: Any) -> None:
            self.replies += 1
            await handle(message)

        # the reply consumer is subscribed with this attribute in serving()
        intake.handle_reply = counting  # type: ignore[method-assign]
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> SagakitSide:
        await self.stack.enter_async_context(self.orchestrator.serving())
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stack.aclose()
            await self.orchestrator.close()
        finally:
            await self.transport.close()
            await self.store.close()

    def messages(self) -> int:
        relay = self.orchestrator.relay
        return self.replies + (relay.published if relay is not None else 0)

    async def timed(self, count: int, concurrency: int) -> tuple[float, int]:
        """Run ``count`` sagas; returns (seconds, broker messages)."""
        orch, saga = self.orchestrator, self.saga
        before = self.messages()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for first in range(0, count, concurrency):
            batch = min(concurrency, count - first)
            runs = (
                orch.run(saga, self.context(order_id=first + i)) for i in range(batch)
            )
            results = await asyncio.wait_for(asyncio.gather(*runs), BATCH_TIMEOUT)
            wrong = [r for r in results if r.status is not SagaStatus.SUCCEEDED]
            if wrong:
                raise RuntimeError(f"a saga ended {wrong[0].status}: {wrong[0].error}")
        elapsed = loop.time() - start
        # let the relay's counter catch up: it counts what it forgot, every
        # flush_interval (or a full batch), once the broker confirmed it
        relay = orch.relay
        await asyncio.sleep(0.05 + (relay.flush_interval if relay else 0.0))
        return elapsed, self.messages() - before


# -- Celery --------------------------------------------------------------------


class CeleryDriver:
    """Starts Celery sagas and waits for their finish notices (one thread)."""

    def __init__(self, stop: threading.Event) -> None:
        from kombu import Consumer, Exchange, Queue  # noqa: PLC0415 - the peer's

        self.peer = import_bench_module("celery_saga_peer")
        self.stop = stop
        self.pending: set[str] = set()
        self.failed: list[str] = []
        self.connection = self.peer.app.connection_for_read()
        self.connection.ensure_connection(max_retries=3)
        done = self.peer.DONE_QUEUE
        self.consumer = Consumer(
            self.connection.default_channel,
            queues=[Queue(done, Exchange(done), routing_key=done)],
            callbacks=[self._finished],
            accept=["json"],
        )
        self.consumer.consume()

    def _finished(self, body: Any, message: Any) -> None:
        saga_id, status = body[0]  # protocol 2: [args, kwargs, embed]
        self.pending.discard(saga_id)
        if status != "succeeded":
            self.failed.append(saga_id)
        message.ack()

    def timed(self, count: int, concurrency: int) -> tuple[float, int]:
        start = time.perf_counter()
        for first in range(0, count, concurrency):
            self._batch(first, min(concurrency, count - first))
        return time.perf_counter() - start, count * CELERY_MESSAGES

    def _batch(self, first: int, size: int) -> None:
        ids = [uuid.uuid4().hex for _ in range(size)]
        self.pending = set(ids)
        for i, saga_id in enumerate(ids):
            self.peer.start_saga(saga_id, {"order_id": first + i})
        deadline = time.monotonic() + BATCH_TIMEOUT
        while self.pending:
            if self.stop.is_set():
                raise RuntimeError("stopped")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.pending)} Celery saga(s) never ended")
            with contextlib.suppress(socket.timeout, TimeoutError):
                self.connection.drain_events(timeout=1.0)
        if self.failed:
            raise RuntimeError(f"Celery saga {self.failed[0]} failed")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.cancel()
        self.connection.release()
        self.peer.app.close()


# -- the floor -----------------------------------------------------------------


class FloorSide:
    """The floor's driver (``amqp_echo.EchoSagas``), run in this process."""

    def __init__(self, broker: str, steps: list[str], reply_queue: str) -> None:
        self.echo = import_bench_module("amqp_echo")
        self.broker = broker
        self.steps = steps
        self.reply_queue = reply_queue
        self.sagas: Any = None

    async def __aenter__(self) -> FloorSide:
        self.sagas = await self.echo.EchoSagas.connect(
            self.broker, self.steps, self.reply_queue
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sagas.close()

    def messages(self) -> int:
        return int(self.sagas.published + self.sagas.replies)

    async def timed(self, count: int, concurrency: int) -> tuple[float, int]:
        """Run ``count`` floor sagas; returns (seconds, broker messages)."""
        before = self.messages()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for first in range(0, count, concurrency):
            batch = min(concurrency, count - first)
            runs = (
                self.sagas.run(json.dumps({"order_id": first + i}).encode())
                for i in range(batch)
            )
            await asyncio.wait_for(asyncio.gather(*runs), BATCH_TIMEOUT)
        return loop.time() - start, self.messages() - before


# -- the run -------------------------------------------------------------------


@dataclass
class Setup:
    args: argparse.Namespace
    tag: str
    tmp: Path
    procs: Processes
    pg_url: str | None = None
    inbox_step_s: float | None = None  # a participant's inbox work per command
    sagakit_queues: list[str] = field(default_factory=list)
    batch_queues: list[str] = field(default_factory=list)  # with --batch
    celery_queues: list[str] = field(default_factory=list)
    floor_queues: list[str] = field(default_factory=list)  # echo a, b, c; replies


def batch_url(url: str) -> str:
    """``url`` asking the RabbitMQ transport to batch (``batch=true``)."""
    return url + ("&" if "?" in url else "?") + "batch=true"


def start_processes(setup: Setup) -> None:
    args, tag, tmp = setup.args, setup.tag, setup.tmp
    services = import_bench_module("remote_services")
    sides = [(tag, args.broker, setup.sagakit_queues)]
    if args.batch:  # participants of their own, batching their replies
        sides.append((f"{tag}b", batch_url(args.broker), setup.batch_queues))
    for side_tag, url, queues in sides:
        for service in services.SERVICES:
            setup.procs.start(
                f"sagakit-{side_tag}-{service}",
                [
                    sys.executable,
                    "-m",
                    "sagakit.cli.main",
                    "--db",
                    str(tmp / f"participant-{side_tag}-{service}.db"),
                    "participant",
                    f"remote_services:{service}",
                    "--transport",
                    url,
                ],
                child_env(side_tag, {}),
            )
        logical = [services.queue_of(side_tag, s) for s in services.SERVICES]
        logical.append(services.reply_queue_of(side_tag))
        for queue in logical:
            queues += [f"{SAGAKIT_PREFIX}.{queue}", f"{SAGAKIT_PREFIX}.{queue}.dlq"]

    celery_env = child_env(
        tag,
        {
            "SAGAKIT_BENCH_BROKER": args.broker,
            "SAGAKIT_BENCH_CELERY_DB": str(tmp / "celery-saga.db"),
        },
    )
    os.environ.update(
        {k: celery_env[k] for k in ("SAGAKIT_BENCH_TAG", "SAGAKIT_BENCH_BROKER")}
    )
    os.environ["SAGAKIT_BENCH_CELERY_DB"] = celery_env["SAGAKIT_BENCH_CELERY_DB"]
    for name in (*services.SERVICES, "orchestrator"):
        queue = f"celery-{tag}-{name}"
        setup.celery_queues.append(queue)
        setup.procs.start(
            f"celery-{name}",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_saga_peer",
                "worker",
                f"--pool={args.celery_pool}",
                "--concurrency",
                str(1 if args.celery_pool == "solo" else args.celery_concurrency),
                "-Q",
                queue,
                "-n",
                f"{name}-{tag}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            celery_env,
        )
    setup.celery_queues.append(f"celery-{tag}-done")

    for service in services.SERVICES:
        queue = f"floor-{tag}-{service}"
        setup.floor_queues.append(queue)
        setup.procs.start(
            f"floor-{service}",
            [
                sys.executable,
                str(HERE / "amqp_echo.py"),
                "echo",
                "--broker",
                args.broker,
                "--queue",
                queue,
            ],
            child_env(tag, {}),
        )
    setup.floor_queues.append(f"floor-{tag}-replies")


async def open_store(setup: Setup, name: str = "orchestrator") -> SagaStore:
    if setup.args.store == "sqlite":
        return SQLiteStore(setup.tmp / f"{name}.db")
    if setup.args.store == "memory":  # the remote path without a store's cost
        from sagakit.adapters.store.memory import InMemoryStore  # noqa: PLC0415

        return InMemoryStore()
    from sagakit.adapters.store.postgres import PostgresStore  # noqa: PLC0415

    assert setup.pg_url is not None  # noqa: S101 - set by main for postgres
    return await PostgresStore.connect(setup.pg_url, max_size=POOL_SIZE)


async def admin(dsn: str, *statements: str) -> None:
    import asyncpg  # noqa: PLC0415 - only --store postgres needs the driver

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def measure(setup: Setup, rows: list[Scenario]) -> list[Result]:
    args = setup.args
    await wait_for_consumers(
        args.broker,
        [q for q in setup.sagakit_queues if not q.endswith(".dlq")][:-1]
        + [q for q in setup.batch_queues if not q.endswith(".dlq")][:-1]
        + setup.celery_queues[:-1]
        + setup.floor_queues[:-1],
        setup.procs,
    )
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM cancels the run cleanly, like Ctrl-C
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    stop = threading.Event()
    pool = ThreadPoolExecutor(1, thread_name_prefix="celery-driver")
    driver: CeleryDriver | None = None
    results = {s.key: Result(s) for s in rows}
    try:
        driver = await loop.run_in_executor(pool, CeleryDriver, stop)
        store = await open_store(setup)
        transport = await RabbitTransport.connect(args.broker, prefix=SAGAKIT_PREFIX)
        floor = FloorSide(args.broker, setup.floor_queues[:-1], setup.floor_queues[-1])
        batching = contextlib.AsyncExitStack()
        async with SagakitSide(store, transport, setup.tag) as sk, floor, batching:
            celery = driver
            skb = sk
            if args.batch:
                skb = await batching.enter_async_context(
                    SagakitSide(
                        await open_store(setup, "orchestrator-batch"),
                        await RabbitTransport.connect(
                            batch_url(args.broker), prefix=SAGAKIT_PREFIX
                        ),
                        f"{setup.tag}b",
                    )
                )

            async def run(s: Scenario, count: int) -> tuple[float, int]:
                if s.library == "sagakit":
                    return await sk.timed(count, s.concurrency)
                if s.library == "sagakit-batch":
                    return await skb.timed(count, s.concurrency)
                if s.library == "floor":
                    return await floor.timed(count, s.concurrency)
                return await loop.run_in_executor(
                    pool, celery.timed, count, s.concurrency
                )

            for mode in ("seq", "conc"):
                systems = [s for s in rows if s.mode == mode]
                for s in systems:  # warm-up
                    await run(s, max(s.concurrency, s.n // 10))
                for _ in range(args.repeats):
                    for s in systems:
                        setup.procs.check_alive()
                        here = time.process_time()
                        there = cpu_of(setup.procs, s.library, setup.tag)
                        sk.writes.on = s.key == "sk-seq"
                        written = sk.writes.seconds
                        seconds, messages = await run(s, s.n)
                        sk.writes.on = False
                        result = results[s.key]
                        result.write_s += sk.writes.seconds - written
                        result.cpu_here += time.process_time() - here
                        result.cpu_services += (
                            cpu_of(setup.procs, s.library, setup.tag) - there
                        )
                        result.runs.append(s.n / seconds)
                        result.messages += messages
                        result.sagas += s.n
            setup.inbox_step_s = await inbox_step_seconds(setup.tmp)
    finally:
        stop.set()
        if driver is not None:
            await loop.run_in_executor(pool, driver.close)
        pool.shutdown(wait=True, cancel_futures=True)
        loop.remove_signal_handler(signal.SIGTERM)
    return [results[s.key] for s in rows]


# -- report --------------------------------------------------------------------


def ratio(
    result: Result,
    by_key: dict[str, Result],
    against: str = "celery",
    library: str = "sagakit",
) -> float | None:
    """``result``'s rate over ``against``'s in the same mode (``library``
    rows; ``sagakit`` covers the batching rows too)."""
    if not result.scenario.library.startswith(library):
        return None
    peer = by_key.get(f"{against}-{result.scenario.mode}")
    if peer is None or not peer.runs or not result.runs:
        return None
    return result.sagas_per_s / peer.sagas_per_s


def ceiling(results: list[Result], mode: str) -> float | None:
    """floor/Celery in ``mode``: the most sagakit/Celery could be."""
    by_key = {r.scenario.key: r for r in results}
    floor = by_key.get(f"floor-{mode}")
    return None if floor is None else ratio(floor, by_key, "celery", "floor")


def table(results: list[Result]) -> list[str]:
    by_key = {r.scenario.key: r for r in results}
    header = (
        "scenario",
        "what",
        "in flight",
        "n",
        "sagas/s",
        "runs min-max",
        "msgs/saga",
        "sagakit/Celery",
        "sagakit/floor",
        "CPU ms/saga here+services",
    )
    rows = [header]
    for r in results:
        s = r.scenario
        value = ratio(r, by_key)
        of_floor = ratio(r, by_key, "floor")
        rows.append(
            (
                s.key,
                s.label,
                str(s.concurrency),
                str(s.n),
                f"{r.sagas_per_s:,.1f}",
                f"{min(r.runs):,.0f}-{max(r.runs):,.0f}",
                f"{r.messages_per_saga:.2f}",
                "-" if value is None else f"{value:.2f}x",
                "-" if of_floor is None else f"{of_floor:.2f}x",
                f"{r.cpu_ms(r.cpu_here):.2f}+{r.cpu_ms(r.cpu_services):.2f}",
            )
        )
    numeric = {2, 3, 4, 5, 6, 7, 8, 9}
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return lines


def targets(results: list[Result]) -> list[tuple[str, bool | None]]:
    by_key = {r.scenario.key: r for r in results}
    checks = []
    for mode, words in (("seq", "sequential"), ("conc", "concurrent")):
        sk = by_key.get(f"sk-{mode}")
        value = None if sk is None else ratio(sk, by_key)
        ok = None if value is None else value >= TARGET_RATIO
        shown = "n/a" if value is None else f"{value:.2f}x"
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        checks.append(
            (
                f"target: sagakit >= {TARGET_RATIO:.0f}x the Celery saga, {words} "
                f"({shown}): {verdict}",
                ok,
            )
        )
        floor = by_key.get(f"floor-{mode}")
        value = None if sk is None else ratio(sk, by_key, "floor")
        ok = None if value is None else value >= FLOOR_TARGET
        shown = "n/a" if value is None else f"{value:.2f}x"
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        cpu = None if sk is None or floor is None else cpu_ratio(sk, floor)
        cpu_shown = "n/a" if cpu is None else f"{cpu:.2f}x"
        checks.append(
            (
                f"target: sagakit >= {FLOOR_TARGET}x the floor, {words} ({shown}; "
                f"CPU per saga here+services, floor/sagakit: {cpu_shown}): "
                f"{verdict}",
                ok,
            )
        )
    return checks


def cpu_ratio(sk: Result, floor: Result) -> float | None:
    """The floor's CPU per saga (this process + services) over sagakit's:
    the throughput ratio a CPU-bound run would show, the broker aside."""
    ours = sk.cpu_ms(sk.cpu_here + sk.cpu_services)
    theirs = floor.cpu_ms(floor.cpu_here + floor.cpu_services)
    return theirs / ours if ours > 0 and theirs > 0 else None


def write_ceiling_lines(results: list[Result], inbox_step_s: float | None) -> list[str]:
    """What the durable writes on a saga's path leave of the floor, one saga
    at a time (see ``durable_path.py``), measured in this run."""
    by_key = {r.scenario.key: r for r in results}
    sk, floor = by_key.get("sk-seq"), by_key.get("floor-seq")
    if sk is None or floor is None or not sk.sagas or not floor.runs:
        return []
    if inbox_step_s is None:
        return []
    orchestrator = sk.write_s / sk.sagas
    writes = orchestrator + STEPS * inbox_step_s
    most = write_ceiling(floor.sagas_per_s, writes)
    reach = "reachable" if most >= FLOOR_TARGET else "out of reach"
    return [
        f"ceiling: one at a time a saga waits for its durable writes, which the"
        f" floor does not make: the orchestrator's saves {1e6 * orchestrator:,.0f}"
        f" us a saga (measured in sk-seq) + {STEPS} commands' inbox lookup and"
        f" commit {1e6 * inbox_step_s:,.0f} us each (measured here) ="
        f" {1e6 * writes:,.0f} us against the floor's"
        f" {1e6 / floor.sagas_per_s:,.0f} us a saga: with nothing else to do,"
        f" sk-seq would reach about {most:.2f}x the floor, so the"
        f" {FLOOR_TARGET}x target is {reach} in this run",
    ]


def ceiling_lines(results: list[Result]) -> list[str]:
    values = {mode: ceiling(results, mode) for mode in ("seq", "conc")}
    shown = {m: "n/a" if v is None else f"{v:.2f}x" for m, v in values.items()}
    reach = {
        mode: "n/a"
        if value is None
        else ("reachable" if value >= TARGET_RATIO else "out of reach")
        for mode, value in values.items()
    }
    return [
        f"ceiling: the bare aio-pika floor (the same {2 * STEPS} messages per saga,"
        f" no saga library) is {shown['seq']} the Celery saga sequential,"
        f" {shown['conc']} concurrent",
        "ceiling: sagakit sends the same messages plus its saga work, so"
        " sagakit/Celery stays below floor/Celery (noise aside); a"
        f" {TARGET_RATIO:.0f}x target is reachable only where the floor exceeds"
        f" {TARGET_RATIO:.0f}x: sequential {reach['seq']},"
        f" concurrent {reach['conc']} in this run",
    ]


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def version_of(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=400, help="sagas per timed run; default 400"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per row; default 5"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="sagas in flight in the concurrent rows; default 50",
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgres", "memory"),
        default="sqlite",
        help="sagakit's orchestrator store: a SQLite file in a temp directory "
        "(default), a fresh PostgreSQL database, or memory (no durability: "
        "what the remote path costs without the store's commits)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get(BROKER_ENV) or DEFAULT_BROKER,
        help=f"RabbitMQ URL (default ${BROKER_ENV} or {DEFAULT_BROKER})",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get(DSN_ENV) or DEFAULT_DSN,
        help=f"with --store postgres: a database on the server (default ${DSN_ENV}"
        f" or {DEFAULT_DSN}); a fresh one is created next to it and dropped after",
    )
    parser.add_argument(
        "--celery-pool",
        choices=("solo", "threads", "prefork"),
        default="threads",
        help="pool of the Celery workers; default threads (solo stalled for"
        " seconds at a time when many sagas were in flight)",
    )
    parser.add_argument(
        "--celery-concurrency",
        type=int,
        default=8,
        help="threads or processes per Celery worker unless the pool is solo;"
        " default 8",
    )
    parser.add_argument(
        "--batch",
        action="store_true",
        help="also run sagakit with RabbitMQ batching (rows skb-*: orchestrator"
        " and participants with batch=true, their own processes and queues)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for name in ("n", "repeats", "concurrency", "celery_concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def reply_exchanges(setup: Setup) -> list[str]:
    """The exchanges sagakit's reply routing declares for its reply queues
    (see ``sagakit.adapters.transport.amqp_replies``); the orchestrators'
    own reply queues are deleted when they stop serving."""
    names = setup.sagakit_queues + setup.batch_queues
    return [
        f"{q}.{kind}"
        for q in names
        if q.endswith("replies")
        for kind in ("owners", "any")
    ]


@contextlib.contextmanager
def cleanup(setup: Setup) -> Iterator[None]:
    """Stop the subprocesses, delete the queues and the database, whatever happens."""
    try:
        yield
    finally:
        setup.procs.stop_all()
        with contextlib.suppress(Exception):
            asyncio.run(
                delete_from_broker(
                    setup.args.broker,
                    setup.sagakit_queues
                    + setup.batch_queues
                    + setup.celery_queues
                    + setup.floor_queues,
                    setup.celery_queues + reply_exchanges(setup),
                )
            )
        if setup.pg_url is not None:
            name = urlsplit(setup.pg_url).path.lstrip("/")
            with contextlib.suppress(Exception):
                asyncio.run(
                    admin(
                        setup.args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                    )
                )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.perf_counter()
    load_at_start = load_average()
    tag = uuid.uuid4().hex[:10]
    rabbit = asyncio.run(broker_version(args.broker))
    print(
        f"sagakit vs a Celery saga over RabbitMQ, with a bare aio-pika floor: "
        f"{STEPS} remote steps, one per service; median of {args.repeats} run(s) "
        "after a warm-up"
    )
    print(
        f"python {platform.python_version()}, RabbitMQ {rabbit}, "
        f"{os.cpu_count()} CPUs, aio-pika {version_of('aio-pika')}, "
        f"celery {version_of('celery')}, kombu {version_of('kombu')}; "
        f"sagakit store {args.store}, Celery pool {args.celery_pool}"
        + ("" if args.celery_pool == "solo" else f" x{args.celery_concurrency}")
        + f"; event loop of sagakit and the floor: {event_loop.loop_name()}"
    )
    rows = scenarios(args.n, args.concurrency, args.celery_pool, args.batch)
    with tempfile.TemporaryDirectory(prefix="sagakit-remote-bench-") as tmp_name:
        setup = Setup(args, tag, Path(tmp_name), Processes(Path(tmp_name)))
        with cleanup(setup):
            if args.store == "postgres":
                name = f"bench_remote_{tag}"
                asyncio.run(admin(args.dsn, f'CREATE DATABASE "{name}"'))
                setup.pg_url = urlunsplit(urlsplit(args.dsn)._replace(path=f"/{name}"))
            start_processes(setup)
            try:
                # sagakit's orchestrator and the floor's driver run here, on
                # the loop the sagakit CLI uses (its participants and the echo
                # services run on it too): uvloop when installed
                results = event_loop.run(measure(setup, rows))
            except (KeyboardInterrupt, asyncio.CancelledError):
                print("interrupted; stopping the subprocesses", file=sys.stderr)
                return 130
    print()
    for line in table(results):
        print(line)
    print()
    elapsed = time.perf_counter() - started
    print(
        f"msgs/saga: sagakit counts the commands its relay published and the "
        f"replies it consumed; Celery's is fixed: {STEPS} step tasks, {STEPS} "
        "response tasks and the finish notice to this process; the floor counts "
        "the requests it published and the echoes it consumed"
    )
    print(
        "CPU ms/saga: user + system CPU per saga of this process (sagakit's "
        "orchestrator, the floor's driver, the Celery side's driver thread) + "
        "of the side's service processes (three participants, three echo "
        "services, four Celery workers); the broker's is not counted"
    )
    print(
        f"total time {elapsed:,.1f} s; load average {load_at_start} at the start, "
        f"{load_average()} at the end (other work on the machine skews the numbers)"
    )
    checks = targets(results)
    for line, _ in checks:
        print(line)
    for line in ceiling_lines(results) + write_ceiling_lines(
        results, setup.inbox_step_s
    ):
        print(line)
    if args.json is not None:
        by_key = {r.scenario.key: r for r in results}
        report = {
            "meta": {
                "python": platform.python_version(),
                "rabbitmq": rabbit,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "celery": version_of("celery"),
                "store": args.store,
                "event_loop": event_loop.loop_name(),
                "celery_pool": args.celery_pool,
                "celery_concurrency": args.celery_concurrency,
                "n": args.n,
                "repeats": args.repeats,
                "concurrency": args.concurrency,
                "seconds": elapsed,
                "load_average_start": load_at_start,
            },
            "results": [
                {
                    **asdict(r.scenario),
                    "sagas_per_s": r.sagas_per_s,
                    "runs": r.runs,
                    "messages_per_saga": r.messages_per_saga,
                    "ratio_vs_celery": ratio(r, by_key),
                    "ratio_vs_floor": ratio(r, by_key, "floor"),
                    "cpu_ms_here": r.cpu_ms(r.cpu_here),
                    "cpu_ms_services": r.cpu_ms(r.cpu_services),
                    "write_ms": r.cpu_ms(r.write_s),
                }
                for r in results
            ],
            "targets": [{"line": line, "pass": ok} for line, ok in checks],
            "inbox_step_us": None
            if setup.inbox_step_s is None
            else 1e6 * setup.inbox_step_s,
            "ceiling_vs_celery": {
                mode: ceiling(results, mode) for mode in ("seq", "conc")
            },
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
