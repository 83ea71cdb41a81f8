"""Recovery batch by batch: every unfinished instance an orchestrator can
take, in claim order (oldest first), ``batch`` at a time.

Each batch is one claim that starts after the last instance of the batch
before it (keyset pagination), so a pass reads each unfinished instance once
however many there are, and instances another live worker holds are skipped,
not read again by every batch. ``Orchestrator.recover()`` runs a whole pass;
``sagakit recover`` lets each batch end before it claims the next.

:class:`Takeover` is what an orchestrator's pass claims: the instances of
its registered sagas whose owner is gone (no owner, an expired lease, or a
dead process on this host, looked for at most every ``OWNER_CHECK``
seconds), after reporting those stranded on a missing definition; each one
claimed is adopted and driven there. It reads the orchestrator's public
attributes at each batch, and lives here, apart from the orchestrator's
own module, with the rest of a recovery pass.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sagakit.errors import SagaError
from sagakit.ports.store import SagaRecord
from sagakit.runtime import adoption
from sagakit.runtime.migrate import report_stranded
from sagakit.runtime.owners import gone, started_here

if TYPE_CHECKING:  # the orchestrator makes its takeover
    from sagakit.runtime.orchestrator import Orchestrator

RECOVERY_BATCH = 500
"""Instances claimed at a time by a recovery, unless it is given another."""

OWNER_CHECK = 1.0
"""Seconds between two looks at whether the owners of leased sagas died."""


@dataclass(frozen=True, slots=True)
class RecoveryProgress:
    """Where a recovery stands after a batch."""

    batches: int
    """Batches claimed so far."""
    claimed: int
    """Instances taken so far (each leased to the orchestrator)."""
    resumed: int
    """Of them, those driven now (not one another worker took over
    meanwhile, nor one whose definition is not registered)."""
    exhausted: bool
    """A claim came back short: nothing was left to take (instances that
    live workers hold, or that wait for a definition, are not taken)."""


Claim = Callable[[str | None, int], Awaitable[tuple[Sequence[SagaRecord], list[str]]]]
"""``(after, size) -> (claimed, resumed ids)``: claim and resume one batch
of at most ``size`` instances after the instance ``after`` (None: from the
oldest)."""


class Recovery:
    """One pass over the unfinished instances (``Orchestrator.recovery()``).

    :meth:`next_batch` claims and resumes the next batch; the pass is
    :attr:`done` once a claim comes back short (:attr:`exhausted`), once
    ``limit`` instances were claimed (None: no limit), or after :meth:`stop`.
    """

    def __init__(self, claim: Claim, *, limit: int | None, batch: int) -> None:
        if batch < 1:
            raise SagaError(f"a recovery batch must be at least 1, got {batch}")
        if limit is not None and limit < 0:
            raise SagaError(f"a recovery limit must be >= 0, got {limit}")
        self._claim = claim
        self.limit = limit
        self.batch = batch
        self._after: str | None = None
        self._batches = self._claimed = self._resumed = 0
        self._exhausted = False
        self._stopped = False

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    @property
    def done(self) -> bool:
        """No batch is left to claim in this pass."""
        return (
            self._exhausted
            or self._stopped
            or (self.limit is not None and self._claimed >= self.limit)
        )

    @property
    def progress(self) -> RecoveryProgress:
        return RecoveryProgress(
            self._batches, self._claimed, self._resumed, self._exhausted
        )

    def stop(self) -> None:
        """Claim nothing more in this pass (the orchestrator is stopping)."""
        self._stopped = True

    async def next_batch(self) -> list[str]:
        """Claim and resume the next batch; the ids resumed (none once
        :attr:`done`)."""
        if self.done:
            return []
        size = self.batch
        if self.limit is not None:
            size = min(size, self.limit - self._claimed)
        claimed, resumed = await self._claim(self._after, size)
        self._batches += 1
        self._claimed += len(claimed)
        self._resumed += len(resumed)
        if claimed:
            self._after = claimed[-1].saga_id
        if len(claimed) < size:
            self._exhausted = True
        return resumed


class Takeover:
    """The recovery passes of one orchestrator: what each batch claims."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self._orch = orchestrator
        self._owners_checked = -OWNER_CHECK
        self._gone: list[str] = []  # what the last look found

    def recovery(self, *, limit: int | None, batch: int) -> Recovery:
        """A pass (see ``Orchestrator.recovery``)."""
        orch = self._orch
        dead: list[str] | None = None

        async def claim(
            after: str | None, size: int
        ) -> tuple[list[SagaRecord], list[str]]:
            nonlocal dead
            if orch.driver.draining:
                recovery.stop()
                return [], []
            if dead is None:  # the owners gone when the pass started
                dead = await self._gone_owners(orch.registry.names())
            return await self._claim_batch(after, size, dead)

        recovery = Recovery(claim, limit=limit, batch=batch)
        return recovery

    async def _claim_batch(
        self, after: str | None, size: int, dead: list[str]
    ) -> tuple[list[SagaRecord], list[str]]:
        """Report the stranded instances of a batch, claim one and drive
        what it took: the records claimed, and the ids now driven here."""
        orch = self._orch
        await report_stranded(orch.driver, orch.registry, size, dead)
        claimed = await orch.store.claim(
            orch.worker_id,
            orch.registry.keys(),
            lease=orch.lease,
            limit=size,
            gone=dead,
            after=after,
        )
        how = "claimed" if not orch.embedded else "resumed"
        adopted = []
        for record in claimed:
            if record.saga_id in orch.driver.active:
                continue  # cannot happen while our lease holds; be safe
            if await adoption.adopt(orch.driver, record, how):
                adopted.append(record.saga_id)
        return claimed, adopted

    async def _gone_owners(self, names: list[str]) -> list[str]:
        """Owners of ``names``' sagas known to be gone (see the
        orchestrator); looked for on the first call, then at most every
        ``OWNER_CHECK`` seconds (it reads every unfinished saga's owner). In
        between, what the last look found: a dead process stays dead, and a
        worker with room for a few sagas at a time takes the rest of a dead
        owner's in its next passes, not once their leases run out."""
        orch = self._orch
        now = time.monotonic()
        if now < self._owners_checked + OWNER_CHECK:
            return self._gone
        self._owners_checked = now
        dead = gone(
            await orch.store.lease_holders(names),
            me=orch.worker_id,
            mine=started_here,
            take_local=orch.embedded,
        )
        for owner in dead:  # what its relay held will not be published by it
            await orch.store.release_outbox(owner)
        await orch.intake.forward_replies(dead)  # nor its replies taken there
        self._gone = dead
        return dead


__all__ = [
    "OWNER_CHECK",
    "RECOVERY_BATCH",
    "Recovery",
    "RecoveryProgress",
    "Takeover",
]
