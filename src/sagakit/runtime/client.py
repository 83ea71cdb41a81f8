"""The client: start sagas and act on them without running their steps.

A producer (a web request handler) or an admin tool submits instances,
reads their results and commits operator requests through the store; a
worker (``Worker``, an ``Orchestrator``) runs the steps. The orchestrator
uses a client for these parts, with its own driver, so what it starts it
drives and what a client commits its workers claim.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Decision
from sagakit.engine.decide import decide, initial_state
from sagakit.engine.events import SagaForked, SagaStarted
from sagakit.engine.state import ParentLink, SagaState
from sagakit.errors import SagaError
from sagakit.observability.observer import NOOP, Observer, started_result
from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry, OutboxMessage, SagaRecord, SagaStore
from sagakit.runtime.clock import SystemClock
from sagakit.runtime.driver import Driver
from sagakit.runtime.instance import Instance, context_json, default_worker_id
from sagakit.runtime.operator import Action
from sagakit.runtime.records import saga_line, saga_record
from sagakit.runtime.registry import Registry
from sagakit.runtime.remote import command_messages, remote_of
from sagakit.runtime.result import SagaResult

logger = logging.getLogger("sagakit.runtime.orchestrator")

C = TypeVar("C", bound=BaseModel)


class StartOptions(TypedDict, total=False):
    """The keywords every way of starting a saga takes (``start``, ``run``,
    ``run_sync``, ``submit``): declared once, checked once."""

    idempotency_key: str | None
    """With a key already used for this saga, nothing new starts: the
    existing instance's id (or result) is returned."""
    saga_id: str | None
    """The new instance's id; a random hex id by default. An id that is
    taken raises :class:`~sagakit.errors.SagaAlreadyExists` (with the
    existing instance's id and status), unless ``idempotency_key`` names
    an instance already started: that one is returned."""


_UUID4_MASK = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID4_BITS = (0x8000 << 48) | (4 << 76)


def random_id() -> str:
    """A new instance's default id: ``uuid.uuid4().hex`` (32 hex digits,
    the version and variant bits of a random UUID), without building the
    ``UUID`` object."""
    value = int.from_bytes(os.urandom(16)) & _UUID4_MASK | _UUID4_BITS
    return f"{value:032x}"


def _checked(options: StartOptions) -> StartOptions:
    if not options:
        return options
    unknown = sorted(options.keys() - StartOptions.__annotations__.keys())
    if unknown:
        raise TypeError(
            f"unexpected start option(s) {', '.join(unknown)}; "
            f"known: {', '.join(StartOptions.__annotations__)}"
        )
    return options


@dataclass(frozen=True, slots=True)
class Started:
    """What :meth:`SagaClient.begin` did: ``instance`` (to drive, with its
    first ``commands``) is None if the instance existed already (same
    idempotency key) or was only submitted."""

    saga_id: str
    instance: Instance | None = None
    commands: tuple[Command, ...] = ()


class SagaClient:
    """Submits saga instances for workers and acts on them through ``store``.

    ``submit`` commits a new instance that any worker with its definition
    registered claims; ``retry``, ``resume``, ``cancel``, ``pause`` and
    ``unpause`` commit the operator's request and hand the saga over to a
    worker (as ``worker_id``, holding it for ``lease`` seconds until it is
    released, if given), or leave it to the live worker that drives it.
    """

    def __init__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]] = (),
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] | None = None,
        worker_id: str | None = None,
        lease: float | None = None,
        reply_queue: str = "sagakit.replies",
        observer: Observer | None = None,
        registry: Registry | None = None,
        driver: Driver | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or Registry()
        self.registry.register(*sagas)
        self.driver = driver or Driver(
            store,
            self.registry.definition_of,
            clock=clock or SystemClock(),
            jitter=random.random,
            worker_id=worker_id or f"client:{default_worker_id()}",
            lease=lease,
            reply_queue=reply_queue,
            observer=NOOP if observer is None else observer,
        )
        self.clock = self.driver.clock
        self._new_id = new_id or random_id

    def new_id(self) -> str:
        """A new instance's id (a random hex id by default)."""
        return self._new_id()

    async def submit(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        **options: Unpack[StartOptions],
    ) -> str:
        """Commit a new instance for a worker to run, and return its id (the
        existing instance's, for an ``idempotency_key`` already used;
        ``SagaAlreadyExists`` for a ``saga_id`` that is taken)."""
        return (await self.begin(saga, context, options)).saga_id

    async def begin(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None,
        options: StartOptions,
        *,
        drive: bool = False,
        parent: ParentLink | None = None,
        fork: SagaState | None = None,
        lines: Sequence[HistoryEntry] = (),
    ) -> Started:
        """Create and commit a new instance; with ``drive``, owned by the
        driver's worker and returned with its first commands to drive; with
        ``parent``, as the child of that saga's step (a sub-saga); with
        ``fork``, from that state (see :mod:`~sagakit.runtime.fork`).
        ``lines`` follow the ``started`` line in its history."""
        idempotency_key = _checked(options).get("idempotency_key")
        self.registry.ensure(saga)
        ctx = _context(saga, context)
        saga_id = options.get("saga_id") or self.new_id()
        driver = self.driver
        now = self.clock.now()
        initial = initial_state(saga, saga_id) if fork is None else fork
        if parent is not None:
            initial = initial.but(parent=parent)
        first = SagaStarted(now) if fork is None else SagaForked(now)
        decision = decide(saga, initial, first)
        record = saga_record(
            saga_id,
            saga.name,
            decision.state.status,
            1,
            decision.state,
            context_json(ctx),
            idempotency_key,
            now,
            now,
            decision.state.next_deadline,
            saga.version,
            saga.fingerprint,
        )
        observer = driver.observer
        if type(observer).saga_start is Observer.saga_start and not saga.sends:
            # no hook wraps the start and nothing is sent: the lean path
            trace: dict[str, str] = {}
            ownership = driver.ownership() if drive else {}
            outbox: list[OutboxMessage] = []
            started = saga_line(saga_id, "started", now)
            stored, created = await driver.saves.create(
                record, [started, *lines], **ownership
            )
        else:
            stored, created, outbox, trace = await self._create(
                saga, record, decision, ctx, lines, drive=drive
            )
        if not created:
            logger.info(
                "saga already started",
                extra={
                    "action": "saga_deduplicated",
                    "saga_id": stored.saga_id,
                    "idempotency_key": idempotency_key,
                },
            )
            return Started(stored.saga_id)
        driver.send(outbox)
        logger.info(
            "saga started" if drive else "saga submitted",
            extra={"action": "saga_started", "saga_id": saga_id, "saga": saga.name},
        )
        if not drive:
            return Started(saga_id)
        inst = Instance(
            saga=saga,
            state=decision.state,
            context=ctx,
            version=1,
            created_at=now,
            idempotency_key=idempotency_key,
            trace=trace,
        )
        return Started(saga_id, inst, decision.commands)

    async def _create(
        self,
        saga: Saga[Any],
        record: SagaRecord,
        decision: Decision,
        ctx: BaseModel,
        lines: Sequence[HistoryEntry],
        *,
        drive: bool,
    ) -> tuple[SagaRecord, bool, list[OutboxMessage], dict[str, str]]:
        """Create ``record`` under the observer's ``saga_start``, with the
        messages its first commands send: the stored record, whether this
        call created it, the outbox written and the trace carrier."""
        driver = self.driver
        saga_id, now = record.saga_id, record.created_at
        with driver.observer.saga_start(saga.name, saga_id) as start:
            trace = start.carrier
            started = saga_line(saga_id, "started", now, started_result(trace))
            built = command_messages(
                saga,
                decision.state,
                ctx,
                decision.commands,
                reply_to=driver.reply_queue,
                now=now,
                observer=driver.observer,
                trace=trace,
                reply_key=driver.reply_key,
            )
            for command, exc in built.unsendable[:1]:
                remote = remote_of(saga, command)
                raise SagaError(
                    f"saga {saga.name!r}: cannot build the "
                    f"{remote.command if remote else None!r} command of step "
                    f"{command.step!r}: {exc}"
                ) from exc
            outbox = driver.hold(built.messages, now)
            ownership = driver.ownership() if drive else {}
            stored, created = await driver.saves.create(
                record, [started, *lines], outbox=outbox, **ownership
            )
            start.created = created
        return stored, created, outbox, trace

    async def result(self, saga_id: str) -> SagaResult[Any]:
        """The saga's current outcome as stored (it may not have ended)."""
        return self.result_of(await self.store.get(saga_id))

    def result_of(self, record: SagaRecord) -> SagaResult[Any]:
        """``record`` as a result (its context in the registered model)."""
        saga = self.registry.versions.get(record.saga_name, {}).get(
            record.definition_version, self.registry.sagas.get(record.saga_name)
        )
        model: type[BaseModel] = saga.context if saga is not None else _AnyContext
        context = model.model_validate(record.context)
        return SagaResult.from_state(record.state, context, saga=saga)

    async def wait(self, saga_id: str) -> SagaResult[Any]:
        """Wait until the saga ends (polling the store) and return its result
        (bound it with ``asyncio.timeout`` if needed)."""
        record = await self.poll(saga_id)
        assert record is not None  # noqa: S101 - no ``until``: only an end stops it
        return self.result_of(record)

    async def poll(
        self, saga_id: str, *, until: Callable[[], bool] | None = None
    ) -> SagaRecord | None:
        """The saga's record once it ended; None as soon as ``until()`` holds."""
        delay = 0.01
        while True:
            if until is not None and until():
                return None
            record = await self.store.get(saga_id)
            if record.status.terminal:
                return record
            await self.clock.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def request(
        self,
        saga_id: str,
        action: Action,
        *,
        reason: str | None = None,
        by: str = "operator",
        step: str | None = None,
    ) -> None:
        """Commit an operator's ``action`` and hand the saga over to a worker,
        or leave it to the live worker that drives it, which records its step
        in flight and goes on as asked (``StateError`` if the action does not
        fit the saga's state). ``step``: the one whose compensation
        ``retry_compensation``, ``mark_compensated`` or
        ``skip_compensation`` acts on."""
        await self.driver.request(
            saga_id, action, reason=reason, by=by, hand_over=True, step=step
        )

    async def retry(self, saga_id: str, *, by: str = "operator") -> None:
        """Run the failed steps of a ``failed`` saga again (fresh retry
        budget), in a worker."""
        await self.request(saga_id, "retry", by=by)

    async def resume(self, saga_id: str, *, by: str = "operator") -> None:
        """Retry the failed compensation of a ``compensation_failed`` saga and
        go on rolling back, in a worker."""
        await self.request(saga_id, "resume", by=by)

    async def cancel(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Stop a running saga and compensate what it completed, in a worker."""
        await self.request(saga_id, "cancel", reason=reason, by=by)

    async def pause(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Start no new step of a running or compensating saga until
        :meth:`unpause` (steps in flight finish and are recorded)."""
        await self.request(saga_id, "pause", reason=reason, by=by)

    async def unpause(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Let a paused saga go on where it stopped, in a worker."""
        await self.request(saga_id, "unpause", reason=reason, by=by)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()


def _context(saga: Saga[C], context: C | Mapping[str, Any] | None) -> C:
    if isinstance(context, saga.context):
        return context
    if context is None:
        return saga.context()
    if isinstance(context, BaseModel):
        raise SagaError(
            f"saga {saga.name!r} takes a {saga.context.__name__} context, "
            f"got {type(context).__name__}"
        )
    return saga.context.model_validate(context)


class _AnyContext(BaseModel):
    model_config = {"extra": "allow"}
