"""Running a saga at one failure point: instrumented steps, participants,
a store that can crash at a chosen commit, and recovery in a new process.

A "process" is an orchestrator generation. When the store crashes it, the
generation is dead: it starts no more effects, writes nothing more, its
unacknowledged messages go back to their queues, and its tasks are cancelled.
A new orchestrator on the same store then recovers the saga.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from pydantic import BaseModel

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.definition.subsaga import SubSaga, has_remote_steps
from sagakit.engine.state import SagaState
from sagakit.errors import SagaNotFound
from sagakit.messaging.envelope import Envelope
from sagakit.participant.service import CommandRejected, Participant
from sagakit.ports.store import HistoryEntry, OutboxMessage, SagaRecord, SagaStore
from sagakit.ports.transport import DeadLetter, Handler, Subscription, Transport
from sagakit.runtime.orchestrator import Orchestrator
from sagakit.testing.clock import FakeClock
from sagakit.testing.lineage import family_of, path_of
from sagakit.testing.points import FailurePoint, InjectedFailure

REPLY_QUEUE = "sagakit.check.replies"
_GENERATION: contextvars.ContextVar[int] = contextvars.ContextVar(
    "sagakit_check_generation", default=0
)

ParticipantFactory = Callable[[Transport, SagaStore], Iterable[Participant]]
"""Builds the participants of remote steps on the checker's transport and
inbox store."""


class CrashSimulated(BaseException):
    """The simulated death of the process at a commit (not an ``Exception``:
    nothing in the library may catch it and carry on)."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One thing that happened at a step: ``outcome`` is ``started``, ``ok``,
    ``failed`` (user code raised) or ``injected`` (the checker failed it).
    ``generation`` is the process it happened in (2 = after the crash);
    ``message_id`` is the command of a remote step."""

    seq: int
    generation: int
    step: str
    kind: str
    attempt: int
    outcome: str
    remote: bool = False
    message_id: str | None = None

    def __str__(self) -> str:
        where = f" msg={self.message_id}" if self.message_id else ""
        return (
            f"#{self.seq} g{self.generation} {self.step}.{self.kind}"
            f"[{self.attempt}] {self.outcome}{where}"
        )


@dataclass
class _Generation:
    number: int
    dead: bool = False
    crashed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class RunRecord:
    """What one run observed."""

    point: FailurePoint
    effects: list[Effect] = field(default_factory=list)
    root: str = ""
    """The saga's id (its sub-sagas' ids are under it)."""
    commits: int = 0
    committed_at_crash: SagaState | None = None
    crashed: bool = False
    final: SagaRecord | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    family: dict[str, tuple[SagaRecord, list[HistoryEntry]]] = field(
        default_factory=dict
    )
    """The sub-sagas' instances as they ended, by step path from the saga
    (``pay``, ``pay/refund``...), with their histories."""
    committed_family: dict[str, SagaState] = field(default_factory=dict)
    """The sub-sagas' committed states when the process died, by path."""
    error: str | None = None
    locks_left: list[str] = field(default_factory=list)
    """Lock keys the store says the saga holds or queues for at the end."""
    _calls: dict[tuple[str, str], int] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    generation: _Generation = field(default_factory=lambda: _Generation(1))
    dead: set[int] = field(default_factory=set)

    def record(
        self, step: str, kind: str, attempt: int, outcome: str, **kw: Any
    ) -> None:
        gen = _GENERATION.get() or self.generation.number
        self.effects.append(
            Effect(next(self._seq), gen, step, kind, attempt, outcome, **kw)
        )

    def next_attempt(self, step: str, kind: str) -> int:
        n = self._calls.get((step, kind), 0) + 1
        self._calls[(step, kind)] = n
        return n


async def _forever() -> None:
    await asyncio.Event().wait()


# -- instrumented definition ----------------------------------------------------


def _local(
    run: RunRecord,
    spec: Step,
    kind: Literal["action", "compensation"],
    prefix: str = "",
) -> Any:
    fn = spec.action if kind == "action" else spec.compensate
    assert callable(fn)  # noqa: S101 - only called for local callables
    name = prefix + spec.name

    async def call(*args: Any, **kwargs: Any) -> Any:
        if _GENERATION.get() in run.dead:
            raise asyncio.CancelledError  # a dead process starts nothing
        attempt = run.next_attempt(name, kind)
        run.record(name, kind, attempt, "started")
        injection = run.point.injection(name, kind)
        if injection is not None and injection.fails(attempt):
            run.record(name, kind, attempt, "injected")
            raise InjectedFailure(f"{name} {kind} (attempt {attempt})")
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            run.record(name, kind, attempt, "failed")
            raise
        run.record(name, kind, attempt, "ok")
        return value

    # the signature of ``fn`` (through ``__wrapped__``) tells the step what
    # to pass: the compensation's own result, ``results``
    return functools.wraps(fn)(call)


def instrument(saga: Saga[Any], run: RunRecord, prefix: str = "") -> Saga[Any]:
    """The same saga with every local action and compensation recorded and
    failing where the point says; the steps of a sub-saga (instrumented
    too) are recorded as ``<step>/<child step>``."""

    def wrap(spec: Step) -> Step:
        changes: dict[str, Any] = {}
        if isinstance(spec.action, SubSaga):
            sub = spec.action
            child = instrument(sub.saga, run, f"{prefix}{spec.name}/")
            changes["action"] = SubSaga(child, context=sub.context, output=sub.output)
            if spec.rolls_back_child:
                changes["compensate"] = changes["action"]
        elif not isinstance(spec.action, Remote):
            changes["action"] = _local(run, spec, "action", prefix)
        local = not isinstance(spec.compensate, Remote | SubSaga)
        if spec.compensate is not None and local:
            changes["compensate"] = _local(run, spec, "compensation", prefix)
        return replace(spec, **changes)

    return saga.rebuilt(wrap)


# -- remote participants --------------------------------------------------------


def _stub_value(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is not None:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (list, tuple, set, Sequence):
            return []
        if origin is dict:
            return {}
        return _stub_value(args[0]) if args else None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _stub_reply(annotation)
        for kind, value in ((bool, True), (int, 1), (float, 1.0), (str, "stub")):
            if issubclass(annotation, kind):
                return value
    return None


def _stub_reply(model: type[BaseModel] | None) -> dict[str, Any]:
    """A plausible reply for ``model``: defaults, or a simple value per field."""
    if model is None:
        return {}
    data = {
        name: _stub_value(info.annotation)
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    try:
        return model.model_validate(data).model_dump(mode="json")
    except Exception:  # a constrained field: the user should pass participants
        return data


def _stub_handler(reply: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    def handler(payload: dict[str, Any]) -> dict[str, Any]:
        return dict(reply)

    return handler


def _stubs(
    saga: Saga[Any], transport: Transport, store: SagaStore, covered: set[str]
) -> list[Participant]:
    """Participants that succeed for every remote command nobody else handles."""
    by_queue: dict[str, Participant] = {}
    for spec in (s for one in (saga, *saga.family) for s in one):
        cancel = spec.action.on_timeout if isinstance(spec.action, Remote) else None
        for target in (spec.action, spec.compensate, cancel):
            if not isinstance(target, Remote) or target.destination in covered:
                continue
            queue = target.destination
            part = by_queue.get(queue)
            if part is None:
                part = by_queue[queue] = Participant(
                    f"stub.{queue}", transport, store, queue=queue, prefetch=4
                )
            if target.command in part.commands:
                continue
            reply = _stub_reply(target.reply if target is spec.action else None)
            part.handler(target.command)(_stub_handler(reply))
    return list(by_queue.values())


def _instrument_participant(part: Participant, run: RunRecord, root: str) -> None:
    """Record each handler execution and fail it where the point says (a
    command of a sub-saga of the saga ``root`` as ``<step>/<child step>``)."""
    handlers = part._handlers
    for command, spec in list(handlers.items()):
        original, wants_message = spec.fn, spec.wants_message

        async def handle(
            payload: Any,
            message: Envelope,
            _fn: Callable[..., Any] = original,
            _wants: bool = wants_message,
        ) -> Any:
            step = path_of(root, message.saga_id) + (message.step or "?")
            kind: Literal["action", "compensation"] = (
                "compensation" if message.compensation else "action"
            )
            attempt = message.attempt or 1
            run.record(
                step, kind, attempt, "started", remote=True, message_id=message.id
            )
            injection = run.point.injection(step, kind)
            if injection is not None and injection.fails(attempt):
                run.record(
                    step, kind, attempt, "injected", remote=True, message_id=message.id
                )
                if injection.mode == "reject":
                    raise CommandRejected(f"{step} {kind} rejected by the checker")
                raise InjectedFailure(f"{step} {kind} (attempt {attempt})")
            try:
                value = _fn(payload, message) if _wants else _fn(payload)
                if inspect.isawaitable(value):
                    value = await value
            except Exception:
                run.record(
                    step, kind, attempt, "failed", remote=True, message_id=message.id
                )
                raise
            run.record(step, kind, attempt, "ok", remote=True, message_id=message.id)
            return value

        handlers[command] = replace(spec, fn=handle, wants_message=True)


# -- a store and a transport that belong to one process ------------------------


class _ProcessStore:
    """The store as one process sees it: it can crash at a commit, and once
    the process is dead nothing it does reaches the database."""

    def __init__(self, base: SagaStore, run: RunRecord, gen: _Generation) -> None:
        self._base = base
        self._run = run
        self._gen = gen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def _check_alive(self) -> None:
        if self._gen.dead:
            raise asyncio.CancelledError  # the process is gone

    def _crash(self, when: str) -> None:
        crash = self._run.point.crash
        if (
            crash is not None
            and crash.commit == self._run.commits
            and crash.when == when
        ):
            self._gen.dead = True
            self._run.dead.add(self._gen.number)
            self._run.crashed = True
            self._gen.crashed.set()
            raise CrashSimulated(str(crash))

    async def _commit(self, write: Callable[[], Any]) -> Any:
        self._check_alive()
        self._run.commits += 1
        self._crash("before")
        out = await write()
        self._crash("after")
        return out

    async def create(
        self, record: SagaRecord, history: Sequence[HistoryEntry], **kw: Any
    ) -> Any:
        kw["outbox"] = _now(kw.get("outbox", ()))
        return await self._commit(lambda: self._base.create(record, history, **kw))

    async def save(
        self,
        record: SagaRecord,
        expected_version: int,
        history: Sequence[HistoryEntry],
        **kw: Any,
    ) -> None:
        kw["outbox"] = _now(kw.get("outbox", ()))

        async def write() -> None:
            await self._base.save(record, expected_version, history, **kw)
            for h in history:  # a fire-and-forget compensation: done once sent
                if h.kind == "compensation" and h.outcome == "sent" and h.step:
                    step = path_of(self._run.root, record.saga_id) + h.step
                    self._run.record(step, h.kind, h.attempt, "sent", remote=True)

        await self._commit(write)

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        self._check_alive()
        # a short hold: what a dead relay held is sent again soon
        return await self._base.claim_outbox(owner, lease=min(lease, 0.3), limit=limit)

    async def mark_sent(self, message_ids: Any) -> None:
        self._check_alive()
        await self._base.mark_sent(message_ids)


def _now(outbox: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    """Retry delays were skipped by the fake clock: publish at once."""
    return [replace(m, available_at=0.0) for m in outbox]


class _ProcessTransport:
    """The broker as one process sees it: when the process dies, messages its
    handlers hold are not acknowledged and go back to their queue."""

    def __init__(self, base: Transport, gen: _Generation, *, duplicate: bool) -> None:
        self._base = base
        self._gen = gen
        self._duplicate = duplicate

    async def publish(self, queue: str, message: Envelope) -> None:
        await self._base.publish(queue, message)

    async def publish_raw(self, queue: str, body: bytes) -> None:
        if self._gen.dead:
            raise asyncio.CancelledError
        await self._base.publish_raw(queue, body)
        if self._duplicate and queue != REPLY_QUEUE:
            await self._base.publish_raw(queue, body)  # at-least-once delivery

    async def consume(self, queue: str, handler: Handler, **kw: Any) -> Subscription:
        gen = self._gen

        async def guarded(message: Envelope) -> None:
            if gen.dead:
                await _forever()
            try:
                await handler(message)
            except asyncio.CancelledError:
                raise
            except BaseException:
                if gen.dead:
                    await _forever()  # never acknowledged: redelivered
                raise

        return await self._base.consume(queue, guarded, **kw)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await self._base.dead_letters(queue, limit)

    async def replay_dead_letters(self, queue: str, limit: int = 100) -> int:
        return await self._base.replay_dead_letters(queue, limit)

    async def close(self) -> None:
        return None  # the broker outlives the process


async def _kill(orch: Orchestrator) -> None:
    """Cancel everything the dead process was doing."""
    tasks: set[asyncio.Task[Any]] = set(orch.driver.tasks)
    for inst in list(orch.driver.active.values()):
        tasks |= inst.tasks
        if inst.driver is not None:
            tasks.add(inst.driver)
    tasks.discard(cast(asyncio.Task[Any], asyncio.current_task()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- one run ----------------------------------------------------------------------


@dataclass
class RunOptions:
    context: Callable[[], Any]
    participants: ParticipantFactory | None
    store_factory: Callable[[], SagaStore]
    run_timeout: float
    duplicate_commands: bool


@contextlib.asynccontextmanager
async def _process(
    saga: Saga[Any],
    run: RunRecord,
    *,
    store: SagaStore,
    transport: Transport | None,
    clock: FakeClock,
    opts: RunOptions,
) -> AsyncIterator[Orchestrator]:
    gen = run.generation
    _GENERATION.set(gen.number)
    orch = Orchestrator(
        cast(SagaStore, _ProcessStore(store, run, gen)),
        [saga],
        clock=clock,
        jitter=lambda: 0.0,
        worker_id=f"check-{gen.number}",
        transport=None
        if transport is None
        else _ProcessTransport(transport, gen, duplicate=opts.duplicate_commands),
        reply_queue=REPLY_QUEUE,
        deadline_interval=0.05,
    )
    async with contextlib.AsyncExitStack() as stack:
        if transport is not None:
            await stack.enter_async_context(orch.serving())
        try:
            yield orch
        finally:
            await _kill(orch)


async def _until(gen: _Generation, work: asyncio.Task[Any]) -> None:
    crashed = asyncio.create_task(gen.crashed.wait())
    try:
        await asyncio.wait({work, crashed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        crashed.cancel()
    if work.done() and not work.cancelled():
        exc = work.exception()
        if exc is not None and not isinstance(exc, CrashSimulated):
            raise exc


async def run_point(
    saga: Saga[Any], point: FailurePoint, saga_id: str, opts: RunOptions
) -> RunRecord:
    """Run ``saga`` once at ``point`` (recovering after its crash, if any)."""
    run = RunRecord(point, root=saga_id)
    checked = instrument(saga, run)
    store = opts.store_factory()
    transport = InProcessTransport() if has_remote_steps(saga) else None
    inbox = InMemoryStore()
    participants: list[Participant] = []
    clock = FakeClock(start=time.time())
    try:
        if transport is not None:
            given = (
                list(opts.participants(transport, inbox)) if opts.participants else []
            )
            covered = {p.queue for p in given}
            participants = given + _stubs(saga, transport, inbox, covered)
            for part in participants:
                _instrument_participant(part, run, saga_id)
                if part._transport is None or part._store is None:
                    part.attach(transport, inbox)  # defined at import time
                await part.start()
        async with asyncio.timeout(opts.run_timeout):
            # its own task: the process numbers it sets stay in it
            await asyncio.create_task(
                _drive(
                    checked,
                    run,
                    saga_id,
                    store=store,
                    transport=transport,
                    clock=clock,
                    opts=opts,
                )
            )
    except TimeoutError:
        run.error = f"no terminal status within {opts.run_timeout:g}s"
    finally:
        for part in participants:
            await part.stop()
        if transport is not None:
            await transport.close()
    try:
        run.final = await store.get(saga_id)
        left = await store.list_locks(saga_id=saga_id)
        run.locks_left = [h.key for h in left.holders] + [w.key for w in left.waiters]
        run.history = await store.history(saga_id)
        run.family = await family_of(store, saga_id)
    except SagaNotFound:
        run.final = None
    await store.close()
    return run


async def _drive(
    saga: Saga[Any],
    run: RunRecord,
    saga_id: str,
    *,
    store: SagaStore,
    transport: Transport | None,
    clock: FakeClock,
    opts: RunOptions,
) -> None:
    async with _process(
        saga, run, store=store, transport=transport, clock=clock, opts=opts
    ) as orch:
        work = asyncio.create_task(orch.run(saga, opts.context(), saga_id=saga_id))
        await _until(run.generation, work)
    if not run.crashed:
        return
    try:
        run.committed_at_crash = (await store.get(saga_id)).state
    except SagaNotFound:
        return  # it died before the saga existed: nothing to recover
    family = await family_of(store, saga_id)
    run.committed_family = {path: record.state for path, (record, _) in family.items()}
    run.generation = _Generation(2)
    async with _process(
        saga, run, store=store, transport=transport, clock=clock, opts=opts
    ) as orch:
        await orch.recover()
        await orch.wait(saga_id)
