from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagakit.definition import Parallel, RetryPolicy, Saga, Step
from sagakit.engine import (
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    FinishSaga,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaState,
    SagaStatus,
    StepAttemptFailed,
    StepSucceeded,
    decide,
    initial_state,
)

# Property tests: random saga shapes driven by random outcomes.
#
# A small simulator plays the runtime's part: it keeps the commands ``decide``
# issued, picks one at random (so parallel steps interleave arbitrarily), lets it
# succeed or fail (retryable or not), and sometimes "crashes" (drops every
# outstanding command and feeds ``SagaResumed``). Alongside, it keeps its own
# record of what happened (what ran, what completed and in which order) and
# checks the engine's commands against the guarantees in ``decide``'s docstring.

MAX_CRASHES = 2


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


policies = st.builds(
    RetryPolicy,
    attempts=st.integers(1, 3),
    backoff=st.sampled_from([0.0, 0.1, 1.0]),
    multiplier=st.sampled_from([1.0, 2.0, 3.0]),
    max_backoff=st.sampled_from([0.5, 30.0]),
    jitter=st.sampled_from([0.0, 0.5, 1.0]),
)


@st.composite
def sagas(draw: st.DrawFn) -> Saga[Any]:
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=6))
    pivot_at = draw(st.none() | st.integers(0, len(sizes) - 1))
    if pivot_at is not None:
        sizes[pivot_at] = 1
    stages: list[Step | Parallel] = []
    counter = 0
    for index, size in enumerate(sizes):
        group = []
        for _ in range(size):
            name = f"s{counter}"
            counter += 1
            retry = draw(policies)
            if index == pivot_at:
                group.append(Step(name, act, retry=retry, pivot=True))
                continue
            after_pivot = pivot_at is not None and index > pivot_at
            has_comp = not after_pivot and draw(st.booleans())
            group.append(
                Step(
                    name,
                    act,
                    undo if has_comp else None,
                    retry=retry,
                    compensation_retry=draw(policies),
                    compensate_on_failure=has_comp and draw(st.booleans()),
                )
            )
        stages.append(group[0] if size == 1 else Parallel(*group))
    return Saga("prop", stages)


def expected_delay(policy: RetryPolicy, failed_attempt: int, sample: float) -> float:
    base = min(
        policy.max_backoff, policy.backoff * policy.multiplier ** (failed_attempt - 1)
    )
    return base * (1 - policy.jitter * sample)


@dataclass
class Run:
    """What the simulator saw and did."""

    saga: Saga[Any]
    events: list[Event] = field(default_factory=list)
    states: list[SagaState] = field(default_factory=list)
    commands: list[tuple[Command, ...]] = field(default_factory=list)
    # the simulator's own bookkeeping
    pending: list[RunStep | Compensate] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)  # step -> attempt
    succeeded: set[str] = field(default_factory=set)
    completion: list[str] = field(default_factory=list)
    first_failure: tuple[str, ErrorInfo] | None = None
    pivot_done: bool = False
    compensating: tuple[str, int] | None = None  # step, attempt
    compensated_order: list[str] = field(default_factory=list)
    failed_compensation: tuple[str, ErrorInfo] | None = None
    crashes: int = 0

    @property
    def state(self) -> SagaState:
        return self.states[-1]

    def has_comp(self, name: str) -> bool:
        return self.saga.step(name).compensate is not None

    def rollback_order(self) -> list[str]:
        return [n for n in reversed(self.completion) if self.has_comp(n)]

    def stage_of(self, name: str) -> int:
        for index, group in enumerate(self.saga.stages):
            if any(s.name == name for s in group):
                return index
        raise AssertionError(name)

    # -- feeding events ------------------------------------------------------

    def feed(self, event: Event) -> tuple[Command, ...]:
        decision = decide(self.saga, self.state, event)
        self.events.append(event)
        self.states.append(decision.state)
        self.commands.append(decision.commands)
        state = decision.state
        # every state survives storage
        assert SagaState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
        return decision.commands

    def accept(self, commands: tuple[Command, ...]) -> None:
        """Check freshly issued commands and make them outstanding."""
        for command in commands:
            if isinstance(command, RunStep):
                assert self.first_failure is None, "RunStep after a permanent failure"
                stage = self.stage_of(command.step)
                for group in self.saga.stages[:stage]:
                    for s in group:
                        assert s.name in self.succeeded, "stage started too early"
                assert command.step not in self.succeeded, "committed step re-run"
                self.running[command.step] = command.attempt
                self.pending.append(command)
            elif isinstance(command, Compensate):
                assert not self.running, "compensation while steps are in flight"
                assert not self.pivot_done, "compensation after the pivot succeeded"
                assert self.first_failure is not None
                assert self.compensating in (None, (command.step, command.attempt))
                assert not any(isinstance(p, Compensate) for p in self.pending)
                self.compensating = (command.step, command.attempt)
                self.pending.append(command)
            else:
                assert isinstance(command, FinishSaga)
                assert self.state.status is command.status
        if self.state.status.terminal:
            assert any(isinstance(c, FinishSaga) for c in commands)
            assert not self.pending, "ended with work outstanding"
            assert not self.running
        else:
            assert not any(isinstance(c, FinishSaga) for c in commands)
            assert self.pending, "stuck: not terminal and nothing to do"

    def expected_after_settling(self) -> tuple[Command, ...]:
        """What must follow once a failed saga has nothing in flight."""
        if self.pivot_done:
            return (FinishSaga(SagaStatus.FAILED),)
        order = self.rollback_order()
        if not order:
            return (FinishSaga(SagaStatus.COMPENSATED),)
        return (Compensate(order[0], 1),)

    # -- one simulated action ----------------------------------------------------

    def crash(self) -> None:
        self.crashes += 1
        self.pending.clear()
        status = self.state.status
        commands = self.feed(SagaResumed(at=float(len(self.events))))
        if status is SagaStatus.RUNNING:
            stage = self.saga.stages[self.state.stage]
            expected: tuple[Command, ...] = tuple(
                RunStep(s.name, self.running[s.name])
                for s in stage
                if s.name in self.running
            )
        elif self.compensating is not None:
            expected = (Compensate(*self.compensating),)
        else:
            # in-flight steps count as failed; their outcome is unknown
            for name in self.saga.step_names:
                if name in self.running and self.saga.step(name).compensate_on_failure:
                    self.completion.append(name)
            self.running.clear()
            expected = self.expected_after_settling()
        assert commands == expected
        self.accept(commands)

    def finish_step(self, command: RunStep, data: st.DataObject) -> None:
        name, attempt = command.step, command.attempt
        spec = self.saga.step(name)
        outcome = data.draw(st.sampled_from(["ok", "retryable", "fatal"]))
        if outcome == "ok":
            del self.running[name]
            self.succeeded.add(name)
            self.completion.append(name)
            if spec.pivot:
                self.pivot_done = True
            commands = self.feed(StepSucceeded(name, attempt, at=1.0))
            if self.first_failure is not None:
                expected = () if self.running else self.expected_after_settling()
                assert commands == expected
            self.accept(commands)
            return
        sample = data.draw(st.sampled_from([0.0, 0.5, 0.99]))
        error = ErrorInfo("Boom", f"{name} attempt {attempt}")
        retryable = outcome == "retryable"
        commands = self.feed(StepAttemptFailed(name, error, retryable, 1.0, sample))
        if self.first_failure is None and retryable and attempt < spec.retry.attempts:
            assert len(commands) == 1
            retry = commands[0]
            assert isinstance(retry, RunStep)
            assert (retry.step, retry.attempt) == (name, attempt + 1)
            assert math.isclose(
                retry.delay, expected_delay(spec.retry, attempt, sample)
            )
            self.accept(commands)
            return
        del self.running[name]
        if self.first_failure is None:
            self.first_failure = (name, error)
        if spec.compensate_on_failure:
            self.completion.append(name)
        expected = () if self.running else self.expected_after_settling()
        assert commands == expected
        self.accept(commands)

    def finish_compensation(self, command: Compensate, data: st.DataObject) -> None:
        name, attempt = command.step, command.attempt
        policy = self.saga.step(name).compensation_retry
        outcome = data.draw(st.sampled_from(["ok", "retryable", "fatal"]))
        self.compensating = None
        if outcome == "ok":
            self.compensated_order.append(name)
            commands = self.feed(CompensationSucceeded(name, at=2.0))
            rest = self.rollback_order()[len(self.compensated_order) :]
            expected: tuple[Command, ...] = (
                (Compensate(rest[0], 1),)
                if rest
                else (FinishSaga(SagaStatus.COMPENSATED),)
            )
            assert commands == expected
            self.accept(commands)
            return
        sample = data.draw(st.sampled_from([0.0, 0.5, 0.99]))
        error = ErrorInfo("UndoFailed", f"{name} attempt {attempt}")
        retryable = outcome == "retryable"
        commands = self.feed(
            CompensationAttemptFailed(name, error, retryable, 2.0, sample)
        )
        if retryable and attempt < policy.attempts:
            assert len(commands) == 1
            retry = commands[0]
            assert isinstance(retry, Compensate)
            assert (retry.step, retry.attempt) == (name, attempt + 1)
            assert math.isclose(retry.delay, expected_delay(policy, attempt, sample))
        else:
            self.failed_compensation = (name, error)
            assert commands == (FinishSaga(SagaStatus.COMPENSATION_FAILED),)
        self.accept(commands)


def event_bound(saga: Saga[Any]) -> int:
    """Every attempt of every step and compensation, plus crashes and re-runs."""
    runs = sum(s.retry.attempts for s in saga)
    undos = sum(s.compensation_retry.attempts for s in saga if s.compensate)
    return 1 + runs + undos + MAX_CRASHES * (1 + 3)


def simulate(saga: Saga[Any], data: st.DataObject) -> Run:
    run = Run(saga, states=[initial_state(saga, "prop-1")])
    run.accept(run.feed(SagaStarted(at=0.0)))
    bound = event_bound(saga)
    while not run.state.status.terminal:
        assert len(run.events) < bound, "did not end within the bound"
        if run.crashes < MAX_CRASHES and data.draw(st.integers(0, 9)) == 0:
            run.crash()
            continue
        command = run.pending.pop(data.draw(st.integers(0, len(run.pending) - 1)))
        if isinstance(command, RunStep):
            run.finish_step(command, data)
        else:
            run.finish_compensation(command, data)
    return run


def compensations_issued(run: Run) -> list[str]:
    order: list[str] = []
    for commands in run.commands:
        for c in commands:
            if isinstance(c, Compensate) and (not order or order[-1] != c.step):
                order.append(c.step)
    return order


PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(saga=sagas(), data=st.data())
def test_random_sagas_keep_the_engine_guarantees(
    saga: Saga[Any], data: st.DataObject
) -> None:
    run = simulate(saga, data)
    final = run.state
    issued = compensations_issued(run)
    all_steps = set(saga.step_names)

    hypothesis.event(
        f"status: {final.status.value}"
    )  # see --hypothesis-show-statistics
    hypothesis.event(f"crashes: {run.crashes}")
    assert final.status.terminal
    assert len(run.events) <= event_bound(saga)

    if final.status is SagaStatus.SUCCEEDED:
        assert run.first_failure is None
        assert run.succeeded == all_steps
        assert sorted(run.completion) == sorted(all_steps)
        assert issued == []
        return

    assert run.first_failure is not None
    failed_step, error = run.first_failure
    assert final.failed_step == failed_step
    assert final.error == error
    # the steps completed in this order, as far as the engine is concerned
    assert list(final.completed) == run.completion
    expected = run.rollback_order()

    if final.status is SagaStatus.FAILED:
        assert run.pivot_done
        assert issued == []
        assert final.compensation_error is None
    elif final.status is SagaStatus.COMPENSATED:
        assert not run.pivot_done
        assert issued == expected
        assert run.compensated_order == expected
        assert final.compensation_error is None
    else:
        assert final.status is SagaStatus.COMPENSATION_FAILED
        assert not run.pivot_done
        assert run.failed_compensation is not None
        step, comp_error = run.failed_compensation
        assert issued == expected[: len(issued)]
        assert issued[-1] == step
        assert run.compensated_order == issued[:-1]
        assert final.compensation_step == step
        assert final.compensation_error == comp_error


@PROPERTY_SETTINGS
@given(saga=sagas(), data=st.data())
def test_replaying_the_same_events_gives_the_same_states(
    saga: Saga[Any], data: st.DataObject
) -> None:
    run = simulate(saga, data)
    state = initial_state(saga, "prop-1")
    assert state == run.states[0]
    for event, recorded_state, recorded_commands in zip(
        run.events, run.states[1:], run.commands, strict=True
    ):
        decision = decide(saga, state, event)
        assert decision.state == recorded_state
        assert decision.commands == recorded_commands
        state = SagaState.from_dict(decision.state.to_dict())  # replay from storage
