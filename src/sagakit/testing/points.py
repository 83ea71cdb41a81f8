"""Failure points: every way a saga run can be disturbed, from its definition.

A point combines injected step failures with, optionally, a simulated process
crash at one commit. Each point knows the terminal status the saga must reach.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from sagakit.definition.remote import Remote
from sagakit.definition.saga import Saga, Step
from sagakit.definition.subsaga import SubSaga
from sagakit.engine.state import SagaStatus

Mode = Literal["always", "once", "reject"]
"""``always``: every attempt fails; ``once``: the first attempt fails, later
ones succeed; ``reject``: a remote participant refuses (never retried)."""


class InjectedFailure(Exception):
    """Raised in place of a step action or compensation at a failure point."""


@dataclass(frozen=True, slots=True)
class Injection:
    step: str
    kind: Literal["action", "compensation"]
    mode: Mode

    def fails(self, attempt: int) -> bool:
        return self.mode != "once" or attempt == 1

    def __str__(self) -> str:
        what = {"always": "fails every attempt", "once": "fails once"}
        return f"{self.step} {self.kind} {what.get(self.mode, 'is rejected')}"


@dataclass(frozen=True, slots=True)
class Crash:
    """The process dies at commit number ``commit`` (1 = the saga's creation),
    ``before`` the save reaches the store or ``after`` it did."""

    commit: int
    when: Literal["before", "after"]

    def __str__(self) -> str:
        return f"crash {self.when} commit {self.commit}"


@dataclass(frozen=True, slots=True)
class FailurePoint:
    injections: tuple[Injection, ...] = ()
    crash: Crash | None = None
    expected: SagaStatus = SagaStatus.SUCCEEDED

    @property
    def label(self) -> str:
        parts = [str(i) for i in self.injections] or ["no failure"]
        if self.crash is not None:
            parts.append(str(self.crash))
        return ", ".join(parts)

    def with_crash(self, crash: Crash) -> FailurePoint:
        return FailurePoint(self.injections, crash, self.expected)

    def injection(self, step: str, kind: str) -> Injection | None:
        for i in self.injections:
            if i.step == step and i.kind == kind:
                return i
        return None


def _after_pivot(saga: Saga[Any], step: str) -> bool:
    """Downstream of the pivot: retried, never compensated."""
    pivot = saga.pivot
    return pivot is not None and step in saga.graph.descendants[pivot]


def _retries(step: Step, kind: str) -> bool:
    """Whether an injected (retryable) failure of this kind is tried again."""
    policy = step.retry if kind == "action" else step.compensation_retry
    remote = step.is_remote if kind == "action" else step.compensation_is_remote
    if policy.attempts < 2:  # noqa: PLR2004 - one attempt: no retry
        return False
    return remote or policy.retries(InjectedFailure("probe"))


def _through(saga: Saga[Any], step: Step, status: SagaStatus) -> SagaStatus:
    """What ``saga`` ends as when ``step``'s child ends ``status`` (and
    nothing else fails)."""
    if status is SagaStatus.SUCCEEDED:
        return status
    return (
        SagaStatus.FAILED if _after_pivot(saga, step.name) else SagaStatus.COMPENSATED
    )


def _prefixed(step: Step, injections: tuple[Injection, ...]) -> tuple[Injection, ...]:
    """``injections`` of the child of ``step``, named from its parent."""
    return tuple(replace(i, step=f"{step.name}/{i.step}") for i in injections)


def _failing(step: Step, mode: Mode) -> tuple[Injection, ...]:
    """What makes ``step`` fail for good: its action failing, or for a
    sub-saga step, its child's failing run."""
    if isinstance(step.action, SubSaga):
        return _prefixed(step, failing_run(step.action.saga).injections)
    return (Injection(step.name, "action", mode),)


def _fails(saga: Saga[Any], step: Step, mode: Mode) -> FailurePoint:
    expected = _through(saga, step, SagaStatus.COMPENSATED)
    return FailurePoint(_failing(step, mode), expected=expected)


def _last_undoable(saga: Saga[Any]) -> Step:
    """The pivot, or else the first step of the last stage."""
    return saga.step(saga.pivot) if saga.pivot else saga.stages[-1][0]


def failing_run(saga: Saga[Any]) -> FailurePoint:
    """The failure that rolls back the most: the pivot (or the last step)
    fails (for a sub-saga, its child's failing run), so every compensation
    upstream of it runs."""
    step = _last_undoable(saga)
    return _fails(saga, step, "reject" if step.is_remote else "always")


def _trigger(saga: Saga[Any], step: Step) -> Step | None:
    """A step whose failure surely makes ``step``'s compensation run (every
    step upstream of a failing one has completed): the pivot, or the step
    furthest downstream of it."""
    if saga.pivot is not None:
        return saga.step(saga.pivot)
    below = saga.graph.descendants[step.name]
    for stage in reversed(saga.stages):
        for later in stage:
            if later.name in below:
                return later
    return step if step.compensate_on_failure else None


def _child_points(saga: Saga[Any], step: Step) -> list[FailurePoint]:
    """The points of ``step``'s child, as points of ``saga``."""
    assert isinstance(step.action, SubSaga)  # noqa: S101 - the caller checks
    return [
        FailurePoint(
            _prefixed(step, point.injections),
            expected=_through(saga, step, point.expected),
        )
        for point in injection_points(step.action.saga)
        if point.injections
    ]


def _undone(step: Step) -> list[tuple[str, Step]]:
    """(name from ``step``'s saga, step) of every compensation the rollback
    of ``step`` runs: its own, or those of its child (and theirs)."""
    if not step.rolls_back_child:
        return [(step.name, step)] if step.compensate is not None else []
    assert isinstance(step.action, SubSaga)  # noqa: S101 - rolls back a child
    return [
        (f"{step.name}/{name}", inner)
        for below in step.action.saga
        for name, inner in _undone(below)
    ]


def injection_points(saga: Saga[Any]) -> list[FailurePoint]:
    """Every step's action failing, and every compensation failing (for a
    sub-saga step, every point of its child, and every compensation of the
    child failing as the step is compensated)."""
    points = [FailurePoint()]
    for step in saga:
        if step.is_sub_saga:
            points.extend(_child_points(saga, step))
        elif step.is_remote:
            points.append(_fails(saga, step, "reject"))
            if step.retry.attempts > 1:
                points.append(_fails(saga, step, "always"))
        else:
            points.append(_fails(saga, step, "always"))
        if _retries(step, "action"):
            once = FailurePoint((Injection(step.name, "action", "once"),))
            points.append(once)
    for step in saga:
        if step.compensate is None or _after_pivot(saga, step.name):
            continue
        trigger = _trigger(saga, step)
        if trigger is None:
            continue  # nothing after it can fail and be rolled back
        cause = _failing(trigger, "reject" if trigger.is_remote else "always")
        for name, undone in _undone(step):
            # a fire-and-forget compensation is done once sent: its
            # participant failing changes nothing
            remote = undone.compensate
            sent = isinstance(remote, Remote) and not remote.awaited
            points.append(
                FailurePoint(
                    (*cause, Injection(name, "compensation", "always")),
                    expected=SagaStatus.COMPENSATED
                    if sent
                    else SagaStatus.COMPENSATION_FAILED,
                )
            )
            if _retries(undone, "compensation") and not sent:
                points.append(
                    FailurePoint(
                        (*cause, Injection(name, "compensation", "once")),
                        expected=SagaStatus.COMPENSATED,
                    )
                )
    return points


def crash_points(base: FailurePoint, commits: int) -> list[FailurePoint]:
    """A crash before and after each of the ``commits`` of ``base``'s run."""
    return [
        base.with_crash(Crash(k, when))
        for k in range(1, commits + 1)
        for when in ("before", "after")
    ]
