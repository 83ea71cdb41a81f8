"""The pure, deterministic saga engine: state + event -> new state + commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.engine.commands import (
        AcquireLocks,
        CancelSteps,
        Command,
        Compensate,
        Decision,
        FinishSaga,
        RunStep,
        SendCancel,
    )
    from sagakit.engine.decide import decide, initial_state
    from sagakit.engine.events import (
        CancelRequested,
        CompensationAttemptFailed,
        CompensationSucceeded,
        DeadlinePassed,
        Event,
        LockKeyFailed,
        LockReleaseRequested,
        LocksAcquired,
        LocksBusy,
        LocksFreed,
        PauseRequested,
        ResumeRequested,
        RetryRequested,
        RollbackRequested,
        SagaResumed,
        SagaStarted,
        StepAttemptFailed,
        StepSucceeded,
        UnpauseRequested,
    )
    from sagakit.engine.state import (
        ErrorInfo,
        SagaState,
        SagaStatus,
        StepState,
        StepStatus,
    )

__all__ = [
    "AcquireLocks",
    "CancelRequested",
    "CancelSteps",
    "Command",
    "Compensate",
    "CompensationAttemptFailed",
    "CompensationSucceeded",
    "DeadlinePassed",
    "Decision",
    "ErrorInfo",
    "Event",
    "FinishSaga",
    "LockKeyFailed",
    "LockReleaseRequested",
    "LocksAcquired",
    "LocksBusy",
    "LocksFreed",
    "PauseRequested",
    "ResumeRequested",
    "RetryRequested",
    "RollbackRequested",
    "RunStep",
    "SagaResumed",
    "SagaStarted",
    "SagaState",
    "SagaStatus",
    "SendCancel",
    "StepAttemptFailed",
    "StepState",
    "StepStatus",
    "StepSucceeded",
    "UnpauseRequested",
    "decide",
    "initial_state",
]

lazy_exports(
    __name__,
    {
        "sagakit.engine.commands": (
            "AcquireLocks",
            "CancelSteps",
            "Command",
            "Compensate",
            "Decision",
            "FinishSaga",
            "RunStep",
            "SendCancel",
        ),
        "sagakit.engine.decide": (
            "decide",
            "initial_state",
        ),
        "sagakit.engine.events": (
            "CancelRequested",
            "CompensationAttemptFailed",
            "CompensationSucceeded",
            "DeadlinePassed",
            "Event",
            "LockKeyFailed",
            "LockReleaseRequested",
            "LocksAcquired",
            "LocksBusy",
            "LocksFreed",
            "PauseRequested",
            "ResumeRequested",
            "RetryRequested",
            "RollbackRequested",
            "SagaResumed",
            "SagaStarted",
            "StepAttemptFailed",
            "StepSucceeded",
            "UnpauseRequested",
        ),
        "sagakit.engine.state": (
            "ErrorInfo",
            "SagaState",
            "SagaStatus",
            "StepState",
            "StepStatus",
        ),
    },
)
