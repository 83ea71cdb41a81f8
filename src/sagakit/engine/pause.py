"""Pausing a saga: its outcomes are recorded, but nothing new starts.

While a saga is paused, every ``RunStep`` or ``Compensate`` a decision issues
is held back: the step's state moves as usual (so the saga knows where it
stands) and its name joins ``SagaState.held``, without a reply deadline, as
nothing was sent. A held retry keeps its due time (``SagaState.held_due``:
when it was decided plus its backoff). Unpausing issues exactly the held
commands, each after what is left of its backoff and with a fresh reply
deadline, so the saga continues where it stopped. A step that waits for
its locks asks for them again only after the unpause (the pause takes it out
of the lock queues: see :mod:`sagakit.engine.locks`).
"""

from __future__ import annotations

from typing import Any

from sagakit.definition.remote import waits_for_reply
from sagakit.definition.saga import Saga
from sagakit.engine.commands import AcquireLocks, Command, Compensate, RunStep
from sagakit.engine.events import PauseRequested, UnpauseRequested
from sagakit.engine.locks import ask_again
from sagakit.engine.state import SagaState, StepStatus
from sagakit.errors import StateError


def pause(state: SagaState, event: PauseRequested) -> SagaState:
    """``state`` paused; ``StateError`` if it has ended or is paused already."""
    if state.status.terminal:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value}: only a running or "
            "compensating saga can be paused"
        )
    if state.paused:
        raise StateError(f"saga {state.saga_id} is already paused")
    return state.but(paused=True)


def unpause(
    saga: Saga[Any], state: SagaState, event: UnpauseRequested
) -> tuple[SagaState, tuple[Command, ...]]:
    """``state`` going on, and the commands the pause held back."""
    if not state.paused:
        raise StateError(
            f"saga {state.saga_id} is {state.status.value} and not paused: "
            "only a paused saga can be unpaused"
        )
    commands: list[Command] = []
    for name in state.held:
        current, spec = state.step(name), saga.step(name)
        # a state held before due times were kept has none: at once
        delay = max(0.0, state.held_due.get(name, event.at) - event.at)
        if current.status is StepStatus.RUNNING:
            timeout = spec.reply_timeout if spec.is_remote else None
            commands.append(RunStep(name, current.attempts, delay))
        elif current.status is StepStatus.COMPENSATING:
            awaited = waits_for_reply(spec.compensate)
            timeout = spec.compensation_reply_timeout if awaited else None
            commands.append(Compensate(name, current.compensation_attempts, delay))
        else:  # settled meanwhile (a crash marked it interrupted)
            continue
        deadline = None if timeout is None else event.at + delay + timeout
        # a parked poison step gets its crash budget back
        state = state.with_step(name, deadline=deadline, crashes=0)
    state = state.but(paused=False, held=(), held_due={}, parked=None)
    return state, (*commands, *ask_again(state))


def hold(
    state: SagaState, commands: tuple[Command, ...], at: float
) -> tuple[SagaState, tuple[Command, ...]]:
    """What a paused saga keeps of a decision made at ``at``: its state, minus
    the runs (and when each delayed one was due)."""
    if state.status.terminal:  # ended by a step that was in flight
        return state.but(paused=False, held=(), held_due={}, parked=None), commands
    held, due = list(state.held), dict(state.held_due)
    kept: list[Command] = []
    for command in commands:
        if isinstance(command, (RunStep, Compensate)):
            if command.step not in held:
                held.append(command.step)
                if command.delay > 0:
                    due[command.step] = at + command.delay
            state = state.with_step(command.step, deadline=None)
        elif not isinstance(command, AcquireLocks):  # asked for after the unpause
            kept.append(command)
    return state.but(held=tuple(held), held_due=due), tuple(kept)
