"""The orchestrator: runs saga instances by feeding the engine and doing what it says.

For every event the loop is: ``decide`` -> commit the new state and the history
line -> run the commands. A transition is durable before any of its effects
start, so a crash at any point leaves a state a restarted worker can resume
(``recover``). A successful saga of N sequential steps costs N + 1 commits.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from sagakit.definition.saga import Saga, Step
from sagakit.engine.commands import Command, Compensate, FinishSaga, RunStep
from sagakit.engine.decide import decide, initial_state
from sagakit.engine.events import (
    CompensationFailed,
    CompensationSucceeded,
    Event,
    SagaResumed,
    SagaStarted,
    StepFailed,
    StepSucceeded,
)
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.errors import ConcurrencyError, SagaError, StateError
from sagakit.ports.clock import Clock
from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore
from sagakit.runtime.clock import SystemClock
from sagakit.runtime.result import SagaResult

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=BaseModel)
_TRACEBACK_LIMIT = 4000


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception so it can be stored and shown after a restart."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    tb = "".join(traceback.format_exception(exc))[-_TRACEBACK_LIMIT:]
    return ErrorInfo(name, str(exc), tb)


@dataclass(eq=False)
class _Instance:
    saga: Saga[Any]
    state: SagaState
    context: BaseModel
    version: int
    created_at: float
    idempotency_key: str | None
    done: asyncio.Future[SagaResult[Any]] | None = None
    exceptions: dict[str, BaseException] = field(default_factory=dict)
    queue: asyncio.Queue[tuple[Event, HistoryEntry]] | None = None
    in_flight: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Orchestrator:
    """Starts, drives and recovers orchestrated sagas against one store.

    ``sagas`` registers definitions so that ``recover`` can resume their
    instances after a restart; ``start``/``run`` register what they are given.
    """

    def __init__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]] = (),
        *,
        clock: Clock | None = None,
        new_id: Callable[[], str] | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._jitter = jitter or random.random
        self._sagas: dict[str, Saga[Any]] = {}
        self._active: dict[str, _Instance] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
        begun = await self._begin(saga, context, idempotency_key, saga_id)
        if isinstance(begun, str):
            return await self.wait(begun)
        inst, commands = begun
        inst.done = asyncio.get_running_loop().create_future()
        await self._drive(inst, commands)
        return inst.done.result()

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

    async def _begin(
        self,
        saga: Saga[C],
        context: C | Mapping[str, Any] | None,
        idempotency_key: str | None,
        saga_id: str | None,
    ) -> tuple[_Instance, tuple[Command, ...]] | str:
        """Create and commit a new instance; or the id of the existing one."""
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
        started = HistoryEntry(saga_id, None, "saga", 0, "started", now, now)
        stored, created = await self.store.create(record, [started])
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
            "saga started",
            extra={"action": "saga_started", "saga_id": saga_id, "saga": saga.name},
        )
        inst = _Instance(saga, decision.state, ctx, 1, now, idempotency_key)
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

    async def close(self) -> None:
        """Stop driving (unfinished sagas stay resumable) and close the store."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.store.close()

    # -- recovery ----------------------------------------------------------

    async def recover(self, limit: int = 1000) -> list[str]:
        """Resume unfinished instances of the registered sagas in the background.

        Steps that were committed are not run again; a step that was in flight
        when the previous worker died runs again (at-least-once).
        """
        resumed = []
        for saga_id in await self.store.unfinished(list(self._sagas), limit):
            if saga_id in self._active:
                continue
            record = await self.store.get(saga_id)
            if record.status.terminal:
                continue
            saga = self.definition(record.saga_name)
            inst = _Instance(
                saga,
                record.state,
                saga.context.model_validate(record.context),
                record.version,
                record.created_at,
                record.idempotency_key,
            )
            now = self.clock.now()
            entry = HistoryEntry(saga_id, None, "saga", 0, "resumed", now, now)
            self._active[saga_id] = inst
            try:
                commands = await self._apply(inst, SagaResumed(now), entry)
            except ConcurrencyError:
                self._active.pop(saga_id, None)
                continue  # another worker took it
            logger.info(
                "saga resumed",
                extra={"action": "saga_resumed", "saga_id": saga_id, "saga": saga.name},
            )
            self._spawn(inst, commands)
            resumed.append(saga_id)
        return resumed

    # -- driving -----------------------------------------------------------

    def _spawn(self, inst: _Instance, commands: tuple[Command, ...]) -> None:
        task = asyncio.create_task(self._drive(inst, commands))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive(self, inst: _Instance, commands: tuple[Command, ...]) -> None:
        saga_id = inst.state.saga_id
        try:
            while True:
                runnable: list[RunStep | Compensate] = []
                for command in commands:
                    if isinstance(command, FinishSaga):
                        self._finish(inst)
                        return
                    runnable.append(command)
                if len(runnable) == 1 and inst.in_flight == 0:
                    event, entry = await self._execute(inst, runnable[0])
                else:
                    if inst.queue is None:
                        inst.queue = asyncio.Queue()
                    for command in runnable:
                        inst.in_flight += 1
                        task = asyncio.create_task(
                            self._execute_into(inst, command, inst.queue)
                        )
                        inst.tasks.add(task)
                        task.add_done_callback(inst.tasks.discard)
                    event, entry = await inst.queue.get()
                    inst.in_flight -= 1
                commands = await self._apply(inst, event, entry)
        except asyncio.CancelledError:
            self._abandon(inst, None)
            raise
        except (ConcurrencyError, StateError) as exc:
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

    def _abandon(self, inst: _Instance, exc: BaseException | None) -> None:
        self._active.pop(inst.state.saga_id, None)
        if inst.done is not None and not inst.done.done():
            if exc is None:
                inst.done.cancel()
            else:
                inst.done.set_exception(exc)

    def _finish(self, inst: _Instance) -> None:
        state = inst.state
        self._active.pop(state.saga_id, None)
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
        if inst.done is not None and not inst.done.done():
            exc = inst.exceptions.get(state.failed_step or "")
            inst.done.set_result(SagaResult.from_state(state, inst.context, exc))

    async def _apply(
        self, inst: _Instance, event: Event, entry: HistoryEntry
    ) -> tuple[Command, ...]:
        """Decide, then commit the transition before anything else happens."""
        decision = decide(inst.saga, inst.state, event)
        state = decision.state
        history = [entry]
        if state.status.terminal:
            now = entry.finished_at
            history.append(
                HistoryEntry(
                    state.saga_id, None, "saga", 0, state.status.value, now, now
                )
            )
        record = SagaRecord(
            saga_id=state.saga_id,
            saga_name=state.saga_name,
            status=state.status,
            version=inst.version + 1,
            state=state,
            context=inst.context.model_dump(mode="json"),
            idempotency_key=inst.idempotency_key,
            created_at=inst.created_at,
            updated_at=entry.finished_at,
        )
        await self.store.save(record, inst.version, history)
        inst.version += 1
        inst.state = state
        return decision.commands

    async def _execute_into(
        self,
        inst: _Instance,
        command: RunStep | Compensate,
        queue: asyncio.Queue[tuple[Event, HistoryEntry]],
    ) -> None:
        queue.put_nowait(await self._execute(inst, command))

    async def _execute(
        self, inst: _Instance, command: RunStep | Compensate
    ) -> tuple[Event, HistoryEntry]:
        """Run one step action or compensation; every outcome becomes an event."""
        if command.delay > 0:
            await self.clock.sleep(command.delay)
        saga_id = inst.state.saga_id
        spec = inst.saga.step(command.step)
        forward = isinstance(command, RunStep)
        kind = "action" if forward else "compensation"
        started = self.clock.now()
        try:
            if forward:
                value = await _call(spec, spec.action, (inst.context,), spec.timeout)
                result = _jsonable(spec, value)
            else:
                args: tuple[Any, ...] = (inst.context,)
                if spec.compensation_takes_result:
                    args = (inst.context, inst.state.step(spec.name).result)
                await _call(spec, spec.compensate, args, spec.compensation_timeout)
        except Exception as exc:
            at = self.clock.now()
            info = error_info(exc)
            policy = spec.retry if forward else spec.compensation_retry
            logger.info(
                "step failed" if forward else "compensation failed",
                extra={
                    "action": f"{kind}_failed",
                    "saga_id": saga_id,
                    "step": spec.name,
                    "attempt": command.attempt,
                    "error": str(info),
                },
            )
            entry = HistoryEntry(
                saga_id,
                spec.name,
                kind,
                command.attempt,
                "failed",
                started,
                at,
                error=info,
            )
            if forward:
                inst.exceptions[spec.name] = exc
                failed: Event = StepFailed(
                    spec.name, info, policy.retries(exc), at, self._jitter()
                )
            else:
                failed = CompensationFailed(
                    spec.name, info, policy.retries(exc), at, self._jitter()
                )
            return failed, entry
        at = self.clock.now()
        if forward:
            entry = HistoryEntry(
                saga_id,
                spec.name,
                kind,
                command.attempt,
                "succeeded",
                started,
                at,
                result,
            )
            return StepSucceeded(spec.name, result, at), entry
        entry = HistoryEntry(
            saga_id, spec.name, kind, command.attempt, "succeeded", started, at
        )
        return CompensationSucceeded(spec.name, at), entry


class _AnyContext(BaseModel):
    model_config = {"extra": "allow"}


async def _call(
    spec: Step,
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...],
    limit: float | None,
) -> Any:
    assert fn is not None  # noqa: S101 - compensate exists when a Compensate is issued
    if inspect.iscoroutinefunction(fn):
        awaitable = fn(*args)
    else:
        awaitable = asyncio.to_thread(fn, *args)
    if limit is None:
        value = await awaitable
    else:
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                value = await awaitable
        except TimeoutError as exc:
            if deadline.expired():
                raise TimeoutError(
                    f"step {spec.name!r} timed out after {limit}s"
                ) from exc
            raise
    if inspect.isawaitable(value):
        value = await value
    return value


def _jsonable(spec: Step, value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise TypeError(
            f"step {spec.name!r} returned {type(value).__name__}, which cannot be "
            "stored as JSON; return JSON-able data or a pydantic model"
        ) from exc
