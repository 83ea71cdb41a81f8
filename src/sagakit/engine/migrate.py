"""The state of an instance moved to a newer version of its saga.

Pure, like ``decide``: ``migrated_state(state, saga, migration)`` maps the
steps of a running instance onto ``saga``'s (renamed by the migration, new
ones pending, dropped ones forgotten) and places it at the first stage that
holds a step it had not finished. A step inserted before that point does not
run on the migrated instance (do that work in the migration's context
function if old instances need it); steps at or after it run as usual.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sagakit.definition.migration import Migration
from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaState, SagaStatus, StepState, StepStatus
from sagakit.errors import StateError

_DONE = (StepStatus.SUCCEEDED,)


def migrated_state(
    state: SagaState, saga: Saga[Any], migration: Migration
) -> SagaState:
    """``state`` (of an older version) as an instance of ``saga``;
    ``StateError`` if it cannot be moved safely."""
    if state.status is not SagaStatus.RUNNING:
        raise StateError(
            f"saga {state.saga_id}: only a running instance can be migrated, "
            f"not a {state.status.value} one"
        )
    renamed: dict[str, StepState] = {}
    for old, step_state in state.steps.items():
        new = migration.step_name(old)
        if not saga.has_step(new):
            if step_state.status is StepStatus.RUNNING:
                raise StateError(
                    f"saga {state.saga_id}: step {old!r} is in flight and "
                    f"v{saga.version} has no step {new!r} to take it over"
                )
            continue
        in_flight = step_state.status is StepStatus.RUNNING
        if new != old and in_flight and saga.step(new).is_remote:
            raise StateError(
                f"saga {state.saga_id}: remote step {old!r} is waiting for "
                "its reply and cannot be renamed"
            )
        renamed[new] = step_state
    steps = {s.name: renamed.get(s.name) or StepState() for s in saga}
    stage = _resume_stage(saga, renamed)
    if stage < len(saga.stages):
        group = [steps[s.name].status for s in saga.stages[stage]]
        if StepStatus.RUNNING in group and StepStatus.PENDING in group:
            raise StateError(
                f"saga {state.saga_id}: stage {stage} of v{saga.version} mixes "
                "a step in flight with one that never started"
            )
    completed = tuple(
        migration.step_name(n)
        for n in state.completed
        if saga.has_step(migration.step_name(n))
    )
    # a paused instance's held steps run in flight: their new names exist
    held = tuple(migration.step_name(n) for n in state.held)
    due = {migration.step_name(n): at for n, at in state.held_due.items()}
    return replace(
        state,
        steps=steps,
        stage=stage,
        completed=completed,
        held=held,
        held_due=due,
    )


def _resume_stage(saga: Saga[Any], known: dict[str, StepState]) -> int:
    """The first stage holding an unfinished step the instance knew; else
    the stage after the last one it finished."""
    last_done = -1
    for index, group in enumerate(saga.stages):
        for s in group:
            found = known.get(s.name)
            if found is None:
                continue
            if found.status not in _DONE:
                return index
            last_done = index
    return last_done + 1
