"""Admin operations: the API behind ``sagakit list|show|retry|resume|cancel|dlq``
and the dashboard's actions (the actions on one compensation and forks are
in :mod:`sagakit.admin.repair`, exported here; ``locks`` and
``release_lock`` read and release semantic locks). Nothing here prints;
callers render the results. Each name loads its module on first use
(:mod:`sagakit._lazy`): ``sagakit list`` reads through
:mod:`sagakit.admin.reading` and loads none of the actions.

**Every action names who asks and why** (``by=``, ``reason=``; blank is a
:class:`~sagakit.errors.SagaError`). Both go into the saga's history with
the action, and what it changed (the audit trail ``sagakit show`` lists).

**Operator actions hand the work over.** ``retry``, ``resume`` and ``cancel``
commit one transition (a ``*_requested`` history line, the new state) through a
short-lived :class:`~sagakit.runtime.client.SagaClient` and then release the
instance's lease instead of driving it: the process that asked (a CLI call, a
web request) returns at once, and the steps or compensations run wherever
sagas run.

- With workers (``sagakit worker``), one of them claims the instance at its
  next poll and runs the retried steps, or the compensations.
- Without workers, ``sagakit recover MODULE`` (or ``Orchestrator.recover()``)
  finishes it.

**A saga a live worker drives stays with it.** A ``pause``, ``unpause`` or
``cancel`` of a saga whose lease a live process holds is committed without
taking that lease: the worker's next commit of the saga is refused (the
version moved on), so it reloads the saga, records the outcome of its step
in flight and goes on as the request says (compensating, or holding the
next step). No step runs twice because of a request. A paused saga the
worker parks goes on within a second of an ``unpause``. Only a saga nobody
drives (no lease, an expired one, a dead process's) is handed over as above.

A request that does not fit the saga's state (retrying a saga that
succeeded, cancelling one past its pivot) raises
:class:`~sagakit.errors.StateError` and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.admin.actions import (
        BulkAction,
        BulkRetry,
        BulkSagaAction,
        DeadLetterInfo,
        SagaAction,
        cancel,
        dead_letters,
        describe,
        has_queue,
        pause,
        pause_all,
        replay_dead_letters,
        resume,
        retry,
        retry_failed,
        said,
        unpause,
        unpause_all,
    )
    from sagakit.admin.driving import (
        Driver,
        driver_of,
        drivers,
    )
    from sagakit.admin.lock_actions import (
        held_up,
        locks,
        release_lock,
    )
    from sagakit.admin.reading import (
        SagaDetail,
        children_of,
        find,
        list_sagas,
        show,
    )
    from sagakit.admin.repair import (
        fork,
        mark_compensated,
        retry_compensation,
        skip_compensation,
    )

__all__ = [
    "BulkAction",
    "BulkRetry",
    "BulkSagaAction",
    "DeadLetterInfo",
    "Driver",
    "SagaAction",
    "SagaDetail",
    "cancel",
    "children_of",
    "dead_letters",
    "describe",
    "driver_of",
    "drivers",
    "find",
    "fork",
    "has_queue",
    "held_up",
    "list_sagas",
    "locks",
    "mark_compensated",
    "pause",
    "pause_all",
    "release_lock",
    "replay_dead_letters",
    "resume",
    "retry",
    "retry_compensation",
    "retry_failed",
    "said",
    "show",
    "skip_compensation",
    "unpause",
    "unpause_all",
]

lazy_exports(
    __name__,
    {
        "sagakit.admin.actions": (
            "BulkAction",
            "BulkRetry",
            "BulkSagaAction",
            "DeadLetterInfo",
            "SagaAction",
            "cancel",
            "dead_letters",
            "describe",
            "has_queue",
            "pause",
            "pause_all",
            "replay_dead_letters",
            "resume",
            "retry",
            "retry_failed",
            "said",
            "unpause",
            "unpause_all",
        ),
        "sagakit.admin.driving": (
            "Driver",
            "driver_of",
            "drivers",
        ),
        "sagakit.admin.lock_actions": (
            "held_up",
            "locks",
            "release_lock",
        ),
        "sagakit.admin.reading": (
            "SagaDetail",
            "children_of",
            "find",
            "list_sagas",
            "show",
        ),
        "sagakit.admin.repair": (
            "fork",
            "mark_compensated",
            "retry_compensation",
            "skip_compensation",
        ),
    },
)
