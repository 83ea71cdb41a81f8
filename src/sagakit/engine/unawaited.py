"""Fire-and-forget compensations: done once their command is sent.

A compensation ``Remote(..., awaited=False)`` starts like any other (the
step is ``COMPENSATING``, a ``Compensate`` command is issued) but gets no
reply deadline. The runtime writes its command to the outbox and, in the
same commit, applies :func:`sent`: the compensation counts as succeeded
and the rollback goes on (the compensations it unblocks start in that
commit too). A compensation whose command could not be built is reported
as a failed attempt instead, as for an awaited one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga
from sagakit.engine.commands import Command, Compensate, Decision
from sagakit.engine.decide import decide
from sagakit.engine.events import CompensationSucceeded


def unawaited(saga: Saga[Any], command: Command) -> Remote | None:
    """The remote compensation ``command`` sends without awaiting a reply."""
    if not isinstance(command, Compensate):
        return None
    target = saga.step(command.step).compensate
    if isinstance(target, Remote) and not target.awaited:
        return target
    return None


def sent(
    saga: Saga[Any], decision: Decision, compensations: Iterable[Compensate], at: float
) -> Decision:
    """``decision`` once the fire-and-forget ``compensations`` it issued are
    sent: each succeeded (at ``at``). Its commands are ``decision``'s,
    followed by those the successes issue (maybe more fire-and-forget
    compensations, whose sending the caller applies in turn)."""
    state = decision.state
    commands: list[Command] = list(decision.commands)
    for command in compensations:
        done = CompensationSucceeded(command.step, at, command.attempt)
        step = decide(saga, state, done)
        state = step.state
        commands.extend(step.commands)
    return Decision(state, tuple(commands))
