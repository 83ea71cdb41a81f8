"""The pure, deterministic saga engine: state + event -> new state + commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagakit._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use: see sagakit._lazy
    from sagakit.engine.commands import (
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
        CompensationRetryRequested,
        CompensationSkipped,
        CompensationSucceeded,
        DeadlinePassed,
        Event,
        PauseRequested,
        ResumeRequested,
        RetryRequested,
        RollbackRequested,
        SagaForked,
        SagaResumed,
        SagaStarted,
        StepAttemptFailed,
        StepMarkedCompensated,
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
    "CancelRequested",
    "CancelSteps",
    "Command",
    "Compensate",
    "CompensationAttemptFailed",
    "CompensationRetryRequested",
    "CompensationSkipped",
    "CompensationSucceeded",
    "DeadlinePassed",
    "Decision",
    "ErrorInfo",
    "Event",
    "FinishSaga",
    "PauseRequested",
    "ResumeRequested",
    "RetryRequested",
    "RollbackRequested",
    "RunStep",
    "SagaForked",
    "SagaResumed",
    "SagaStarted",
    "SagaState",
    "SagaStatus",
    "SendCancel",
    "StepAttemptFailed",
    "StepMarkedCompensated",
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
            "CompensationRetryRequested",
            "CompensationSkipped",
            "CompensationSucceeded",
            "DeadlinePassed",
            "Event",
            "PauseRequested",
            "ResumeRequested",
            "RetryRequested",
            "RollbackRequested",
            "SagaForked",
            "SagaResumed",
            "SagaStarted",
            "StepAttemptFailed",
            "StepMarkedCompensated",
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
