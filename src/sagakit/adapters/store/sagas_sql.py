"""What the SQL saga stores (SQLite, PostgreSQL, MySQL) do the same way:
leases, claims, the operators' reads and the outbox, each one named query
of the dialect's ``queries.sql`` with the same arguments.

The stores differ only in how a list travels (``as_array``: a list for
asyncpg, JSON text for SQLite and MySQL), in what "now" is (``now_args``:
nothing on a server, whose clock is "now"; this process's clock for SQLite,
passed after the other arguments) and in how a write runs and is counted
(``write``: the rows of one committed statement or block).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sagakit.adapters.store import rows
from sagakit.adapters.store.rows import Row, unique_ids
from sagakit.ports.store import Lease, SagaRecord

if TYPE_CHECKING:  # a write's entries: a saga store's reads build none
    from sagakit.ports.entry import OutboxMessage, Save


class Fetches(Protocol):
    async def fetch(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """The rows of a named query; driver errors become StoreError."""


D = TypeVar("D", bound=Fetches)


def save_problem(
    save: Save, *, saved: bool, found: bool, duplicate: bool
) -> Exception | None:
    """What a save raises, if anything, after its statement said whether it
    saved, found the saga and found the inbox message consumed before."""
    if saved:
        return None
    saga_id = save.record.saga_id
    if not found:
        return rows.saga_not_found(saga_id)
    if save.inbox is not None and duplicate:
        return rows.consumed_before(saga_id, save.inbox)
    return rows.stale_saga(saga_id, save.expected_version)


class SqlSagas(Generic[D]):
    """Leases, claims, reads and the outbox over ``database``'s named
    queries (see the module)."""

    database: D
    as_array: Any

    async def write(self, about: str, query: str, *args: Any) -> Sequence[Row]:
        """The rows of the named write, committed and counted."""
        raise NotImplementedError

    async def claim_rows(self, about: str, *args: Any) -> Sequence[Row]:
        """The rows of ``claim_sagas`` (the claimed sagas, each with the
        owner it was taken from), committed and counted."""
        return await self.write(about, "claim_sagas", *args)

    def now_args(self) -> tuple[Any, ...]:
        """What a query that reads "now" takes after its other arguments."""
        return ()

    # -- leases ------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        saga_names: Collection[str],
        *,
        lease: float,
        limit: int = 100,
        gone: Collection[str] = (),
        after: str | None = None,
    ) -> list[SagaRecord]:
        names, dead = self.as_array(list(saga_names)), self.as_array(list(gone))
        found = await self.claim_rows(
            f"claim by {owner!r}",
            owner,
            names,
            lease,
            limit,
            dead,
            after,
            *self.now_args(),
        )
        claimed = [rows.saga_record(r) for r in found]
        return sorted(claimed, key=lambda r: (r.created_at, r.saga_id))

    async def stranded(
        self,
        saga_names: Collection[str],
        keys: Collection[str],
        *,
        limit: int = 100,
        gone: Collection[str] = (),
    ) -> list[SagaRecord]:
        listed = self.as_array
        found = await self.database.fetch(
            "listing stranded sagas",
            "stranded_sagas",
            listed(list(saga_names)),
            listed(list(keys)),
            limit,
            listed(list(gone)),
            *self.now_args(),
        )
        return [rows.saga_record(r) for r in found]

    async def mark_waiting(self, saga_id: str, reason: str) -> None:
        await self.write(
            f"saga {saga_id}: mark waiting", "mark_waiting", saga_id, reason
        )

    async def renew(
        self, owner: str, saga_ids: Collection[str], *, lease: float
    ) -> list[str]:
        ids = unique_ids(saga_ids)
        if not ids:
            return []
        found = await self.write(
            f"lease renewal by {owner!r}",
            "renew_leases",
            owner,
            self.as_array(ids),
            lease,
            *self.now_args(),
        )
        renewed = {r[0] for r in found}
        return [saga_id for saga_id in ids if saga_id in renewed]

    async def leases(self, saga_ids: Collection[str]) -> dict[str, Lease]:
        ids = unique_ids(saga_ids)
        if not ids:
            return {}
        found = await self.database.fetch(
            "reading leases", "saga_leases", self.as_array(ids), *self.now_args()
        )
        return {r[0]: Lease(r[1], bool(r[2]), r[3]) for r in found}

    async def lease_holders(self, saga_names: Collection[str]) -> list[str]:
        found = await self.database.fetch(
            "listing lease holders", "lease_holders", self.as_array(list(saga_names))
        )
        return [r[0] for r in found]

    async def release(self, owner: str, saga_ids: Collection[str]) -> None:
        ids = unique_ids(saga_ids)
        if ids:
            about = f"lease release by {owner!r}"
            await self.write(about, "release_leases", owner, self.as_array(ids))

    # -- reads -------------------------------------------------------------

    async def unfinished(
        self,
        saga_names: Collection[str] | None = None,
        limit: int = 1000,
        *,
        after: str | None = None,
    ) -> list[str]:
        names = None if saga_names is None else self.as_array(list(saga_names))
        found = await self.database.fetch(
            "listing unfinished sagas", "unfinished_sagas", names, after, limit
        )
        return [r[0] for r in found]

    async def live_definitions(self) -> dict[tuple[str, int, str | None], int]:
        found = await self.database.fetch(
            "counting live definitions", "live_definitions"
        )
        return {(r[0], r[1], r[2]): int(r[3]) for r in found}

    async def due_deadlines(
        self, saga_names: Collection[str], *, limit: int = 100
    ) -> list[str]:
        names = self.as_array(list(saga_names))
        found = await self.database.fetch(
            "listing due deadlines", "due_deadlines", names, limit, *self.now_args()
        )
        return [r[0] for r in found]

    # -- messaging ---------------------------------------------------------

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        found = await self.write(
            f"outbox claim by {owner!r}",
            "claim_outbox",
            owner,
            lease,
            limit,
            *self.now_args(),
        )
        return [rows.outbox_message(r) for r in found]

    async def mark_sent(self, message_ids: Collection[str]) -> None:
        ids = unique_ids(message_ids)
        if ids:
            about = "marking messages sent"
            await self.write(about, "delete_outbox", self.as_array(ids))

    async def release_outbox(self, owner: str | None = None) -> int:
        found = await self.write("releasing outbox holds", "release_outbox", owner)
        return int(found[0][0])
