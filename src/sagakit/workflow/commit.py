"""Group commit of step results: the saves of workflow instances whose steps
finish at the same moment go to the store together, in one transaction.

A worker claims a batch of due instances and runs their steps concurrently;
those that finish in the same turn of the event loop (and those that finish
while a batch commits) are saved by one ``save_many``. Each caller waits for
the commit of its own save and gets what its save did (a ``ConcurrencyError``
when its lease was taken over, say), exactly as a save of its own: a step's
result is still durable before its run returns. A batch whose transaction
fails is tried again one save at a time, so one bad save fails only its own
caller. A store without ``save_many`` saves one at a time. The batching is
the saga runtime's (:class:`~sagakit.runtime.group.Batcher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from sagakit.ports.workflow_store import (
    WorkflowHistoryEntry,
    WorkflowRecord,
    WorkflowSave,
    WorkflowSaveMany,
    WorkflowStore,
)
from sagakit.runtime.group import GATHER_TURNS, Batcher, quiet, writes_block


class _Saves:
    """Workflow saves as a kind of write of :class:`Batcher`."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store

    def order(self, save: WorkflowSave) -> tuple[str, str]:
        return save.record.app, save.record.instance_id

    async def one(self, save: WorkflowSave) -> None:
        await self.store.save(*save)

    async def many(self, saves: Sequence[WorkflowSave]) -> Sequence[Exception | None]:
        assert isinstance(self.store, WorkflowSaveMany)  # noqa: S101 - GroupSaves checks
        return await self.store.save_many(saves)


class GroupSaves:
    """``store.save``, committing concurrent saves together. ``batches``
    counts the transactions it ran and ``saves`` the saves they held.

    As the saga runtime's group commit does: on a store whose writes block
    the loop (``blocking_writes``: SQLite) a batch waits while the loop's
    turns bring more saves, and a save goes to the store at once when
    nothing is in flight, nothing else is ready to run and (on such a
    store) no other instance's step is running (``running`` counts them:
    :func:`~sagakit.workflow.runner.run_claimed` does)."""

    def __init__(self, store: WorkflowStore) -> None:
        self.store = store
        self.running = 0
        self._kind = _Saves(store)
        self._alone_in_flight = 0

    @cached_property
    def _direct(self) -> bool:
        """Whether the store takes saves while it commits (not SQLite);
        asked on first use, once the store is open."""
        return not writes_block(self.store)

    @cached_property
    def _batches(self) -> bool:
        """Whether the store saves many in one transaction (asked once: a
        runtime protocol check costs microseconds)."""
        return isinstance(self.store, WorkflowSaveMany)

    @cached_property
    def _batcher(self) -> Batcher[WorkflowSave]:
        turns = 0 if self._direct else GATHER_TURNS
        return Batcher((self._kind,), gather_turns=turns)

    @property
    def batches(self) -> int:
        return self._batcher.batches

    @property
    def saves(self) -> int:
        return self._batcher.writes

    async def save(
        self,
        record: WorkflowRecord,
        expected_version: int,
        history: Sequence[WorkflowHistoryEntry],
    ) -> None:
        """As :meth:`~sagakit.ports.workflow_store.WorkflowStore.save`: in
        the next batch, or at once when there is nothing to share a commit
        with (:meth:`_quiet`)."""
        save = WorkflowSave(record, expected_version, history)
        if self._batches and not self._quiet():
            await self._batcher.queued(self._kind, save)
            return
        self._alone_in_flight += 1
        try:
            await self._batcher.one(self._kind, save)
        finally:
            self._alone_in_flight -= 1

    def _quiet(self) -> bool:
        """Nothing to share a commit with: the saving step runs alone and
        nothing else is ready to run (another claimed instance's step
        about to start, say)."""
        driven = self.running <= 1
        return quiet(
            self._batcher, self._alone_in_flight, self._direct, driven, ready=0
        )
