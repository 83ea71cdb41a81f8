"""Who drives a saga now, as an operator needs to know it: a live worker,
nobody since its owner stopped renewing its lease or died (orphaned), or
nobody at all (unclaimed: submitted, or handed over by an action, and not
taken yet). ``sagakit retry`` and the dashboard say it after an action; the
dashboard marks the orphaned and unclaimed sagas in its list and pages.

"Running for 1 ms" said nothing about a saga whose worker died an hour ago;
the lease says it: each worker renews the leases of what it drives every
``lease / 3`` seconds, so an expired lease means a dead (or stalled) owner.
An owner on this host whose process is gone counts as gone at once
(:func:`sagakit.runtime.owners.drives`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sagakit.ports.store import Lease, SagaRecord, SagaStore

__all__ = ["Driven", "Driver", "driver_from", "driver_of", "drivers"]


class Driven(StrEnum):
    ENDED = "ended"
    DRIVEN = "driven"
    """A live owner holds its lease."""
    ORPHANED = "orphaned"
    """Its owner's lease expired (or its process on this host died)."""
    UNCLAIMED = "unclaimed"
    """No owner: no worker has taken it (yet)."""


@dataclass(frozen=True, slots=True)
class Driver:
    """Who drives an instance, said for people."""

    state: Driven
    owner: str | None
    text: str

    @property
    def idle(self) -> bool:
        """Unfinished, and no process moves it on."""
        return self.state in (Driven.ORPHANED, Driven.UNCLAIMED)

    @property
    def live_owner(self) -> str | None:
        """The owner that drives it now (None: nobody)."""
        return self.owner if self.state is Driven.DRIVEN else None

    def as_json(self) -> dict[str, str | None]:
        return {"state": self.state.value, "owner": self.owner, "text": self.text}


def _driven(lease: Lease, saga_id: str) -> bool:
    """Whether the owner of ``lease`` (live, not known to be gone) drives it."""
    from sagakit.runtime.owners import drives  # noqa: PLC0415 - see sagakit.admin

    owner = lease.owner
    return owner is not None and lease.live and drives(owner, saga_id, me="")


def driver_from(record: SagaRecord, lease: Lease | None) -> Driver:
    """The driver of ``record``, whose lease is ``lease`` (None: none)."""
    if record.status.terminal:
        return Driver(Driven.ENDED, None, "nobody: the saga has ended")
    if lease is None or lease.owner is None:
        return Driver(Driven.UNCLAIMED, None, "nobody: no process has claimed it")
    owner = lease.owner
    if _driven(lease, record.saga_id):
        return Driver(Driven.DRIVEN, owner, f"{owner} (its lease is live)")
    why = "its process is gone" if lease.live else "its lease expired"
    return Driver(Driven.ORPHANED, owner, f"nobody: {owner} stopped driving it ({why})")


async def drivers(store: SagaStore, records: Sequence[SagaRecord]) -> dict[str, Driver]:
    """The driver of each record, the leases of the unfinished ones read in
    one query."""
    open_ids = [r.saga_id for r in records if not r.status.terminal]
    leases = await store.leases(open_ids) if open_ids else {}
    return {r.saga_id: driver_from(r, leases.get(r.saga_id)) for r in records}


async def driver_of(store: SagaStore, saga_id: str) -> str | None:
    """The live worker that drives ``saga_id`` now, if any (None: nobody
    does, and a worker or ``recover`` takes it when one runs)."""
    lease = (await store.leases([saga_id])).get(saga_id)
    return lease.owner if lease is not None and _driven(lease, saga_id) else None
