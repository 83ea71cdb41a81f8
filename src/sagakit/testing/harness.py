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
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition.saga import Saga
from sagakit.definition.subsaga import has_remote_steps
from sagakit.errors import SagaNotFound
from sagakit.messaging.envelope import Envelope
from sagakit.participant.service import Participant
from sagakit.ports.store import HistoryEntry, OutboxMessage, SagaRecord, SagaStore
from sagakit.ports.transport import DeadLetter, Handler, Subscription, Transport
from sagakit.runtime.orchestrator import Orchestrator
from sagakit.testing.clock import FakeClock
from sagakit.testing.instrument import instrument, instrument_participant, stubs
from sagakit.testing.lineage import family_of, path_of
from sagakit.testing.points import FailurePoint
from sagakit.testing.run_record import (
    GENERATION,
    CrashSimulated,
    Generation,
    RunRecord,
)

REPLY_QUEUE = "sagakit.check.replies"

ParticipantFactory = Callable[[Transport, SagaStore], Iterable[Participant]]
"""Builds the participants of remote steps on the checker's transport and
inbox store."""


async def _forever() -> None:
    await asyncio.Event().wait()


# -- a store and a transport that belong to one process ------------------------


class _ProcessStore:
    """The store as one process sees it: it can crash at a commit, and once
    the process is dead nothing it does reaches the database."""

    def __init__(self, base: SagaStore, run: RunRecord, gen: Generation) -> None:
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

    def __init__(self, base: Transport, gen: Generation, *, duplicate: bool) -> None:
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
    GENERATION.set(gen.number)
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


async def _until(gen: Generation, work: asyncio.Task[Any]) -> None:
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
            participants = given + stubs(saga, transport, inbox, covered)
            for part in participants:
                instrument_participant(part, run, saga_id)
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
    run.generation = Generation(2)
    async with _process(
        saga, run, store=store, transport=transport, clock=clock, opts=opts
    ) as orch:
        await orch.recover()
        await orch.wait(saga_id)
