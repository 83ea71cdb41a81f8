"""The orchestrator: runs saga instances by feeding the engine and doing what it says.

For every event the loop is: ``decide`` -> commit the new state and the history
line -> run the commands. A transition is durable before any of its effects
start, so a crash at any point leaves a state a restarted worker can resume
(``recover``). A successful saga of N sequential steps costs N + 1 commits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Compensate, FinishSaga, RunStep
from sagakit.engine.decide import decide, initial_state
from sagakit.engine.events import (
    Event,
    SagaResumed,
    SagaStarted,
)
from sagakit.engine.state import SagaState, SagaStatus
from sagakit.errors import (
    ConcurrencyError,
    SagaError,
    SagaNotFound,
    StateError,
    StoreError,
)
from sagakit.observability.observer import (
    NOOP,
    STEP_KINDS,
    Observer,
    started_result,
    trace_of,
)
from sagakit.ports.clock import Clock
from sagakit.ports.store import (
    HistoryEntry,
    InboxEntry,
    OutboxMessage,
    SagaRecord,
    SagaStore,
)
from sagakit.ports.transport import Transport
from sagakit.runtime import operator
from sagakit.runtime.clock import SystemClock
from sagakit.runtime.executor import execute
from sagakit.runtime.instance import (
    Delivery,
    Instance,
    LeaseLost,
    Outcome,
    default_worker_id,
)
from sagakit.runtime.messaging import MessagingMixin
from sagakit.runtime.relay import OutboxRelay
from sagakit.runtime.remote import (
    command_message,
    remote_of,
)
from sagakit.runtime.result import SagaResult

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=BaseModel)


class Orchestrator(MessagingMixin):
    """Starts, drives and recovers orchestrated sagas against one store.

    ``sagas`` registers definitions so that ``recover`` can resume their
    instances after a restart; ``start``/``run`` register what they are given.

    Without ``lease`` (the embedded default) one process owns the database and
    ``recover`` takes every unfinished instance. With ``lease`` (seconds), each
    instance this orchestrator creates or claims is leased to ``worker_id``;
    ``recover`` claims only instances whose lease expired, and
    ``renew_leases`` must run more often than the lease (``Worker`` does it).

    ``store_retry`` is how long a save that failed with a store error (a lost
    connection, a database restart) is retried before the instance is left
    for another worker.

    Remote steps need a ``transport``: commands leave through the store's
    outbox (published by a relay), replies arrive on ``reply_queue``, and
    reply deadlines are checked every ``deadline_interval`` seconds; all three
    run inside ``async with orchestrator.serving():`` (``Worker`` does it).

    ``observer`` receives tracing and metrics hooks (``sagakit.observability``:
    ``OpenTelemetryObserver``, ``PrometheusObserver``); none by default.
    """

    def __init__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]] = (),
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] | None = None,
        jitter: Callable[[], float] | None = None,
        worker_id: str | None = None,
        lease: float | None = None,
        store_retry: float = 30.0,
        transport: Transport | None = None,
        reply_queue: str = "sagakit.replies",
        deadline_interval: float = 0.5,
        observer: Observer | None = None,
    ) -> None:
        if lease is not None and not lease > 0:
            raise SagaError(f"lease must be > 0 seconds, got {lease}")
        self.store = store
        self.worker_id = worker_id or default_worker_id()
        self.lease = lease
        self.store_retry = store_retry
        self.clock: Clock = clock or SystemClock()
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._jitter = jitter or random.random
        self._sagas: dict[str, Saga[Any]] = {}
        self._active: dict[str, Instance] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.transport = transport
        self.reply_queue = reply_queue
        self.deadline_interval = deadline_interval
        self.observer: Observer = NOOP if observer is None else observer
        self.relay = (
            None
            if transport is None
            else OutboxRelay(store, transport, owner=self.worker_id)
        )
        self._serving = False
        for saga in sagas:
            self.register(saga)

    # -- registry ----------------------------------------------------------

    def register(self, *sagas: Saga[Any]) -> None:
        for saga in sagas:
            if not isinstance(saga, Saga):
                raise SagaError(f"register() takes Saga definitions, got {saga!r}")
            known = self._sagas.get(saga.name)
            if known is not None and known is not saga:
                raise SagaError(
                    f"another saga named {saga.name!r} is already registered"
                )
            self._sagas[saga.name] = saga

    def definition(self, name: str) -> Saga[Any]:
        try:
            return self._sagas[name]
        except KeyError:
            raise SagaError(
                f"no saga named {name!r} is registered; known: {sorted(self._sagas)}"
            ) from None

    # -- starting ----------------------------------------------------------

    async def start(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        saga_id: str | None = None,
    ) -> str:
        """Start a saga in the background and return its id.

        With an ``idempotency_key`` already used for this saga, nothing new
        starts: the existing instance's id is returned.
        """
        self._check_can_run(saga)
        begun = await self._begin(saga, context, idempotency_key, saga_id)
        if isinstance(begun, str):
            return begun  # the instance that already has this idempotency key
        inst, commands = begun
        self._spawn(inst, commands)
        return inst.state.saga_id

    async def run(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        saga_id: str | None = None,
    ) -> SagaResult[C]:
        """Start a saga and wait for it to end; returns its result (never raises
        for a failed step: see ``SagaResult.raise_for_status``)."""
        self._check_can_run(saga)
        begun = await self._begin(saga, context, idempotency_key, saga_id)
        if isinstance(begun, str):
            return await self.wait(begun)
        inst, commands = begun
        inst.done = asyncio.get_running_loop().create_future()
        inst.driver = asyncio.current_task()
        inst.caller_driven = True
        await self._drive(inst, commands)
        try:
            return inst.done.result()
        except (ConcurrencyError, StateError, SagaNotFound):
            # another worker took the saga over: follow it in the store
            return await self._poll(inst.state.saga_id)

    def run_sync(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        saga_id: str | None = None,
    ) -> SagaResult[C]:
        """``run`` for synchronous code (Flask, Django views, scripts)."""
        return asyncio.run(
            self.run(saga, context, idempotency_key=idempotency_key, saga_id=saga_id)
        )

    async def submit(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        saga_id: str | None = None,
    ) -> str:
        """Commit a new instance for a worker to run, and return its id.

        For producers (a web request handler) that must not run steps
        themselves; any ``Worker`` with the definition registered claims it.
        """
        begun = await self._begin(
            saga, context, idempotency_key, saga_id, submit_only=True
        )
        assert isinstance(begun, str)  # noqa: S101 - submit_only never drives
        return begun

    def _check_can_run(self, saga: Saga[Any]) -> None:
        remote = any(s.is_remote or s.compensation_is_remote for s in saga)
        if remote and not self._serving:
            raise SagaError(
                f"saga {saga.name!r} has remote steps: give the orchestrator a "
                "transport and run it inside 'async with orchestrator.serving()'"
            )

    def _ownership(self) -> dict[str, Any]:
        if self.lease is None:
            return {}
        return {"owner": self.worker_id, "lease": self.lease}

    async def _begin(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None,
        idempotency_key: str | None,
        saga_id: str | None,
        *,
        submit_only: bool = False,
    ) -> tuple[Instance, tuple[Command, ...]] | str:
        """Create and commit a new instance; or the id of the existing one.

        ``submit_only`` commits it unowned and drives nothing: a worker claims it.
        """
        self.register(saga)
        ctx = self._context(saga, context)
        saga_id = saga_id or self._new_id()
        now = self.clock.now()
        decision = decide(saga, initial_state(saga, saga_id), SagaStarted(now))
        record = SagaRecord(
            saga_id=saga_id,
            saga_name=saga.name,
            status=decision.state.status,
            version=1,
            state=decision.state,
            context=ctx.model_dump(mode="json"),
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        record = replace(record, deadline=decision.state.next_deadline)
        with self.observer.saga_start(saga.name, saga_id) as start:
            trace = start.carrier
            started = HistoryEntry(
                saga_id, None, "saga", 0, "started", now, now, started_result(trace)
            )
            outbox: list[OutboxMessage] = []
            for command in decision.commands:
                if isinstance(command, RunStep) and (
                    remote := remote_of(saga, command)
                ):
                    try:
                        outbox.append(
                            command_message(
                                saga,
                                decision.state,
                                ctx,
                                command,
                                remote,
                                reply_to=self.reply_queue,
                                now=now,
                                observer=self.observer,
                                trace=trace,
                            )
                        )
                    except Exception as exc:
                        raise SagaError(
                            f"saga {saga.name!r}: cannot build the "
                            f"{remote.command!r} command of step {command.step!r}: "
                            f"{exc}"
                        ) from exc
            ownership = {} if submit_only else self._ownership()
            outbox = self._hold(outbox, now)
            stored, created = await self.store.create(
                record, [started], outbox=outbox, **ownership
            )
            start.created = created
        if outbox and created:
            self._send(outbox)
        if not created:
            logger.info(
                "saga already started",
                extra={
                    "action": "saga_deduplicated",
                    "saga_id": stored.saga_id,
                    "idempotency_key": idempotency_key,
                },
            )
            return stored.saga_id
        logger.info(
            "saga submitted" if submit_only else "saga started",
            extra={"action": "saga_started", "saga_id": saga_id, "saga": saga.name},
        )
        if submit_only:
            return saga_id
        inst = Instance(saga, decision.state, ctx, 1, now, idempotency_key)
        inst.trace = trace
        self._active[saga_id] = inst
        return inst, decision.commands

    @staticmethod
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

    # -- waiting -----------------------------------------------------------

    async def wait(self, saga_id: str) -> SagaResult[Any]:
        """Wait until the saga ends and return its result (bound it with
        ``asyncio.timeout`` if needed)."""
        inst = self._active.get(saga_id)
        if inst is not None:
            if inst.done is None:
                inst.done = asyncio.get_running_loop().create_future()
            return await asyncio.shield(inst.done)
        return await self._poll(saga_id)

    async def _poll(self, saga_id: str) -> SagaResult[Any]:
        delay = 0.01
        while True:
            if saga_id in self._active:
                return await self.wait(saga_id)
            record = await self.store.get(saga_id)
            if record.status.terminal:
                return self._result_from_record(record)
            await self.clock.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def result(self, saga_id: str) -> SagaResult[Any]:
        """The saga's current outcome as stored (it may not have ended)."""
        return self._result_from_record(await self.store.get(saga_id))

    def _result_from_record(self, record: SagaRecord) -> SagaResult[Any]:
        saga = self._sagas.get(record.saga_name)
        model: type[BaseModel] = saga.context if saga is not None else _AnyContext
        return SagaResult.from_state(record.state, model.model_validate(record.context))

    async def drain(self) -> None:
        """Wait until every saga driven in the background has stopped."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def settle(self, poll: float = 0.02) -> None:
        """Wait until no step runs here: every instance driven here has ended
        or only waits for replies or deadlines (which survive a stop)."""
        # parked flags change in many places; a short poll is simpler than events
        while any(not inst.parked for inst in self._active.values()):  # noqa: ASYNC110
            await asyncio.sleep(poll)

    async def stop_driving(self, *, release: bool = True) -> list[str]:
        """Cancel every saga driven here; they stay resumable, and with a lease
        they are released (unless ``release=False``) so another worker can claim
        them at once."""
        ids = list(self._active)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if release and self.lease is not None and ids:
            await self.store.release(self.worker_id, ids)
        return ids

    async def close(self) -> None:
        """Stop driving (unfinished sagas stay resumable) and close the store."""
        await self.stop_driving()
        await self.store.close()

    # -- recovery ----------------------------------------------------------

    async def recover(self, limit: int = 1000) -> list[str]:
        """Resume unfinished instances of the registered sagas in the background.

        Steps that were committed are not run again; a step that was in flight
        when the previous worker died runs again (at-least-once). With a lease,
        only instances whose lease expired (or that nobody owns) are claimed.
        """
        if self.lease is not None:
            claimed = await self.store.claim(
                self.worker_id, list(self._sagas), lease=self.lease, limit=limit
            )
            adopted = []
            for record in claimed:
                if record.saga_id in self._active:
                    continue  # cannot happen while our lease holds; be safe
                if await self._adopt(record, "claimed"):
                    adopted.append(record.saga_id)
            return adopted
        resumed = []
        for saga_id in await self.store.unfinished(list(self._sagas), limit):
            if saga_id in self._active:
                continue
            record = await self.store.get(saga_id)
            if not record.status.terminal and await self._adopt(record, "resumed"):
                resumed.append(saga_id)
        return resumed

    async def _adopt(self, record: SagaRecord, how: str) -> bool:
        """Drive an instance another worker (or a producer) left; False if lost."""
        saga = self.definition(record.saga_name)
        saga_id = record.saga_id
        inst = Instance(
            saga,
            record.state,
            saga.context.model_validate(record.context),
            record.version,
            record.created_at,
            record.idempotency_key,
        )
        now = self.clock.now()
        entry = HistoryEntry(
            saga_id, None, "saga", 0, how, now, now, {"worker": self.worker_id}
        )
        decision = decide(saga, record.state, SagaResumed(now))
        self._active[saga_id] = inst
        if decision.state == record.state:
            # nothing to commit yet: the line joins the next transition's commit
            inst.pending_history.append(entry)
        else:
            try:
                await self._commit(inst, decision.state, [entry])
            except (ConcurrencyError, StateError, SagaNotFound):
                self._active.pop(saga_id, None)
                return False  # another worker took it
            except BaseException:
                # not driven: left in _active, its lease would be renewed forever
                self._active.pop(saga_id, None)
                raise
        logger.info(
            "saga resumed",
            extra={
                "action": f"saga_{how}",
                "saga_id": saga_id,
                "saga": saga.name,
                "worker": self.worker_id,
            },
        )
        self._spawn(inst, decision.commands)
        return True

    async def renew_leases(self) -> list[str]:
        """Extend the leases of the instances this worker drives; returns the
        ids it lost (another worker claimed them: their next save fails)."""
        if self.lease is None or not self._active:
            return []
        ids = list(self._active)
        kept = set(await self.store.renew(self.worker_id, ids, lease=self.lease))
        lost = [i for i in ids if i not in kept and i in self._active]
        for saga_id in lost:
            logger.warning(
                "lease lost",
                extra={"action": "lease_lost", "saga_id": saga_id},
            )
            inst = self._active.get(saga_id)
            if inst is not None and inst.caller_driven:
                inst.queue.put_nowait(LeaseLost())  # run() goes on polling
            elif inst is not None and inst.driver is not None:
                inst.driver.cancel()  # its state is stale: another worker has it
        return lost

    async def retry(self, saga_id: str, *, by: str = "operator") -> None:
        """Run the failed steps of a ``failed`` saga again (fresh retry budget)."""
        await operator.request(self, saga_id, "retry", by=by)

    async def resume(self, saga_id: str, *, by: str = "operator") -> None:
        """Retry the failed compensation of a ``compensation_failed`` saga and
        go on rolling back."""
        await operator.request(self, saga_id, "resume", by=by)

    async def cancel(
        self, saga_id: str, *, reason: str | None = None, by: str = "operator"
    ) -> None:
        """Stop a running saga and compensate what it completed."""
        await operator.request(self, saga_id, "cancel", reason=reason, by=by)

    @property
    def active(self) -> int:
        """How many instances this orchestrator is driving now."""
        return len(self._active)

    # -- driving -----------------------------------------------------------

    def _spawn(self, inst: Instance, commands: tuple[Command, ...]) -> None:
        task = asyncio.create_task(self._drive(inst, commands))
        inst.driver = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive(self, inst: Instance, commands: tuple[Command, ...]) -> None:
        """Run the instance's commands and apply their outcomes until it ends.

        Local steps run here; remote steps only wait: their replies and
        deadlines arrive on the instance's queue as deliveries.
        """
        saga_id = inst.state.saga_id
        try:
            if inst.trace is None and self.observer.traces:
                inst.trace = await self._stored_trace(saga_id)
            while True:
                local: list[RunStep | Compensate] = []
                for command in commands:
                    if isinstance(command, FinishSaga):
                        self._finish(inst)
                        return
                    if remote_of(inst.saga, command) is None:
                        local.append(command)
                if len(local) == 1 and inst.in_flight == 0 and inst.queue.empty():
                    item: Outcome | Delivery | LeaseLost = await self._execute(
                        inst, local[0]
                    )
                else:
                    for command in local:
                        inst.in_flight += 1
                        task = asyncio.create_task(
                            self._execute_into(inst, command, inst.queue)
                        )
                        inst.tasks.add(task)
                        task.add_done_callback(inst.tasks.discard)
                    inst.parked = inst.in_flight == 0
                    item = await inst.queue.get()
                    inst.parked = False
                if isinstance(item, Delivery):
                    commands = await self._deliver(inst, item)
                    continue
                if isinstance(item, LeaseLost):
                    _lease_lost(saga_id)
                event, entry, exc = item
                if exc is not None:
                    inst.exceptions[entry.step or ""] = exc
                # an operator's request that came while the step ran goes first:
                # a cancel must stop the saga before the next step starts
                await self._apply_operator_requests(inst)
                commands = await self._apply(inst, event, [entry])
        except asyncio.CancelledError:
            self._abandon(inst, None)
            raise
        except (ConcurrencyError, StateError, SagaNotFound) as exc:
            logger.warning(
                "saga taken over",
                extra={
                    "action": "saga_abandoned",
                    "saga_id": saga_id,
                    "reason": str(exc),
                },
            )
            self._abandon(inst, exc)
        except Exception as exc:
            logger.exception(
                "saga stopped by an internal error; it stays resumable",
                extra={"action": "saga_stopped", "saga_id": saga_id},
            )
            self._abandon(inst, exc)

    async def _apply_operator_requests(self, inst: Instance) -> None:
        waiting: list[Outcome | Delivery | LeaseLost] = []
        while not inst.queue.empty():
            item = inst.queue.get_nowait()
            if isinstance(item, Delivery) and item.strict:
                await self._deliver(inst, item)
            else:
                waiting.append(item)
        for item in waiting:
            inst.queue.put_nowait(item)

    def _abandon(self, inst: Instance, exc: BaseException | None) -> None:
        self._active.pop(inst.state.saga_id, None)
        for task in list(inst.tasks):
            task.cancel()
        if inst.done is not None and not inst.done.done():
            if exc is None:
                inst.done.cancel()
            else:
                inst.done.set_exception(exc)

    def _finish(self, inst: Instance) -> None:
        state = inst.state
        self._active.pop(state.saga_id, None)
        while not inst.queue.empty():  # replies that came too late: nothing to do
            item = inst.queue.get_nowait()
            if isinstance(item, Delivery) and not item.handled.done():
                item.handled.set_result(None)
        if inst.finished_elsewhere:  # that worker logged and reported it
            self._settle_done(inst)
            return
        # a rolled-back saga is an expected business outcome; the other two
        # endings need an operator
        attention = state.status in (SagaStatus.FAILED, SagaStatus.COMPENSATION_FAILED)
        level = logging.WARNING if attention else logging.INFO
        logger.log(
            level,
            "saga finished",
            extra={
                "action": "saga_finished",
                "saga_id": state.saga_id,
                "saga": state.saga_name,
                "status": state.status.value,
                "failed_step": state.failed_step,
            },
        )
        self.observer.saga_finished(
            state.saga_name,
            state.saga_id,
            state.status.value,
            state.failed_step,
            inst.trace,
        )
        self._settle_done(inst)

    @staticmethod
    def _settle_done(inst: Instance) -> None:
        if inst.done is not None and not inst.done.done():
            state = inst.state
            exc = inst.exceptions.get(state.failed_step or "")
            inst.done.set_result(SagaResult.from_state(state, inst.context, exc))

    async def _apply(
        self,
        inst: Instance,
        event: Event,
        entries: list[HistoryEntry],
        inbox: InboxEntry | None = None,
    ) -> tuple[Command, ...]:
        """Decide, then commit the transition before anything else happens.

        Remote commands the decision issues are written to the outbox in the
        same commit. A decision that changes nothing commits nothing.
        """
        decision = decide(inst.saga, inst.state, event)
        if decision.state == inst.state and not decision.commands and inbox is None:
            return ()
        history = [*inst.pending_history, *entries]
        now = self.clock.now()
        if decision.state.status.terminal:
            status = decision.state.status.value
            history.append(
                HistoryEntry(inst.state.saga_id, None, "saga", 0, status, now, now)
            )
        outbox: list[OutboxMessage] = []
        unsendable: list[Outcome] = []
        for command in decision.commands:
            if isinstance(command, FinishSaga):
                continue
            remote = remote_of(inst.saga, command)
            if remote is None:
                continue
            try:
                outbox.append(
                    command_message(
                        inst.saga,
                        decision.state,
                        inst.context,
                        command,
                        remote,
                        reply_to=self.reply_queue,
                        now=now,
                        observer=self.observer,
                        trace=inst.trace,
                    )
                )
            except Exception as exc:
                unsendable.append(self._unsendable(inst, command, exc, now))
        outbox = self._hold(outbox, now)
        await self._commit(inst, decision.state, history, outbox=outbox, inbox=inbox)
        inst.pending_history.clear()
        for entry in entries:
            if entry.kind in STEP_KINDS:
                self.observer.step_finished(inst.saga.name, entry)
        if outbox:
            self._send(outbox)
        for outcome in unsendable:  # applied next, as if the step had failed
            inst.queue.put_nowait(outcome)
        return decision.commands

    def _hold(self, outbox: list[OutboxMessage], now: float) -> list[OutboxMessage]:
        """While the relay runs, due messages are written held by it, so that
        it publishes them right after the commit instead of claiming them."""
        relay = self.relay
        if not outbox or relay is None or not relay.running:
            return outbox
        return [relay.held(message, now) for message in outbox]

    def _send(self, outbox: list[OutboxMessage]) -> None:
        """After the commit: publish what the relay holds, wake it for the rest."""
        if self.relay is not None:
            self.relay.publish_now(outbox)

    async def _commit(
        self,
        inst: Instance,
        state: SagaState,
        history: list[HistoryEntry],
        *,
        outbox: list[OutboxMessage] | None = None,
        inbox: InboxEntry | None = None,
    ) -> None:
        """Save at the next version; retry store errors for ``store_retry`` s."""
        record = SagaRecord(
            saga_id=state.saga_id,
            saga_name=state.saga_name,
            status=state.status,
            version=inst.version + 1,
            state=state,
            context=inst.context.model_dump(mode="json"),
            idempotency_key=inst.idempotency_key,
            created_at=inst.created_at,
            updated_at=history[-1].finished_at if history else self.clock.now(),
            deadline=state.next_deadline,
        )
        extra: dict[str, Any] = self._ownership()
        if outbox:
            extra["outbox"] = outbox
        if inbox is not None:
            extra["inbox"] = inbox
        delay, waited = 0.05, 0.0
        while True:
            try:
                await self.store.save(record, inst.version, history, **extra)
                break
            except StoreError as exc:
                if waited >= self.store_retry:
                    raise
                logger.warning(
                    "save failed; retrying",
                    extra={
                        "action": "save_retry",
                        "saga_id": state.saga_id,
                        "error": str(exc),
                    },
                )
                await self.clock.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)
        inst.version += 1
        inst.state = state

    async def _execute_into(
        self,
        inst: Instance,
        command: RunStep | Compensate,
        queue: asyncio.Queue[Outcome | Delivery | LeaseLost],
    ) -> None:
        outcome = await self._execute(inst, command)
        inst.in_flight -= 1
        queue.put_nowait(outcome)

    async def _execute(self, inst: Instance, command: RunStep | Compensate) -> Outcome:
        return await execute(
            inst.saga,
            inst.state,
            inst.context,
            command,
            clock=self.clock,
            jitter=self._jitter,
            observer=self.observer,
            trace=inst.trace,
        )

    async def _stored_trace(self, saga_id: str) -> dict[str, str]:
        """The trace carrier stored when the saga started (for the observer)."""
        try:
            return trace_of(await self.store.history(saga_id))
        except StoreError:
            return {}  # tracing must not stop a saga: its spans start a new trace


class _AnyContext(BaseModel):
    model_config = {"extra": "allow"}


def _lease_lost(saga_id: str) -> NoReturn:
    raise ConcurrencyError(f"saga {saga_id}: another worker took its lease")
