"""Sub-sagas in the engine: rolling a succeeded saga back for its parent,
and watching children again after a restart.

A sub-saga step (``Step.is_sub_saga``) is carried out by the runtime: its
``RunStep`` creates the child instance (or finds it) and reports the child's
end as the step's outcome; its ``Compensate`` asks the child to roll back
(:class:`~sagakit.engine.events.RollbackRequested`) and reports once it has.
To the engine it is a local step, with one difference: when the worker that
watched a child stopped, the child itself runs on, so on recovery its step
is not counted as interrupted, even if the parent is rolling back
meanwhile: it is watched again (``RunStep`` issued again), and its outcome
still comes.
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Decision, RunStep
from sagakit.engine.events import RollbackRequested
from sagakit.engine.rollback import past_pivot, settle_failure
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus, StepStatus
from sagakit.errors import StateError

ROLLED_BACK = "RolledBack"
"""The error type of a saga rolled back by its parent."""


def rollback_requested(
    saga: Saga[Any], state: SagaState, event: RollbackRequested
) -> Decision:
    """Compensate every completed step of a succeeded saga (that has not
    passed its pivot); ``StateError`` otherwise."""
    if state.status is not SagaStatus.SUCCEEDED:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value}: only a succeeded "
            "saga can be rolled back"
        )
    if past_pivot(saga, state):
        raise StateError(
            f"saga {state.saga_id} is past its pivot {saga.pivot!r}: it cannot "
            "be rolled back"
        )
    state = state.but(
        status=SagaStatus.COMPENSATING,
        error=ErrorInfo(ROLLED_BACK, event.reason),
        compensations=None,
    )
    return settle_failure(saga, state, event.at)


def children_in_flight(saga: Saga[Any], state: SagaState) -> tuple[RunStep, ...]:
    """Watch again the children of sub-saga steps still running."""
    return tuple(
        RunStep(name, max(1, state.step(name).attempts))
        for name in saga.graph.order
        if saga.step(name).is_sub_saga and state.step(name).status is StepStatus.RUNNING
    )
