"""Events: facts that happened, in the past tense. Time arrives in ``at``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sagakit.engine.state import ErrorInfo


@dataclass(frozen=True, slots=True)
class SagaStarted:
    at: float


@dataclass(frozen=True, slots=True)
class SagaResumed:
    """A worker picked up an unfinished saga (after a crash or restart).

    ``max_crashes``: a local step (or compensation) found in flight by this
    many takeovers in a row kept killing the process that ran it (a poison
    saga): the saga is parked (paused, :attr:`SagaState.parked` says why)
    instead of run again. None: never parked.

    ``crashed``: whether the saga was taken from another owner that stopped
    holding it without handing it back (its lease ran out, or it was known
    gone): only then was a step in flight running there, and counts. A saga
    handed over before anything ran (submitted, drained, released by an
    operator's command) counts nothing."""

    at: float
    max_crashes: int | None = None
    crashed: bool = True


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    """``attempt``, when given, must be the step's current attempt: a reply to an
    earlier attempt is stale."""

    step: str
    result: Any
    at: float
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class _AttemptFailed:
    """The fields of a failed attempt. ``retryable`` is the policy's verdict on
    the error (budget aside); ``jitter`` is a sample in [0, 1) used for the
    backoff. The subclasses stay distinct events: neither is the other."""

    step: str
    error: ErrorInfo
    retryable: bool
    at: float
    jitter: float = 0.0
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class StepAttemptFailed(_AttemptFailed):
    """A step attempt failed."""


@dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    step: str
    at: float
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class CompensationAttemptFailed(_AttemptFailed):
    """A compensation attempt failed."""


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The clock reached ``at``: remote steps whose reply deadline is due fail
    with ``ReplyTimeout`` (and retry if their policy retries ``TimeoutError``)."""

    at: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryRequested:
    """An operator asks a ``failed`` saga (a step failed after the pivot) to run
    its failed steps again, each with a fresh retry budget."""

    at: float


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """An operator fixed what broke a compensation: a ``compensation_failed``
    saga retries that compensation (fresh budget) and goes on rolling back."""

    at: float


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """An operator cancels a running saga: no new forward step starts, steps in
    flight are awaited, completed steps are compensated. Refused past the
    pivot."""

    at: float
    reason: str = "cancelled by an operator"


@dataclass(frozen=True, slots=True)
class PauseRequested:
    """An operator pauses a running or compensating saga: steps in flight
    finish and are recorded, but no new step or compensation starts."""

    at: float
    reason: str = "paused by an operator"


@dataclass(frozen=True, slots=True)
class UnpauseRequested:
    """An operator lets a paused saga go on: what the pause held back starts."""

    at: float


@dataclass(frozen=True, slots=True)
class RollbackRequested:
    """The parent of a ``succeeded`` sub-saga compensates the step that ran
    it: every completed step of this saga is compensated, as after a
    failure, and it ends ``compensated`` (or ``compensation_failed``).
    Refused past the pivot."""

    at: float
    reason: str = "rolled back by its parent"


@dataclass(frozen=True, slots=True)
class CompensationRetryRequested:
    """An operator fixed what broke the compensation of ``step``, which
    failed for good: it runs again (a fresh budget), alone; the others that
    failed stay as they are (``ResumeRequested`` retries them all)."""

    step: str
    at: float


@dataclass(frozen=True, slots=True)
class LocksAcquired:
    """The store granted ``step`` its locks in the commit that starts it:
    ``keys`` are what its ``Lock`` declarations rendered to, in their order."""

    step: str
    keys: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class StepMarkedCompensated:
    """An operator undid ``step`` by hand, outside the saga: its
    compensation counts as succeeded without running, and the rollback
    goes on."""

    step: str
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class CompensationSkipped:
    """An operator decided that ``step`` stays done: its compensation will
    not run (the step is ``compensation_skipped``), and the rollback goes
    on without it."""

    step: str
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class SagaForked:
    """A new instance forked from another one's recorded results (the steps
    before the one it re-runs from are succeeded already) starts: every
    step that may start does."""

    at: float


Repair = CompensationRetryRequested | StepMarkedCompensated | CompensationSkipped
"""The operator actions on one compensation."""


@dataclass(frozen=True, slots=True)
class LocksBusy:
    """Some of ``step``'s ``keys`` are held by other sagas, or others queue
    for them first: ``holders`` names, by busy key, the saga in the way.
    ``deadlock`` lists the sagas of the wait-for cycle that waiting would
    close (then the step fails instead)."""

    step: str
    keys: tuple[str, ...]
    holders: Mapping[str, str]
    at: float
    deadlock: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class LockKeyFailed:
    """A lock key of ``step`` could not be rendered (a field names nothing):
    the step fails without running."""

    step: str
    error: ErrorInfo
    at: float


@dataclass(frozen=True, slots=True)
class LocksFreed:
    """The keys a waiting step queues for may be free now: the steps that
    wait ask for their locks again."""

    at: float


@dataclass(frozen=True, slots=True)
class LockReleaseRequested:
    """An operator releases ``key`` from the saga that holds it (which goes
    on without it)."""

    key: str
    at: float
    reason: str
    by: str = "operator"


Event = (
    CancelRequested
    | RollbackRequested
    | PauseRequested
    | UnpauseRequested
    | ResumeRequested
    | RetryRequested
    | CompensationRetryRequested
    | StepMarkedCompensated
    | CompensationSkipped
    | SagaForked
    | DeadlinePassed
    | SagaStarted
    | SagaResumed
    | StepSucceeded
    | StepAttemptFailed
    | CompensationSucceeded
    | CompensationAttemptFailed
    | LocksAcquired
    | LocksBusy
    | LockKeyFailed
    | LocksFreed
    | LockReleaseRequested
)
