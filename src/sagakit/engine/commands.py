"""Commands: what the runtime must do next, in the imperative."""

from __future__ import annotations

from dataclasses import dataclass

from sagakit.engine.state import SagaStatus


@dataclass(frozen=True, slots=True)
class RunStep:
    step: str
    attempt: int
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Compensate:
    step: str
    attempt: int
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class FinishSaga:
    status: SagaStatus


Command = RunStep | Compensate | FinishSaga
