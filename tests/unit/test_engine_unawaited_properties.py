"""Property test: random sagas whose compensations are partly fire and forget.

The simulator plays the runtime's part as ``runtime.unawaited.outgoing``
does: after each decision, the fire-and-forget compensations it issued are
sent (``engine.unawaited.sent``) in the same transition, or, now and then,
their message cannot be built (a failed attempt, fed next). Other commands
finish in random order, with random outcomes and crashes. Checked: the
saga ends; a fire-and-forget compensation never waits in a committed state
(unless its message failed and that failure is about to be fed); no
compensation is undone twice, or before the compensations of the steps
downstream of it; a compensated saga undid every completed step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import hypothesis
from hypothesis import given
from hypothesis import strategies as st

from sagakit.definition import Remote, Saga, Step
from sagakit.engine import (
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaState,
    SagaStatus,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.engine.unawaited import sent, unawaited
from tests.unit.test_engine_properties import PROPERTY_SETTINGS, sagas

EVENT_BOUND = 400
MAX_CRASHES = 2


def forgetful(saga: Saga[Any], data: st.DataObject) -> Saga[Any]:
    """``saga`` with most steps that may be compensated undone by a
    ``Remote(..., awaited=False)`` (the others keep what they had)."""
    pivot = saga.pivot
    past = set() if pivot is None else {pivot, *saga.graph.descendants[pivot]}

    def wrap(spec: Step) -> Step:
        if spec.name in past or data.draw(st.integers(0, 3)) == 0:
            return spec
        undo = Remote(f"svc.undo_{spec.name}", awaited=False)
        return replace(spec, compensate=undo, compensation_timeout=None)

    return saga.rebuilt(wrap)


class Sim:
    def __init__(self, saga: Saga[Any], data: st.DataObject) -> None:
        self.saga, self.data = saga, data
        self.state: SagaState = initial_state(saga, "p")
        self.pending: list[RunStep | Compensate] = []
        self.unsent: list[Event] = []
        self.undone: list[str] = []
        self.events = 0
        self.crashes = 0

    def feed(self, event: Event) -> None:
        self.events += 1
        assert self.events < EVENT_BOUND, "did not end within the bound"
        decision = decide(self.saga, self.state, event)
        commands: tuple[Command, ...] = decision.commands
        while commands:  # what the runtime's outgoing() does
            done = []
            for command in commands:
                if unawaited(self.saga, command) is None:
                    if isinstance(command, RunStep | Compensate):
                        self.pending.append(command)
                    continue
                assert isinstance(command, Compensate)
                assert decision.state.step(command.step).deadline is None
                if self.data.draw(st.integers(0, 9)) == 0:  # cannot be built
                    error = ErrorInfo("ValueError", "bad payload")
                    failed = CompensationAttemptFailed(
                        command.step, error, False, 1.0, 0.0, command.attempt
                    )
                    self.unsent.append(failed)
                else:
                    done.append(command)
            self.note(decision.state, done)
            issued = len(decision.commands)
            decision = sent(self.saga, decision, done, 1.0)
            commands = decision.commands[issued:]
        self.state = decision.state
        self.check()

    def note(self, state: SagaState, done: list[Compensate]) -> None:
        """``done`` are sent from ``state``: check nothing downstream of
        them is left to undo."""
        below = self.saga.graph.descendants
        for command in done:
            name = command.step
            assert name not in self.undone, f"{name} undone twice"
            for d in below[name]:
                status = state.step(d).status
                if d in state.completed and self.saga.step(d).compensate:
                    assert d in self.undone or status is (
                        StepStatus.COMPENSATION_FAILED
                    ), f"{name} undone before {d}"
            self.undone.append(name)

    def check(self) -> None:
        """A fire-and-forget compensation waits only for its failure."""
        waiting = {
            e.step for e in self.unsent if isinstance(e, CompensationAttemptFailed)
        }
        for name, step in self.state.steps.items():
            if (
                step.status is StepStatus.COMPENSATING
                and unawaited(self.saga, Compensate(name, 1)) is not None
            ):
                assert name in waiting, f"{name} waits for nothing"

    def step(self) -> None:
        if self.unsent:
            self.feed(self.unsent.pop(0))
            return
        if self.crashes < MAX_CRASHES and self.data.draw(st.integers(0, 19)) == 0:
            self.crashes += 1
            self.pending.clear()
            self.feed(SagaResumed(float(self.events)))
            return
        i = self.data.draw(st.integers(0, len(self.pending) - 1))
        command = self.pending.pop(i)
        ok = self.data.draw(st.integers(0, 3)) > 0
        name, attempt = command.step, command.attempt
        if isinstance(command, RunStep):
            if ok:
                self.feed(StepSucceeded(name, None, 1.0, attempt))
            else:
                error = ErrorInfo("Boom", name)
                self.feed(StepAttemptFailed(name, error, False, 1.0, 0.0, attempt))
        elif ok:
            self.undone.append(name)
            self.feed(CompensationSucceeded(name, 1.0, attempt))
        else:
            error = ErrorInfo("UndoFailed", name)
            self.feed(CompensationAttemptFailed(name, error, False, 1.0, 0.0, attempt))


@PROPERTY_SETTINGS
@given(shape=sagas, data=st.data())
def test_fire_and_forget_rollbacks_keep_the_engine_guarantees(
    shape: Saga[Any], data: st.DataObject
) -> None:
    saga = forgetful(shape, data)
    sim = Sim(saga, data)
    sim.feed(SagaStarted(0.0))
    while not sim.state.status.terminal:
        sim.step()
    final = sim.state
    forgotten = [s.name for s in saga if unawaited(saga, Compensate(s.name, 1))]
    sent_ones = [n for n in sim.undone if n in forgotten]
    hypothesis.event(f"status: {final.status.value}")
    hypothesis.event(f"fire-and-forget undone: {min(len(sent_ones), 3)}")
    if final.status is SagaStatus.COMPENSATED:
        undo = {n for n in final.completed if saga.step(n).compensate is not None}
        assert set(sim.undone) == undo
        assert all(final.step(n).status is StepStatus.COMPENSATED for n in undo)
    assert not any(
        s.status in (StepStatus.RUNNING, StepStatus.COMPENSATING)
        for s in final.steps.values()
    )
