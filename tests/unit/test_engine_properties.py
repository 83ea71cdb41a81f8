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
    CancelSteps,
    Command,
    Compensate,
    CompensationAttemptFailed,
    CompensationRetryRequested,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    FinishSaga,
    PauseRequested,
    ResumeRequested,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaState,
    SagaStatus,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    UnpauseRequested,
    decide,
    initial_state,
)

# Property tests: random saga shapes (lists of stages, and DAGs declared with
# ``after``; wait-all and fail-fast groups; stop and continue rollback
# policies) driven by random outcomes.
#
# A small simulator plays the runtime's part: it keeps the commands ``decide``
# issued, picks one at random (so parallel steps and compensations interleave
# arbitrarily), lets it succeed or fail (retryable or not, or be cancelled when
# a fail-fast group asked for it), and sometimes "crashes" (drops every
# outstanding command and feeds ``SagaResumed``), pauses and unpauses the saga,
# or resumes a failed rollback. Each transition is checked from the state
# before and after it: what started, and whether it was allowed to.

MAX_CRASHES = 2
MAX_PAUSES = 2
MAX_RESUMES = 1
EVENT_BOUND = 400


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


def _step(
    draw: st.DrawFn,
    name: str,
    position: tuple[int, int | None],
    after: tuple[str, ...] | None = None,
) -> Step:
    """Step ``name`` at ``position`` (its index, the pivot's index)."""
    index, pivot_at = position
    pivot = index == pivot_at
    after_pivot = pivot_at is not None and index > pivot_at
    retry = draw(policies)
    if pivot:
        return Step(name, act, retry=retry, pivot=True, after=after)
    has_comp = not after_pivot and draw(st.booleans())
    return Step(
        name,
        act,
        undo if has_comp else None,
        retry=retry,
        compensation_retry=draw(policies),
        compensate_on_failure=has_comp and draw(st.booleans()),
        after=after,
    )


def _group(draw: st.DrawFn, group: list[Step]) -> Step | Parallel:
    if len(group) == 1:
        return group[0]
    if draw(st.booleans()):
        grace = draw(st.sampled_from([0.0, 1.0]))
        return Parallel(*group, on_failure="fail_fast", grace=grace)
    return Parallel(*group)


@st.composite
def stage_sagas(draw: st.DrawFn) -> Saga[Any]:
    """A list of stages, as sagas were written before ``after``."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=6))
    pivot_at = draw(st.none() | st.integers(0, len(sizes) - 1))
    if pivot_at is not None:
        sizes[pivot_at] = 1
    items: list[Step | Parallel] = []
    counter = 0
    for index, size in enumerate(sizes):
        group = []
        for _ in range(size):
            group.append(_step(draw, f"s{counter}", (index, pivot_at)))
            counter += 1
        items.append(_group(draw, group))
    policy = draw(st.sampled_from(["stop", "continue"]))
    return Saga("prop", items, on_compensation_failure=policy)


@st.composite
def dag_sagas(draw: st.DrawFn) -> Saga[Any]:
    """Steps with random dependencies on earlier ones; the pivot, if any,
    waits for every earlier step and every later one depends on it."""
    n = draw(st.integers(1, 7))
    pivot_at = draw(st.none() | st.integers(0, n - 1))
    steps: list[Step] = []
    for i in range(n):
        earlier = [f"d{j}" for j in range(i)]
        if i == pivot_at:
            after = tuple(earlier)
        elif pivot_at is not None and i > pivot_at:
            downstream = earlier[pivot_at:]  # the pivot and what follows it
            first = draw(st.sampled_from(downstream))
            more = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True))
            after = tuple(dict.fromkeys([first, *more]))
        else:
            after = tuple(
                draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True))
                if earlier
                else []
            )
        steps.append(_step(draw, f"d{i}", (i, pivot_at), after))
    items: list[Step | Parallel] = []
    i = 0
    while i < n:
        size = 1 if i == pivot_at else draw(st.integers(1, 3))
        group = steps[i : i + size]
        if pivot_at is not None and i < pivot_at < i + size:
            group = steps[i:pivot_at]
        items.append(_group(draw, group))
        i += len(group)
    policy = draw(st.sampled_from(["stop", "continue"]))
    return Saga("dag", items, on_compensation_failure=policy)


sagas = st.one_of(stage_sagas(), dag_sagas())


def expected_delay(policy: RetryPolicy, failed_attempt: int, sample: float) -> float:
    base = min(
        policy.max_backoff, policy.backoff * policy.multiplier ** (failed_attempt - 1)
    )
    return base * (1 - policy.jitter * sample)


_DONE = (StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED)


@dataclass
class Run:
    """What the simulator saw and did."""

    saga: Saga[Any]
    events: list[Event] = field(default_factory=list)
    states: list[SagaState] = field(default_factory=list)
    commands: list[tuple[Command, ...]] = field(default_factory=list)
    pending: list[RunStep | Compensate] = field(default_factory=list)
    cancel: set[str] = field(default_factory=set)
    completion: list[str] = field(default_factory=list)
    first_failure: tuple[str, ErrorInfo] | None = None
    compensated: list[str] = field(default_factory=list)
    compensation_failed: list[str] = field(default_factory=list)
    compensations_started: list[str] = field(default_factory=list)
    crashes: int = 0
    pauses: int = 0
    resumes: int = 0

    @property
    def state(self) -> SagaState:
        return self.states[-1]

    def has_comp(self, name: str) -> bool:
        return self.saga.step(name).compensate is not None

    def to_undo(self) -> set[str]:
        return {n for n in self.completion if self.has_comp(n)}

    # -- feeding events ------------------------------------------------------

    def feed(self, event: Event) -> tuple[Command, ...]:
        before = self.state
        decision = decide(self.saga, before, event)
        self.events.append(event)
        self.states.append(decision.state)
        self.commands.append(decision.commands)
        # every state survives storage
        state = decision.state
        assert SagaState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
        self.check_transition(before, state, event)
        self.accept(before, decision.commands, event)
        return decision.commands

    def check_transition(
        self, before: SagaState, after: SagaState, event: Event
    ) -> None:
        """What started in this transition was allowed to."""
        graph = self.saga.graph
        failing = StepStatus.COMPENSATION_FAILED
        self.compensation_failed.extend(
            n
            for n in graph.order
            if after.step(n).status is failing and before.step(n).status is not failing
        )
        # the step the event is about first: a fail-fast failure can take
        # back held runs of its siblings in the same transition
        about = getattr(event, "step", None)
        order = sorted(graph.order, key=lambda n: n != about)
        for name in order:
            old, new = before.step(name), after.step(name)
            if old.status is StepStatus.RUNNING and new.status is not old.status:
                if isinstance(event, StepSucceeded) and event.step == name:
                    self.completion.append(name)
                elif new.status is not StepStatus.PENDING:  # else taken back
                    if self.first_failure is None and (
                        before.status is SagaStatus.RUNNING
                    ):
                        assert new.error is not None
                        self.first_failure = (name, new.error)
                    if self.saga.step(name).compensate_on_failure:
                        self.completion.append(name)
            started = new.status is StepStatus.RUNNING and (
                old.status is not StepStatus.RUNNING or new.attempts != old.attempts
            )
            if started:
                for dep in graph.deps[name]:
                    assert after.step(dep).status is StepStatus.SUCCEEDED, (
                        f"{name} started before {dep} succeeded"
                    )
                assert after.status is SagaStatus.RUNNING, "forward after a failure"
            comp_started = (
                new.status is StepStatus.COMPENSATING
                and old.status is not StepStatus.COMPENSATING
            )
            if comp_started:
                self.compensations_started.append(name)
                assert not any(
                    s.status is StepStatus.RUNNING for s in after.steps.values()
                ), f"compensating {name} while steps are in flight"
                pivot = self.saga.pivot
                assert pivot is None or after.step(pivot).status is not (
                    StepStatus.SUCCEEDED
                ), "compensation after the pivot succeeded"
                assert after.error is not None, "compensating without a failure"
                assert name in self.to_undo(), f"{name} compensated, not completed"
                for d in graph.descendants[name] & self.to_undo():
                    undone = d in self.compensated or (
                        self.saga.on_compensation_failure == "continue"
                        and d in self.compensation_failed
                    )
                    assert undone, f"{name} compensated before its dependent {d}"
                # under stop, only an operator starts one after a failure
                retried = isinstance(event, CompensationRetryRequested)
                if self.saga.on_compensation_failure == "stop" and not retried:
                    assert not after.compensation_errors, "started after a stop"

    def accept(
        self, before: SagaState, commands: tuple[Command, ...], event: Event
    ) -> None:
        """Check freshly issued commands and make them outstanding."""
        state = self.state
        for command in commands:
            if isinstance(command, RunStep):
                current = state.step(command.step)
                assert current.status is StepStatus.RUNNING
                assert current.attempts == command.attempt
                self.pending.append(command)
            elif isinstance(command, Compensate):
                current = state.step(command.step)
                assert current.status is StepStatus.COMPENSATING
                assert current.compensation_attempts == command.attempt
                self.pending.append(command)
            elif isinstance(command, CancelSteps):
                assert self.saga.graph.fail_fast, "cancel without a fail-fast group"
                for name in command.steps:
                    assert before.step(name).status is StepStatus.RUNNING
                    assert name not in state.held
                    self.cancel.add(name)
            else:
                assert isinstance(command, FinishSaga)
                assert state.status is command.status
        if state.paused:
            assert not any(isinstance(c, RunStep | Compensate) for c in commands)
        if state.status.terminal:
            assert any(isinstance(c, FinishSaga) for c in commands)
            assert not self.pending, "ended with work outstanding"
            assert not any(
                s.status in (StepStatus.RUNNING, StepStatus.COMPENSATING)
                for s in state.steps.values()
            )
        else:
            assert not any(isinstance(c, FinishSaga) for c in commands)
            assert self.pending or state.paused, "stuck: nothing to do"

    # -- one simulated action ----------------------------------------------------

    def crash(self) -> None:
        self.crashes += 1
        self.pending.clear()
        before = self.state
        commands = self.feed(SagaResumed(at=float(len(self.events))))
        if before.paused:
            return
        in_flight = {
            (n, s.attempts)
            for n, s in before.steps.items()
            if s.status is StepStatus.RUNNING
        }
        if before.status is SagaStatus.RUNNING:
            assert {(c.step, c.attempt) for c in commands} >= in_flight
        elif before.compensations is not None:
            undoing = {
                (n, s.compensation_attempts)
                for n, s in before.steps.items()
                if s.status is StepStatus.COMPENSATING
            }
            issued = {
                (c.step, c.attempt) for c in commands if isinstance(c, Compensate)
            }
            assert issued >= undoing

    def finish_step(self, command: RunStep, data: st.DataObject) -> None:
        name, attempt = command.step, command.attempt
        spec = self.saga.step(name)
        choices = ["ok", "retryable", "fatal"]
        if name in self.cancel:
            choices.append("cancelled")
        outcome = data.draw(st.sampled_from(choices))
        if outcome == "ok":
            self.feed(StepSucceeded(name, attempt, at=1.0))
            return
        sample = data.draw(st.sampled_from([0.0, 0.5, 0.99]))
        error = ErrorInfo("Boom", f"{name} attempt {attempt}")
        if outcome == "cancelled":
            error = ErrorInfo("Cancelled", "cancelled: a sibling failed")
        retryable = outcome == "retryable"
        running = self.state.status is SagaStatus.RUNNING
        commands = self.feed(StepAttemptFailed(name, error, retryable, 1.0, sample))
        if running and retryable and attempt < spec.retry.attempts:
            retry = [c for c in commands if isinstance(c, RunStep)] or [
                RunStep(name, attempt + 1, expected_delay(spec.retry, attempt, sample))
            ]  # held while paused
            assert (retry[0].step, retry[0].attempt) == (name, attempt + 1)
            assert math.isclose(
                retry[0].delay, expected_delay(spec.retry, attempt, sample)
            )

    def finish_compensation(self, command: Compensate, data: st.DataObject) -> None:
        name, attempt = command.step, command.attempt
        outcome = data.draw(st.sampled_from(["ok", "retryable", "fatal"]))
        if outcome == "ok":
            assert name not in self.compensated, f"{name} compensated twice"
            self.compensated.append(name)
            self.feed(CompensationSucceeded(name, at=2.0))
            return
        sample = data.draw(st.sampled_from([0.0, 0.5, 0.99]))
        error = ErrorInfo("UndoFailed", f"{name} attempt {attempt}")
        self.feed(
            CompensationAttemptFailed(name, error, outcome == "retryable", 2.0, sample)
        )

    def resume(self) -> None:
        self.resumes += 1
        self.compensation_failed.clear()
        self.feed(ResumeRequested(at=float(len(self.events))))

    def go_on(self, data: st.DataObject) -> bool:
        """The saga ended: whether an operator made it go on (a resume)."""
        if (
            self.state.status is SagaStatus.COMPENSATION_FAILED
            and self.resumes < MAX_RESUMES
            and data.draw(st.booleans())
        ):
            self.resume()
            return True
        return False


def simulate(saga: Saga[Any], data: st.DataObject, kind: type[Run] = Run) -> Run:
    run = kind(saga, states=[initial_state(saga, "prop-1")])
    run.feed(SagaStarted(at=0.0))
    while True:
        assert len(run.events) < EVENT_BOUND, "did not end within the bound"
        state = run.state
        if state.status.terminal:
            if run.go_on(data):
                continue
            return run
        roll = data.draw(st.integers(0, 19))
        if run.crashes < MAX_CRASHES and roll == 0:
            run.crash()
            continue
        if state.paused and (roll < 5 or not run.pending):
            run.feed(UnpauseRequested(at=float(len(run.events))))
            continue
        if not state.paused and run.pauses < MAX_PAUSES and roll == 1:
            run.pauses += 1
            run.feed(PauseRequested(at=float(len(run.events))))
            continue
        command = run.pending.pop(data.draw(st.integers(0, len(run.pending) - 1)))
        if isinstance(command, RunStep):
            run.finish_step(command, data)
        else:
            run.finish_compensation(command, data)


PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(saga=sagas, data=st.data())
def test_random_sagas_keep_the_engine_guarantees(
    saga: Saga[Any], data: st.DataObject
) -> None:
    run = simulate(saga, data)
    final = run.state
    all_steps = set(saga.step_names)
    hypothesis.event(f"status: {final.status.value}")
    hypothesis.event(f"shape: {saga.name}, {saga.on_compensation_failure}")
    assert final.status.terminal
    assert not final.paused

    if final.status is SagaStatus.SUCCEEDED:
        assert run.first_failure is None
        assert {n for n, s in final.steps.items() if s.status.value == "succeeded"} == (
            all_steps
        )
        assert run.compensations_started == []
        return

    assert run.first_failure is not None
    failed_step, error = run.first_failure
    assert final.failed_step == failed_step
    assert final.error == error
    assert sorted(final.completed) == sorted(run.completion)
    to_undo = run.to_undo()
    # every compensation ran to success at most once
    assert len(run.compensated) == len(set(run.compensated))

    if final.status is SagaStatus.FAILED:
        assert final.step(saga.pivot or "").status is StepStatus.SUCCEEDED
        assert run.compensations_started == []
        assert final.compensation_error is None
    elif final.status is SagaStatus.COMPENSATED:
        assert set(run.compensated) == to_undo
        assert final.compensation_errors == ()
        assert final.compensations == ()
    else:
        assert final.status is SagaStatus.COMPENSATION_FAILED
        failed = set(run.compensation_failed)
        assert failed
        assert {s for s, _ in final.compensation_errors} == failed
        assert final.compensation_step == run.compensation_failed[0]
        assert set(run.compensated) | failed <= to_undo
        assert not set(run.compensated) & failed
        if saga.on_compensation_failure == "continue":
            assert set(run.compensated) | failed == to_undo  # all attempted
        assert set(final.compensations or ()) == to_undo - set(run.compensated)


@PROPERTY_SETTINGS
@given(saga=sagas, data=st.data())
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


def _shape(commands: tuple[Command, ...]) -> list[Any]:
    """Commands without retry delays (an unpause sends what it held at once)."""
    return [
        (type(c).__name__, c.step, c.attempt)
        if isinstance(c, RunStep | Compensate)
        else c
        for c in commands
    ]


@PROPERTY_SETTINGS
@given(saga=sagas, data=st.data())
def test_pausing_around_an_outcome_does_not_change_it(
    saga: Saga[Any], data: st.DataObject
) -> None:
    """An outcome recorded while paused, then an unpause, leads to the state
    and the work the outcome alone leads to."""
    run = simulate(saga, data)
    for event, before, after, commands in zip(
        run.events, run.states[:-1], run.states[1:], run.commands, strict=True
    ):
        if (
            before.paused
            or before.status.terminal
            or isinstance(event, PauseRequested | UnpauseRequested | ResumeRequested)
        ):
            continue
        paused = decide(saga, before, PauseRequested(at=0.0)).state
        same = decide(saga, paused, UnpauseRequested(at=0.0))
        assert same.state == before
        assert same.commands == ()
        held = decide(saga, paused, event)
        if held.state.status.terminal:
            assert held.state == after
            assert held.commands == commands
            continue
        assert not any(isinstance(c, RunStep | Compensate) for c in held.commands)
        resumed = decide(saga, held.state, UnpauseRequested(at=event_time(event)))
        assert resumed.state == after
        assert sorted(map(str, _shape(held.commands + resumed.commands))) == sorted(
            map(str, _shape(commands))
        )


def event_time(event: Event) -> float:
    return float(getattr(event, "at", 0.0))
