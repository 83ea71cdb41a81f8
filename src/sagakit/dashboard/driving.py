"""Who drives a saga now, as an operator needs to know it: a live worker,
nobody since its owner stopped renewing its lease (orphaned), or nobody at
all (unclaimed: submitted, or handed over by an action, and not taken yet).

"Running for 1 ms" said nothing about a saga whose worker died an hour ago;
the lease says it: each worker renews the leases of what it drives every
``lease / 3`` seconds, so an expired lease means a dead (or stalled) owner.
An owner on this host whose process is gone counts as gone at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sagakit.ports.store import Lease, SagaRecord
from sagakit.runtime.owners import gone


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

    def as_json(self) -> dict[str, str | None]:
        return {"state": self.state.value, "owner": self.owner, "text": self.text}


def _dead(owner: str) -> bool:
    """Whether ``owner`` is a process of this host that is gone."""
    return bool(gone([owner], me="", mine=lambda _: False, take_local=False))


def driver_of(record: SagaRecord, lease: Lease | None) -> Driver:
    if record.status.terminal:
        return Driver(Driven.ENDED, None, "nobody: the saga has ended")
    if lease is None or lease.owner is None:
        return Driver(Driven.UNCLAIMED, None, "nobody: no process has claimed it")
    owner = lease.owner
    if not lease.live or _dead(owner):
        why = "its process is gone" if lease.live else "its lease expired"
        return Driver(
            Driven.ORPHANED, owner, f"nobody: {owner} stopped driving it ({why})"
        )
    return Driver(Driven.DRIVEN, owner, f"{owner} (its lease is live)")


def drivers(
    records: Sequence[SagaRecord], leases: Mapping[str, Lease]
) -> dict[str, Driver]:
    """The driver of each record (leases as :meth:`SagaLeases.leases` reads
    them for the unfinished ones)."""
    return {r.saga_id: driver_of(r, leases.get(r.saga_id)) for r in records}


__all__ = ["Driven", "Driver", "driver_of", "drivers"]
