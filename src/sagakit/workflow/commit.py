"""Group commit of step results: the saves of workflow instances whose steps
finish at the same moment go to the store together, in one transaction.

A worker claims a batch of due instances and runs their steps concurrently;
those that finish in the same turn of the event loop (and those that finish
while a batch commits) are saved by one ``save_many``. Each caller waits for
the commit of its own save and gets what its save did (a ``ConcurrencyError``
when its lease was taken over, say), exactly as a save of its own: a step's
result is still durable before its run returns. A batch whose transaction
fails is tried again one save at a time, so one bad save fails only its own
caller. A store without ``save_many`` saves one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sagakit.errors import StoreError
from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
    WorkflowSaveMany,
    WorkflowStore,
)

MAX_BATCH = 256
"""Saves per transaction at most (more wait for the next one)."""

_Waiting = tuple[WorkflowSave, "asyncio.Future[None]"]


class GroupSaves:
    """``store.save``, committing concurrent saves together. ``batches``
    counts the transactions it ran and ``saves`` the saves they held."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store
        self.batches = 0
        self.saves = 0
        self._queue: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        """As :meth:`~sagakit.ports.workflow_store.WorkflowStore.save`, in the
        next batch."""
        save = WorkflowSave(record, expected_version, history)
        if not isinstance(self.store, WorkflowSaveMany):
            await self._alone(save)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((save, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(self.store))
        await done

    async def _flush(self, store: WorkflowSaveMany) -> None:
        try:
            while self._queue:
                batch = [w for w in self._queue[:MAX_BATCH] if not w[1].done()]
                del self._queue[:MAX_BATCH]
                if batch:
                    await self._commit(store, batch)
        finally:
            self._flusher = None
            for _, done in self._queue:  # only if this task was cancelled
                done.cancel()
            self._queue.clear()

    async def _commit(self, store: WorkflowSaveMany, batch: list[_Waiting]) -> None:
        if len(batch) == 1:
            await self._settle_alone(batch[0])
            return
        # one lock order for every batch: two workers' batches that touch
        # the same rows wait for each other instead of deadlocking
        batch.sort(key=lambda w: (w[0].record.app, w[0].record.instance_id))
        try:
            outcomes = await store.save_many([save for save, _ in batch])
        except StoreError:
            for waiting in batch:  # which one failed? the others commit
                await self._settle_alone(waiting)
            return
        except Exception as exc:  # not the store's own: each caller sees it
            for _, done in batch:
                _settle(done, exc)
            return
        except BaseException:
            for _, done in batch:
                done.cancel()
            raise
        self.batches += 1
        self.saves += len(batch)
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            _settle(done, outcome)

    async def _settle_alone(self, waiting: _Waiting) -> None:
        save, done = waiting
        try:
            await self._alone(save)
        except Exception as exc:
            _settle(done, exc)
        else:
            _settle(done, None)

    async def _alone(self, save: WorkflowSave) -> None:
        await self.store.save(*save)
        self.batches += 1
        self.saves += 1


def _settle(done: asyncio.Future[None], outcome: Exception | None) -> None:
    """A save's outcome to its caller (raised there if an exception)."""
    if done.done():  # its caller was cancelled meanwhile
        return
    if outcome is None:
        done.set_result(None)
    else:
        done.set_exception(outcome)
