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
    step: str
    result: Any
    at: float


@dataclass(frozen=True, slots=True)
class StepFailed:
    """A step attempt failed. ``retryable`` is the policy's verdict on the error
    (budget aside); ``jitter`` is a sample in [0, 1) used for the backoff."""

    step: str
    error: ErrorInfo
    retryable: bool
    at: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    step: str
    at: float


@dataclass(frozen=True, slots=True)
class CompensationFailed:
    step: str
    error: ErrorInfo
    retryable: bool
    at: float
    jitter: float = 0.0


Event = (
    SagaStarted
    | SagaResumed
    | StepSucceeded
    | StepFailed
    | CompensationSucceeded
    | CompensationFailed
)
