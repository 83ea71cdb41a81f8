"""The operator actions on one compensation, and forks (see
:mod:`sagakit.engine.repair` and :mod:`sagakit.runtime.fork`), as
:mod:`sagakit.admin` exports them: ``retry_compensation``,
``mark_compensated``, ``skip_compensation``, ``fork``.

Like the other actions they commit and hand the saga over: a worker, or
``sagakit recover MODULE``, runs what they start (a fork is a new instance
nobody owns yet). Each needs who asks and why; a request that does not fit
raises :class:`~sagakit.errors.StateError` and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sagakit.admin.actions import Action, action_client, request, said
from sagakit.admin.reading import find
from sagakit.ports.store import SagaRecord, SagaStore

if TYPE_CHECKING:
    from sagakit.definition.saga import Saga
    from sagakit.ports.clock import Clock
    from sagakit.runtime.fork import Forked

logger = logging.getLogger("sagakit.admin")

__all__ = [
    "CompensationAction",
    "fork",
    "mark_compensated",
    "retry_compensation",
    "skip_compensation",
]


class CompensationAction(Action):
    """An operator action on the compensation of one step of one saga."""

    async def __call__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]],
        saga_id: str,
        step: str,
        *,
        by: str,
        reason: str,
        clock: Clock | None = None,
    ) -> SagaRecord:
        return await request(
            store,
            sagas,
            saga_id,
            self.action,
            by=by,
            reason=reason,
            clock=clock,
            step=step,
        )


retry_compensation = CompensationAction(
    "retry_compensation",
    """Run the compensation of ``step``, which failed for good, again (a
    fresh budget), then go on rolling back; a worker or ``recover`` runs it.
    Refused past the pivot, for a step whose compensation has not failed,
    and while a live worker drives the saga (pause it first).""",
)
mark_compensated = CompensationAction(
    "mark_compensated",
    """Record that ``step`` was undone by hand, outside the saga: its
    compensation counts as succeeded without running, and the rollback
    goes on. Refused past the pivot, for a step that has no compensation
    or whose compensation ended or runs now.""",
)
skip_compensation = CompensationAction(
    "skip_compensation",
    """Leave ``step`` done: its compensation never runs (the step is
    ``compensation_skipped``) and the rollback goes on without it. Refused
    as :func:`mark_compensated` is.""",
)


async def fork(
    store: SagaStore,
    sagas: Iterable[Saga[Any]],
    saga_id: str,
    step: str,
    *,
    by: str,
    reason: str,
    context: Mapping[str, Any] | None = None,
    new_id: str | None = None,
    clock: Clock | None = None,
) -> Forked:
    """Fork a saga that ended into a new instance that re-runs it from
    ``step`` with the results recorded before it, on its context or
    ``context`` (validated by the saga's model); a worker or ``recover``
    runs it. See :mod:`sagakit.runtime.fork` for what is refused."""
    from sagakit.runtime.fork import ForkOrder  # noqa: PLC0415 - see sagakit.admin
    from sagakit.runtime.fork import fork as fork_saga  # noqa: PLC0415

    by, reason = said(by, reason)
    record = await find(store, saga_id)
    order = ForkOrder(step, by, reason, context, new_id)
    forked = await fork_saga(action_client(store, sagas, clock), record.saga_id, order)
    logger.info(
        "admin action committed",
        extra={"action": "admin_fork", "saga_id": record.saga_id, "by": by},
    )
    return forked
