"""A participant's inbox entries, committed together when several are ready.

A participant records each command it handled, with its reply, before it
sends the reply (:meth:`~sagakit.participant.service.Participant.handle`).
With many commands in hand at once (a consumer's prefetch), those that reach
that point in the same turn of the event loop share one transaction: the
first opens a group and yields once, the others join it, and the first
commits them all (``record_inbox_many``,
:class:`~sagakit.ports.store.InboxBatches`) and tells each whether its entry
was new. On a store that commits on the event loop's thread (SQLite), the
group stays open while the loop's turns bring more entries (a few turns
at most, as group commit does: :mod:`sagakit.runtime.group`). Every
reply still waits for its own entry's commit. A command handled alone, or
a store without ``record_inbox_many``, commits on its own, as before.
"""

from __future__ import annotations

import asyncio

from sagakit.ports.store import Inbox, InboxBatches
from sagakit.runtime.group import (
    GATHER_TURNS,
    MAX_BATCH,
    wait_while_growing,
    writes_block,
)

__all__ = ["InboxGroup"]

_Entry = tuple[str, bytes | None, "asyncio.Future[bool]"]


class InboxGroup:
    """The inbox entries of one consumer (``service``), grouped per commit."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.groups = 0  # commits of more than one entry (tests, benchmarks)
        self._open: list[_Entry] | None = None
        self._store: tuple[Inbox, InboxBatches | None] | None = None

    def _batches(self, store: Inbox) -> InboxBatches | None:
        """``store`` if it records many at once, else None (looked at once
        per store)."""
        if self._store is None or self._store[0] is not store:
            many = store if isinstance(store, InboxBatches) else None
            self._store = (store, many)
        return self._store[1]

    async def record(
        self, store: Inbox, message_id: str, reply: bytes | None, *, alone: bool
    ) -> bool:
        """Record the entry (committed when this returns); whether it was
        new. ``alone``: no other command is in hand, commit it at once."""
        many = None if alone else self._batches(store)
        if many is None:
            return await store.record_inbox(self.consumer, message_id, reply)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._open is not None:  # a group is open: its first commits it
            self._open.append((message_id, reply, future))
            return await future
        group = self._open = [(message_id, reply, future)]
        return await self._commit(store, many, group)

    async def _commit(
        self, store: Inbox, many: InboxBatches, group: list[_Entry]
    ) -> bool:
        """Let the others of this turn join ``group`` (whose first entry is
        the caller's), then commit it; each joined entry's future gets its
        result, or the error."""
        try:
            blocking = writes_block(store)
            try:
                if blocking:
                    await wait_while_growing(group, GATHER_TURNS, MAX_BATCH)
                else:
                    await asyncio.sleep(0)
            finally:
                self._open = None
            entries = [(message_id, reply) for message_id, reply, _ in group]
            if len(entries) > 1:
                news = await many.record_inbox_many(self.consumer, entries)
                self.groups += 1
            else:
                news = [await store.record_inbox(self.consumer, *entries[0])]
        except BaseException as exc:
            for _, _, future in group[1:]:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()  # not acknowledged: delivered again
                else:
                    future.set_exception(exc)  # retried by their callers
            raise
        for (_, _, future), new in zip(group[1:], news[1:], strict=True):
            if not future.done():
                future.set_result(new)
        return news[0]
