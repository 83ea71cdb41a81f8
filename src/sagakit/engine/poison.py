"""Poison sagas: a local step that kills its process every time is parked.

A takeover from an owner that stopped (``SagaResumed`` with ``crashed``:
the lease ran out or the owner is known gone) runs again the local steps
and compensations that were in flight when their process stopped: each such
re-run counts one crash on the step (``StepState.crashes``, committed with
the takeover, before the step runs again). When a step reaches
``SagaResumed.max_crashes``, the saga pauses itself instead
(``SagaState.parked`` says why): nothing runs, a plain restart leaves it
paused, and an operator's unpause runs the held steps again with their crash
counts reset. A saga handed over before its step ran (submitted for
workers, drained, unpaused from the CLI: nobody held its lease) counts
nothing, so its step runs ``max_crashes`` times before it is parked.
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Compensate, RunStep
from sagakit.engine.pause import hold
from sagakit.engine.state import SagaState, StepStatus


def count_crashes(
    saga: Saga[Any],
    before: SagaState,
    after: SagaState,
    commands: tuple[Command, ...],
    *,
    at: float,
    max_crashes: int,
) -> tuple[SagaState, tuple[Command, ...]]:
    """``after`` (the takeover's decision on ``before``) with a crash
    counted on each local run it re-issues, parked if one reached
    ``max_crashes``."""
    poisoned: list[str] = []
    for command in commands:
        if not isinstance(command, (RunStep, Compensate)):
            continue
        if not _reruns(saga, before, command):
            continue
        crashes = after.step(command.step).crashes + 1
        after = after.with_step(command.step, crashes=crashes)
        if crashes >= max_crashes:
            poisoned.append(command.step)
    if not poisoned:
        return after, commands
    what = ", ".join(repr(s) for s in poisoned)
    reason = (
        f"poison: step {what} was in flight in {max_crashes} processes that "
        "stopped (crashed) while running it; parked for an operator "
        "(unpause runs it again)"
    )
    return hold(after.but(paused=True, parked=reason), commands, at)


def _reruns(saga: Saga[Any], before: SagaState, command: RunStep | Compensate) -> bool:
    """Whether ``command`` runs here again a local step that was in flight."""
    if isinstance(command, RunStep):
        spec = saga.step(command.step)
        local = not (spec.is_remote or spec.is_sub_saga)
        return local and before.step(command.step).status is StepStatus.RUNNING
    spec = saga.step(command.step)
    in_flight = before.step(command.step).status is StepStatus.COMPENSATING
    return in_flight and not spec.compensation_is_remote
