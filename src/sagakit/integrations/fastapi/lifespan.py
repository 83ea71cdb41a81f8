"""The lifespan: sagakit starts with the app and drains when it stops.

::

    app = FastAPI(lifespan=sagakit_lifespan(url, [order_saga], migrate=True))

On startup, in this order: the store opens (from a URL, migrated if asked;
or the store object given, which stays the caller's), the transport
connects, the app's own lifespan enters, then the runner starts (an
in-process orchestrator that first resumes what a stopped process left, or a
worker that keeps claiming), then the choreography bus. On shutdown the
reverse: the bus stops, the runner drains (the steps in flight finish and
commit, for up to ``drain_timeout`` seconds; no next step starts; every saga
driven here is released so another process claims it at once), the app's
own lifespan exits, and what was opened here is closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Literal

from sagakit.adapters.store import applied_migrations, open_store_async
from sagakit.adapters.store.database import database_url
from sagakit.adapters.transport import ENV_VAR as TRANSPORT_ENV
from sagakit.adapters.transport import open_transport
from sagakit.choreography.bus import EventBus
from sagakit.definition.saga import Saga
from sagakit.errors import SagaError
from sagakit.integrations.fastapi.sagas import STATE_KEY, Sagas
from sagakit.integrations.fastapi.settings import (
    Settings,
    check_store_url,
    check_transport_url,
)
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport
from sagakit.runtime.orchestrator import Orchestrator
from sagakit.runtime.worker import Worker

logger = logging.getLogger(__name__)

Run = Literal["orchestrator", "worker"]
AppLifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
"""An app's own lifespan: ``@asynccontextmanager async def lifespan(app)``."""


class SagakitLifespan:
    """A FastAPI lifespan (``FastAPI(lifespan=...)``); see the module and
    :func:`sagakit_lifespan`. While the app runs, :attr:`sagas` is the
    :class:`Sagas` its handlers get."""

    def __init__(
        self,
        settings: Settings,
        lifespan: AppLifespan | None = None,
    ) -> None:
        if lifespan is not None and not callable(lifespan):
            raise SagaError(
                f"sagakit_lifespan: lifespan must be the app's own lifespan "
                f"function (app -> async context manager), got {lifespan!r}"
            )
        self.settings = settings
        self.app_lifespan = lifespan
        self._current: Sagas | None = None

    @property
    def sagas(self) -> Sagas:
        """The running :class:`Sagas`; a SagaError before startup."""
        if self._current is None:
            raise SagaError("sagakit is not running: the app's lifespan has not begun")
        return self._current

    def __call__(self, app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        return self._running(app)

    @asynccontextmanager
    async def _running(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        if self._current is not None:
            raise SagaError("this sagakit_lifespan is running already (one app each)")
        s = self.settings
        async with AsyncExitStack() as stack:
            store = await self._store(stack)
            transport = await self._transport(stack)
            worker: Worker | None = None
            orchestrator: Orchestrator | None = None
            if s.run == "worker":
                worker = Worker(
                    store, s.sagas.values(), transport=transport, **s.worker
                )
                orchestrator = worker.orchestrator
            elif s.run == "orchestrator":
                orchestrator = Orchestrator(
                    store, s.sagas.values(), transport=transport, **s.orchestrator
                )
            sagas = Sagas(
                store, s.sagas, orchestrator, reply_queue=s.orchestrator["reply_queue"]
            )
            state: dict[str, Any] = {STATE_KEY: sagas}
            setattr(app.state, STATE_KEY, sagas)
            stack.callback(self._forget, app)
            self._current = sagas
            if self.app_lifespan is not None:
                own = await stack.enter_async_context(self.app_lifespan(app))
                state.update(own or {})
            if worker is not None:
                await self._start_worker(stack, worker)
            elif orchestrator is not None:
                await self._start_orchestrator(stack, orchestrator)
            if s.bus is not None:
                await self._start_bus(stack, s.bus, store, transport)
            logger.info(
                "sagakit started",
                extra={
                    "action": "sagakit_started",
                    "run": s.run,
                    "sagas": sorted(s.sagas),
                    "worker": None if orchestrator is None else orchestrator.worker_id,
                },
            )
            yield state
            logger.info("sagakit stopping", extra={"action": "sagakit_stopping"})

    def _forget(self, app: Any) -> None:
        self._current = None
        if getattr(app.state, STATE_KEY, None) is not None:
            delattr(app.state, STATE_KEY)

    async def _store(self, stack: AsyncExitStack) -> SagaStore:
        s = self.settings
        if s.store_object is not None:
            return s.store_object
        url = check_store_url(database_url(s.store_url))
        store = await open_store_async(url, migrate=s.migrate)
        stack.push_async_callback(store.close)
        listed = hasattr(store, "applied_migrations")
        if not s.migrate and listed and not await applied_migrations(store):
            where = url.rsplit("@", maxsplit=1)[-1]
            raise SagaError(
                f"the database {where!r} has no sagakit tables: pass "
                "sagakit_lifespan(..., migrate=True) or run 'sagakit db migrate'"
            )
        return store

    async def _transport(self, stack: AsyncExitStack) -> Transport | None:
        s = self.settings
        if s.transport_object is not None:
            return s.transport_object
        url = s.transport_url or os.environ.get(TRANSPORT_ENV)
        if url is None:
            why = s.needs_transport()
            if why is not None:
                raise SagaError(
                    f"{why}: pass sagakit_lifespan(..., transport='amqp://...') "
                    f"or set ${TRANSPORT_ENV}"
                )
            return None
        transport = await open_transport(check_transport_url(url))
        stack.push_async_callback(transport.close)
        return transport

    async def _start_orchestrator(
        self, stack: AsyncExitStack, orchestrator: Orchestrator
    ) -> None:
        if orchestrator.transport is not None:
            await stack.enter_async_context(orchestrator.serving())
        stack.push_async_callback(self._drain_orchestrator, orchestrator)
        resumed = await orchestrator.recover()
        if resumed:
            logger.info(
                "sagas resumed",
                extra={"action": "sagakit_resumed", "count": len(resumed)},
            )

    async def _drain_orchestrator(self, orchestrator: Orchestrator) -> None:
        released = await orchestrator.stop(
            drain=True, drain_timeout=self.settings.drain_timeout
        )
        logger.info(
            "sagakit drained",
            extra={"action": "sagakit_drained", "released": len(released)},
        )

    async def _start_worker(self, stack: AsyncExitStack, worker: Worker) -> None:
        task = asyncio.create_task(
            worker.run(drain_timeout=self.settings.drain_timeout),
            name=f"sagakit worker {worker.worker_id}",
        )
        stack.push_async_callback(self._stop_worker, worker, task)
        intake = worker.orchestrator.intake
        # sagas with remote steps start once replies can come back
        while worker.orchestrator.transport is not None and not intake.running:
            if task.done():
                await task  # raises what stopped it
                raise SagaError("the sagakit worker stopped as it started")
            await asyncio.sleep(0.01)

    async def _stop_worker(self, worker: Worker, task: asyncio.Task[None]) -> None:
        worker.drain()
        await task

    async def _start_bus(
        self,
        stack: AsyncExitStack,
        bus: EventBus,
        store: SagaStore,
        transport: Transport | None,
    ) -> None:
        if transport is None:  # refused in _transport: kept for the type checker
            raise SagaError("an event bus needs a transport")
        bus.attach(transport, store)
        await bus.start(watch=self.settings.watch)
        stack.push_async_callback(bus.stop)


def sagakit_lifespan(
    store: str | SagaStore | None = None,
    sagas: Iterable[Saga[Any]] = (),
    *,
    migrate: bool = False,
    run: Run | None = "orchestrator",
    transport: str | Transport | None = None,
    bus: EventBus | None = None,
    watch: float | None = None,
    drain_timeout: float = 30.0,
    lease: float | None = None,
    worker_id: str | None = None,
    max_active: int = 200,
    reply_queue: str = "sagakit.replies",
    lifespan: AppLifespan | None = None,
) -> SagakitLifespan:
    """A lifespan for ``FastAPI(lifespan=...)`` that runs ``sagas``.

    ``store``: a database URL (``postgresql://``, ``sqlite:///file.db``,
    ``mysql://``, ``memory://``; None reads ``$SAGAKIT_DATABASE_URL``),
    opened at startup and closed at shutdown, and migrated first with
    ``migrate=True`` (without it, a database that has no sagakit tables is
    an error at startup); or an open store object, which stays yours.

    ``run``: ``"orchestrator"`` drives the sagas this app starts, in this
    process, and at startup resumes those a stopped process left
    (``lease`` seconds of ownership, as ``Orchestrator``); ``"worker"`` also
    keeps claiming every saga anyone submits, beside other workers
    (``lease``: 30 by default; ``max_active``); None runs nothing: ``start``
    commits, and a ``sagakit worker`` claims.

    ``transport`` (a URL such as ``amqp://...``, or a transport object;
    None reads ``$SAGAKIT_TRANSPORT_URL`` at startup, and runs without one
    if it is unset) carries remote steps' commands and replies (on
    ``reply_queue``), and a choreography ``bus``'s events; ``watch``:
    seconds between the bus's stalled checks. ``drain_timeout``: seconds
    shutdown waits for the steps in flight. ``lifespan``: the app's own,
    run inside this one (it enters before the runner starts and exits after
    it drained); the state it yields is merged into the request state.
    """
    settings = Settings.checked(
        store=store,
        sagas=sagas,
        migrate=migrate,
        run=run,
        transport=transport,
        bus=bus,
        watch=watch,
        drain_timeout=drain_timeout,
        lease=lease,
        worker_id=worker_id,
        max_active=max_active,
        reply_queue=reply_queue,
    )
    return SagakitLifespan(settings, lifespan)
