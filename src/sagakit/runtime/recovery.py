"""Recovery batch by batch: every unfinished instance an orchestrator can
take, in claim order (oldest first), ``batch`` at a time.

Each batch is one claim that starts after the last instance of the batch
before it (keyset pagination), so a pass reads each unfinished instance once
however many there are, and instances another live worker holds are skipped,
not read again by every batch. ``Orchestrator.recover()`` runs a whole pass;
``sagakit recover`` lets each batch end before it claims the next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sagakit.errors import SagaError
from sagakit.ports.store import SagaRecord

RECOVERY_BATCH = 500
"""Instances claimed at a time by a recovery, unless it is given another."""


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


__all__ = ["RECOVERY_BATCH", "Recovery", "RecoveryProgress"]
