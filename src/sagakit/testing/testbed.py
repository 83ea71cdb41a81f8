"""One test's sagas in one process: an orchestrator on a store, a fake clock,
and an in-process transport with the participants the test attaches.

::

    async with Testbed() as bed:
        bed.attach(kitchen)               # a Participant, as defined at import
        result = await bed.run(order_saga, Order(order_id=1))
        await bed.advance(60)             # a reply deadline passes: no waiting

The pytest plugin's ``sagakit_testbed`` fixture is one of these, entered.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaStatus
from sagakit.participant import Participant
from sagakit.ports.store import SagaStore
from sagakit.runtime.orchestrator import Orchestrator
from sagakit.runtime.result import SagaResult
from sagakit.testing.clock import FakeClock

MOST = 1_000_000
"""Sagas :meth:`Testbed.advance` looks at, of each unfinished status."""
DEADLINE_CHECK = 0.05
"""Seconds between two checks of reply deadlines (real time): a deadline the
fake clock has passed fires at once."""


class Testbed:
    """An :class:`Orchestrator` on ``store`` (in memory by default) and a
    :class:`FakeClock`, serving an :class:`InProcessTransport`; participants
    run on the same transport, each with an inbox store of its own.

    Retry backoffs and other sleeps of the clock take no real time;
    :meth:`advance` moves the clock forward and fires the reply deadlines
    that passed. Leave it (``async with`` or :meth:`close`) to stop the
    participants and the orchestrator and close the transport; the store is
    closed only if the testbed made it.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(
        self,
        store: SagaStore | None = None,
        sagas: Iterable[Saga[Any]] = (),
        *,
        clock: FakeClock | None = None,
        transport: InProcessTransport | None = None,
        **options: Any,
    ) -> None:
        self.clock = clock or FakeClock()
        self.store: SagaStore = store if store is not None else InMemoryStore()
        self.transport = transport or InProcessTransport()
        options.setdefault("deadline_interval", DEADLINE_CHECK)
        self.orchestrator = Orchestrator(
            self.store, sagas, clock=self.clock, transport=self.transport, **options
        )
        self.participants: list[Participant] = []
        self._owns = (store is None, transport is None)
        self._stack = AsyncExitStack()
        self._serving = False
        self._running: set[Participant] = set()

    async def start(self) -> Self:
        """Serve the orchestrator and start the participants attached so far
        (``run``, ``start_saga`` and ``async with`` call it)."""
        if not self._serving:
            self._serving = True
            await self._stack.enter_async_context(self.orchestrator.serving())
        for participant in self.participants:
            if participant not in self._running:
                await participant.start()
                self._running.add(participant)
                self._stack.push_async_callback(participant.stop)
        return self

    async def close(self) -> None:
        await self._stack.aclose()
        await self.orchestrator.stop_driving()
        owns_store, owns_transport = self._owns
        if owns_transport:
            await self.transport.close()
        if owns_store:
            await self.store.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- participants -------------------------------------------------------

    def participant(self, service: str, **options: Any) -> Participant:
        """A new participant for ``service`` on this testbed; register its
        handlers with ``@participant.handler(...)`` before the first saga
        sends it a command."""
        made = Participant(service, clock=self.clock, **options)
        self.attach(made)
        return made

    def attach(self, participant: Participant) -> Participant:
        """Run ``participant`` (one defined at import time, say) on this
        testbed's transport, with an inbox store of its own (in memory),
        from the next ``run``, ``start_saga`` or ``start``."""
        participant.attach(self.transport, InMemoryStore())
        self.participants.append(participant)
        return participant

    # -- running ------------------------------------------------------------

    async def run(self, saga: Saga[Any], context: Any) -> SagaResult[Any]:
        """Start ``saga`` and return its outcome once it ends."""
        await self.start()
        return await self.orchestrator.run(saga, context)

    async def start_saga(
        self, saga: Saga[Any], context: Any, *, saga_id: str | None = None
    ) -> str:
        """Start ``saga`` in the background; its id."""
        await self.start()
        return await self.orchestrator.start(saga, context, saga_id=saga_id)

    async def advance(self, seconds: float) -> list[str]:
        """Move the clock ``seconds`` forward and fire the reply deadlines
        that passed (by this clock, whatever time the store keeps); the ids
        of the sagas whose deadline fired."""
        self.clock.advance(seconds)
        now = self.clock.now()
        fired = []
        for status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
            for record in await self.store.list_sagas(status=status, limit=MOST):
                if record.deadline is not None and record.deadline <= now:
                    await self.orchestrator.fire_deadline(record.saga_id)
                    fired.append(record.saga_id)
        await self.orchestrator.settle()
        return fired

    async def result(self, saga_id: str) -> SagaResult[Any]:
        """The saga's outcome once nothing runs here any more (it may wait
        for a reply or a deadline)."""
        await self.orchestrator.settle()
        return await self.orchestrator.result(saga_id)
