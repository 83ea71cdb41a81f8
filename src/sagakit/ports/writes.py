"""``create`` and ``save`` as :class:`~sagakit.ports.store.SagaRepository`
spells them, written once: a store (or a wrapper of one) that works on the
:class:`~sagakit.ports.store.Create` and :class:`~sagakit.ports.store.Save`
of a call inherits them and implements ``create_one`` and ``save_one``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

# Create and Save (sagakit.ports.entry) load on the first write, through the
# store port's exports (a read needs neither); an attribute of the module,
# once loaded: cheaper than an import statement in a method run each save
from sagakit.ports import store as store_port

if TYPE_CHECKING:
    from sagakit.ports.entry import (
        Create,
        HistoryEntry,
        InboxEntry,
        OutboxMessage,
        Save,
    )
    from sagakit.ports.locks import LockChange
    from sagakit.ports.store import Created, SagaRecord


class RecordWrites:
    """The keyword API of a repository's writes over ``create_one`` and
    ``save_one`` (see the module)."""

    async def create(
        self,
        record: SagaRecord,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> Created:
        """See :meth:`~sagakit.ports.store.SagaRepository.create`."""
        return await self.create_one(
            store_port.Create(record, history, owner, lease, outbox)
        )

    async def save(
        self,
        record: SagaRecord,
        expected_version: int,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
        inbox: InboxEntry | None = None,
        locks: LockChange | None = None,
    ) -> None:
        """See :meth:`~sagakit.ports.store.SagaRepository.save`."""
        save = store_port.Save(
            record, expected_version, history, owner, lease, outbox, inbox
        )
        await self.save_one(save, locks or None)

    async def create_one(self, create: Create) -> Created:
        """Write ``create`` (as ``create`` says)."""
        raise NotImplementedError

    async def save_one(self, save: Save, locks: LockChange | None) -> None:
        """Write ``save`` with the change ``locks`` (None: none), as ``save``
        says."""
        raise NotImplementedError
