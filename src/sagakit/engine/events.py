"""Events: facts that happened, in the past tense. Time arrives in ``at``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagakit.engine.state import ErrorInfo


@dataclass(frozen=True, slots=True)
class SagaStarted:
    at: float


@dataclass(frozen=True, slots=True)
class SagaResumed:
    """A worker picked up an unfinished saga (after a crash or restart)."""

    at: float


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    """``attempt``, when given, must be the step's current attempt: a reply to an
    earlier attempt is stale."""

    step: str
    result: Any
    at: float
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    """A step attempt failed. ``retryable`` is the policy's verdict on the error
    (budget aside); ``jitter`` is a sample in [0, 1) used for the backoff."""

    step: str
    error: ErrorInfo
    retryable: bool
    at: float
    jitter: float = 0.0
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    step: str
    at: float
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class CompensationFailed:
    step: str
    error: ErrorInfo
    retryable: bool
    at: float
    jitter: float = 0.0
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The clock reached ``at``: remote steps whose reply deadline is due fail
    with ``ReplyTimeout`` (and retry if their policy retries ``TimeoutError``)."""

    at: float
    jitter: float = 0.0


Event = (
    DeadlinePassed
    | SagaStarted
    | SagaResumed
    | StepSucceeded
    | StepFailed
    | CompensationSucceeded
    | CompensationFailed
)
