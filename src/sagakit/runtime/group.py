"""Group commit: the saves of different sagas that are ready at the same
moment reach the store together, in one transaction and one round trip.

A save returns only once the batch it is in has committed, so each saga's
transition is still durable before its effects run and before its caller is
told; only the commit is shared. There is no timer: the first save after a
quiet moment is flushed on the next turn of the event loop, together with
every save that became ready in the same turn (fifty sagas resumed by one
reply batch, say); saves that come while a batch commits wait for the next,
which takes whatever is queued when the previous commit returns.

A store whose commits run on the event loop's thread (SQLite) cannot take
saves while it commits: nothing else runs meanwhile. There, a batch waits
a few more turns of the loop while they bring more saves (replies read
from a broker one delivery at a time, say), and goes once two turns in a
row brought none: at most :data:`GATHER_TURNS` turns, no timer.

A save that fails alone (a stale version, a duplicate inbox entry, a saga
deleted since) fails only its own caller. A batch whose transaction fails
(a lost connection, a lock wait that ended in a deadlock) is tried again one
save at a time, so one bad save cannot fail the others; each caller gets
what its own save did.

:class:`Batcher` is that design for any kind of write; :class:`GroupCommit`
uses it for the saga store's creates and saves, and the workflow apps for
their step results (:mod:`sagakit.workflow.commit`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence, Sized
from typing import Any, Generic, Protocol, TypeVar

from sagakit.errors import StoreError
from sagakit.ports.locks import LockChange
from sagakit.ports.store import (
    Create,
    Created,
    GroupSaves,
    SagaRepository,
    Save,
)
from sagakit.ports.writes import RecordWrites


class BatchingStore(SagaRepository, GroupSaves, Protocol):
    """A store that writes alone and in batches."""


MAX_BATCH = 256
"""Writes per transaction at most (more wait for the next one)."""
GATHER_TURNS = 8
"""Turns of the event loop a batch of a blocking store waits at most while
they bring more writes (see the module)."""


def writes_block(store: object) -> bool:
    """Whether ``store``'s writes run on the event loop's thread and never
    yield to it (its ``blocking_writes``: every SQLite store), so a batch
    waits a few turns of the loop for more rather than going at once."""
    return bool(getattr(store, "blocking_writes", False))


W = TypeVar("W")
W_contra = TypeVar("W_contra", contravariant=True)


class Kind(Protocol[W_contra]):
    """One kind of write: how it commits alone, how many commit in one
    transaction (what each did: its result, or the refusal it failed with
    alone) and the order a batch takes (one lock order for every batch: two
    processes whose batches touch the same rows queue instead of
    deadlocking)."""

    def order(self, write: W_contra) -> Any: ...

    async def one(self, write: W_contra) -> Any: ...

    async def many(self, writes: Sequence[W_contra]) -> Sequence[Any]: ...


_Waiting = tuple[Any, "asyncio.Future[Any]"]  # a write, its caller's future


class Batcher(Generic[W]):
    """Writes queued for the next batch: a task commits what is queued, one
    transaction per kind (the kinds side by side, in the order given), then
    what came meanwhile. ``batches`` counts the transactions it ran and
    ``writes`` the writes they held. ``gather_turns`` (0: none) is how many
    turns of the loop a batch waits at most while they bring more writes
    (:func:`wait_while_growing`)."""

    def __init__(
        self,
        kinds: Sequence[Kind[W]],
        *,
        max_batch: int = MAX_BATCH,
        gather_turns: int = 0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if gather_turns < 0:
            raise ValueError(f"gather_turns must be >= 0, got {gather_turns}")
        self.kinds = tuple(kinds)
        self.max_batch = max_batch
        self.gather_turns = gather_turns
        self.batches = 0
        self.writes = 0
        self._queue: list[tuple[Kind[W], W, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def flushing(self) -> bool:
        """A batch is queued or being committed."""
        return self._flusher is not None

    def queued(self, kind: Kind[W], write: W) -> asyncio.Future[Any]:
        """``write`` in the next batch: the future of what it did (cancelled
        before its batch is sent, it writes nothing)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((kind, write, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return done

    async def one(self, kind: Kind[W], write: W) -> Any:
        """``write`` alone, now, counted as a batch of one."""
        result = await kind.one(write)
        self.batches += 1
        self.writes += 1
        return result

    async def _flush(self) -> None:
        try:
            await wait_while_growing(self._queue, self.gather_turns, self.max_batch)
            while self._queue:
                taken = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                commits = []
                for kind in self.kinds:
                    batch = [(w, f) for k, w, f in taken if k is kind and not f.done()]
                    if batch:
                        commits.append(self._commit(kind, batch))
                if len(commits) == 1:
                    await commits[0]
                elif commits:
                    await asyncio.gather(*commits)
        finally:
            self._flusher = None
            for _, _, done in self._queue:  # only when this task was cancelled
                done.cancel()
            self._queue.clear()

    async def _commit(self, kind: Kind[W], batch: list[_Waiting]) -> None:
        """One kind of write, as one transaction."""
        try:
            if len(batch) == 1:
                await self._alone(kind, batch[0])
                return
            batch.sort(key=lambda w: kind.order(w[0]))
            try:
                done = await kind.many([w for w, _ in batch])
            except StoreError:
                for waiting in batch:  # find which failed; the others commit
                    await self._alone(kind, waiting)
                return
            self.batches += 1
            self.writes += len(batch)
            for (_, future), result in zip(batch, done, strict=True):
                _settle(future, result)
        except Exception as exc:  # not a store error: each caller sees it
            for _, future in batch:
                _settle(future, exc)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise

    async def _alone(self, kind: Kind[W], waiting: _Waiting) -> None:
        write, done = waiting
        try:
            result = await self.one(kind, write)
        except Exception as exc:
            _settle(done, exc)
        else:
            _settle(done, result)


class _Creates:
    def __init__(self, store: BatchingStore) -> None:
        self.store = store

    def order(self, write: Create) -> str:
        return write.record.saga_id

    async def one(self, write: Create) -> Created:
        return await self.store.create(
            write.record,
            write.history,
            owner=write.owner,
            lease=write.lease,
            outbox=write.outbox,
        )

    async def many(self, writes: Sequence[Create]) -> Sequence[Any]:
        return await self.store.create_many(writes)


class _Saves:
    def __init__(self, store: BatchingStore) -> None:
        self.store = store

    def order(self, write: Save) -> str:
        return write.record.saga_id

    async def one(self, write: Save) -> None:
        await self.store.save(
            write.record,
            write.expected_version,
            write.history,
            owner=write.owner,
            lease=write.lease,
            outbox=write.outbox,
            inbox=write.inbox,
        )

    async def many(self, writes: Sequence[Save]) -> Sequence[Any]:
        return await self.store.save_many(writes)


class GroupCommit(RecordWrites):
    """The ``create`` and ``save`` of ``store``, committing concurrent ones
    together (creates in one transaction, saves in another, side by side).

    On a store whose calls wait for the database (PostgreSQL, MySQL), a
    write that finds nothing in flight and no other task ready to run goes
    straight to it, and the writes that come while it is in flight queue
    for the next batch: a saga run alone pays nothing for group commit.
    With other tasks ready (sagas resumed by the same commit, about to
    write too) it waits for the next turn of the loop and shares their
    batch, rather than committing alone beside it. A store whose writes
    run on the event loop's thread without yielding (``blocking_writes``:
    SQLite) batches a write on the next turn of the loop while other
    instances are driven (``driven`` counts them) or other tasks wait to
    run (sagas started together whose steps never yield): they may add
    theirs meanwhile, and the batch waits while the loop's turns bring more
    (see the module). A write of the only saga around goes at once.

    ``batches`` counts the transactions it ran and ``writes`` the creates
    and saves they held, so ``writes / batches`` is transitions per commit.
    """

    def __init__(
        self,
        store: BatchingStore,
        *,
        max_batch: int = MAX_BATCH,
        driven: Callable[[], int] = lambda: 2,
    ) -> None:
        self.store = store
        self._creates, self._saves = _Creates(store), _Saves(store)
        self.direct = not writes_block(store)
        self._batcher: Batcher[Any] = Batcher(
            (self._creates, self._saves),
            max_batch=max_batch,
            gather_turns=0 if self.direct else GATHER_TURNS,
        )
        self.max_batch = max_batch
        self.driven = driven
        self._alone_in_flight = 0

    @property
    def gather_turns(self) -> int:
        """Turns of the loop a batch waits at most while they bring more
        (:data:`GATHER_TURNS` on a blocking store, else 0)."""
        return self._batcher.gather_turns

    @property
    def batches(self) -> int:
        return self._batcher.batches

    @property
    def writes(self) -> int:
        return self._batcher.writes

    async def create_one(self, create: Create) -> Created:
        """As :meth:`~sagakit.ports.store.SagaRepository.create`, in the
        next batch."""
        if not self._quiet(alone=0):
            created: Created = await self._batcher.queued(self._creates, create)
            return created
        self._alone_in_flight += 1
        try:
            return await self.store.create(
                create.record,
                create.history,
                owner=create.owner,
                lease=create.lease,
                outbox=create.outbox,
            )
        finally:
            self._alone_in_flight -= 1

    async def save_one(self, save: Save, locks: LockChange | None) -> None:
        """As :meth:`~sagakit.ports.store.SagaRepository.save`, in the next
        batch (a save that changes locks goes alone). Cancelled before its
        batch is sent, it writes nothing."""
        if not locks and not self._quiet(alone=1):
            await self._batcher.queued(self._saves, save)
            return
        self._alone_in_flight += 1
        try:
            await self.store.save(
                save.record,
                save.expected_version,
                save.history,
                owner=save.owner,
                lease=save.lease,
                outbox=save.outbox,
                inbox=save.inbox,
                locks=locks,
            )
        finally:
            self._alone_in_flight -= 1

    def _quiet(self, alone: int) -> bool:
        """:func:`quiet`, with no more than ``alone`` instances driven."""
        driven = self.driven() <= alone
        return quiet(self._batcher, self._alone_in_flight, self.direct, driven)


def quiet(
    batcher: Batcher[Any],
    alone_in_flight: int,
    direct: bool,
    driven: bool,
    ready: int = 1,
) -> bool:
    """Whether a write may skip the batch and go to the store at once:
    nothing in flight, and nothing to wait for: no more than ``ready``
    callbacks ready to run on the loop if the store lets others write
    meanwhile (``direct``), or else also no other instance driven
    (``driven``: the writer's own at most)."""
    if batcher.flushing or alone_in_flight:
        return False
    return (direct or driven) and not _loop_busy(ready)


_QUIET_TURNS = 2


async def wait_while_growing(queue: Sized, turns: int, full: int) -> None:
    """Let the loop turn while ``queue`` grows: at most ``turns`` turns,
    none once it holds ``full``, and done after two turns in a row that
    added nothing. One is not enough: a delivery read from the socket in a
    turn gets a task that runs in the next, after the waiting one has
    looked."""
    idle = 0
    for _ in range(turns):
        before = len(queue)
        if before >= full:
            return
        await asyncio.sleep(0)
        idle = idle + 1 if len(queue) == before else 0
        if idle >= _QUIET_TURNS:
            return


def _loop_busy(ready: int = 1) -> bool:
    """Whether more than ``ready`` callbacks wait to run on the loop
    (asyncio's ready queue; a loop that does not show it counts as idle).
    One is common for a lone saga: its own task's wake-up."""
    waiting = getattr(asyncio.get_running_loop(), "_ready", None)
    return waiting is not None and len(waiting) > ready


def _settle(done: asyncio.Future[Any], result: Any) -> None:
    """A write's outcome to its caller: an exception is raised there."""
    if done.done():  # its caller was cancelled meanwhile
        return
    if isinstance(result, Exception):
        done.set_exception(result)
    else:
        done.set_result(result)


def saves_of(
    store: SagaRepository, group: bool = True, driven: Callable[[], int] = lambda: 2
) -> GroupCommit | SagaRepository:
    """What a driver saves through: a :class:`GroupCommit` on ``store`` if
    ``group`` and the store commits batches, else the store itself."""
    if group and isinstance(store, GroupSaves):
        return GroupCommit(store, driven=driven)
    return store
