"""How saga-framework sagas run on sagakit: one short orchestrator run per call.

``execute()`` and every ``{task}.response.success|failure`` Celery task open
the saga store, apply one thing (the start, or one reply) through a sagakit
:class:`~sagakit.Orchestrator`, let the local steps that follow run, publish
the commands the outbox holds, and close. Between calls the saga's state is in
the store, so a duplicate or late reply is recognised there and dropped.

Commands go straight to Celery (``app.send_task(base_task_name,
args=[saga_id, payload], queue=...)``, JSON), in saga-framework's wire format,
so step handlers written with saga-framework's ``saga_step_handler`` keep
working; the envelope id is the Celery task id.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sagakit.adapters.store import open_store_async
from sagakit.adapters.transport.base import BaseSubscription, BaseTransport
from sagakit.definition.saga import Saga
from sagakit.engine.decide import decide
from sagakit.engine.events import Event
from sagakit.engine.state import SagaState
from sagakit.errors import StateError, TransportError
from sagakit.messaging.envelope import Envelope, decode
from sagakit.ports.store import HistoryEntry, InboxEntry, SagaStore
from sagakit.ports.transport import DeadLetter, Handler
from sagakit.runtime.driver import Driver
from sagakit.runtime.orchestrator import Orchestrator

if TYPE_CHECKING:
    from sagakit.engine.commands import Command
    from sagakit.runtime.instance import Instance

logger = logging.getLogger(__name__)

T = TypeVar("T")
COMMAND_PREFIX = "celery."
"""A step's sagakit command type is this prefix and its Celery task name."""


class CeleryApp(Protocol):
    """What the compat layer uses of a ``celery.Celery`` application."""

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


class Observer(Protocol):
    """The saga object: told about each transition as it is about to be
    committed (``committed=False``), then once it is."""

    def _transition(
        self,
        before: SagaState,
        after: SagaState,
        event: Event,
        exceptions: Mapping[str, BaseException],
        *,
        committed: bool,
    ) -> None: ...


def wire_saga_id(saga_id: str | None) -> int | str | None:
    """saga-framework's ids are integers (database keys): send digits as one."""
    if saga_id is not None and saga_id.isdecimal():
        return int(saga_id)
    return saga_id


class _NoSubscription(BaseSubscription):
    async def _stop(self) -> None:
        return None


class CeleryWire(BaseTransport):
    """The transport port over ``celery_app.send_task`` in saga-framework's format.

    It only publishes: replies arrive as Celery tasks registered by
    ``register_async_step_handlers`` and are handed to the orchestrator, so
    its subscriptions consume nothing.
    """

    name = "saga-framework Celery"

    def __init__(self, celery_app: CeleryApp) -> None:
        super().__init__()
        self.celery_app = celery_app

    def _send(self, queue: str, message: Envelope) -> None:
        if not message.type.startswith(COMMAND_PREFIX):
            raise TransportError(f"cannot send {message.type!r} as a Celery task")
        task = message.type.removeprefix(COMMAND_PREFIX)
        try:
            self.celery_app.send_task(
                task,
                args=[wire_saga_id(message.saga_id), message.payload],
                queue=queue,
                task_id=message.id,
                serializer="json",
            )
        except Exception as exc:
            raise TransportError(
                f"saga {message.saga_id}: sending Celery task {task!r} to {queue} "
                f"failed: {exc}"
            ) from exc

    async def publish(self, queue: str, message: Envelope) -> None:
        self._send(queue, message)

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self._send(queue, decode(body))

    async def _subscribe(
        self, queue: str, handler: Handler, prefetch: int, max_deliveries: int
    ) -> BaseSubscription:
        return _NoSubscription(self)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return []

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        return 0  # Celery keeps failed tasks itself; nothing is dead-lettered here


class _CompatDriver(Driver):
    """A driver that tells the saga object about each change it commits."""

    saga_object: Observer | None = None

    async def apply(
        self,
        inst: Instance,
        event: Event,
        entries: list[HistoryEntry],
        inbox: InboxEntry | None = None,
    ) -> tuple[Command, ...]:
        watcher = self.saga_object
        if watcher is None:
            return await super().apply(inst, event, entries, inbox)
        before = inst.state
        try:
            preview = decide(inst.saga, before, event).state
        except StateError:
            preview = None  # stale or duplicate: super() drops it
        if preview is not None and preview != before:
            # before the next step's command is built: an on_success callback
            # may store what that step's action reads
            watcher._transition(
                before, preview, event, inst.exceptions, committed=False
            )
        commands = await super().apply(inst, event, entries, inbox)
        if inst.state is not before:
            watcher._transition(
                before, inst.state, event, inst.exceptions, committed=True
            )
        return commands


class CompatOrchestrator(Orchestrator):
    """An orchestrator that tells the saga object about each committed change."""

    driver_type = _CompatDriver
    driver: _CompatDriver

    def __init__(
        self,
        store: SagaStore,
        definition: Saga[Any],
        observer: Observer,
        transport: CeleryWire | None,
    ) -> None:
        super().__init__(
            store,
            [definition],
            transport=transport,
            reply_queue="saga_framework.responses",
        )
        self.driver.saga_object = observer

    @contextlib.asynccontextmanager
    async def driving(self) -> AsyncIterator[CompatOrchestrator]:
        """Accept remote steps without the relay loop: ``flush`` publishes."""
        self.intake.running = self.transport is not None
        try:
            yield self
        finally:
            self.intake.running = False

    async def flush(self) -> None:
        """Publish what the outbox holds."""
        if self.relay is not None:
            while await self.relay.run_once():
                pass


async def run_once(
    store_url: str | None,
    definition: Saga[Any],
    observer: Observer,
    transport: CeleryWire | None,
    body: Callable[[CompatOrchestrator], Awaitable[T]],
) -> T:
    """Open the store, run ``body``, let local steps finish, publish, close."""
    store = await open_store_async(store_url)
    orchestrator = CompatOrchestrator(store, definition, observer, transport)
    try:
        async with orchestrator.driving():
            value = await body(orchestrator)
            await orchestrator.settle()
            await orchestrator.flush()
    finally:
        await orchestrator.close()
    return value
