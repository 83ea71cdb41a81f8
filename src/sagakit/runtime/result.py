"""What a caller gets back when a saga ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus, StepStatus
from sagakit.errors import CompensationFailed, StepFailed

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True)
class SagaResult(Generic[C]):
    """The outcome of one saga instance.

    ``exception`` is the original exception of the failed step when it was
    raised in this process (``None`` after a restart; ``error`` always has the
    recorded description).

    ``compensation_errors`` lists (step, error) of every compensation that
    failed for good, ``compensation_step``/``compensation_error`` being the
    first. ``pivot_reached`` says whether the saga's pivot succeeded (the
    point of no return: it will not be compensated any more), and
    ``committed_past_pivot`` which steps after the pivot succeeded, in
    dependency order (both need the definition: empty without it).
    """

    saga_id: str
    saga_name: str
    status: SagaStatus
    context: C
    results: dict[str, Any]
    failed_step: str | None = None
    error: ErrorInfo | None = None
    compensation_step: str | None = None
    compensation_error: ErrorInfo | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    compensation_errors: tuple[tuple[str, ErrorInfo], ...] = ()
    pivot_reached: bool = False
    committed_past_pivot: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status is SagaStatus.SUCCEEDED

    @classmethod
    def from_state(
        cls,
        state: SagaState,
        context: C,
        exception: BaseException | None = None,
        *,
        saga: Saga[Any] | None = None,
    ) -> SagaResult[C]:
        """The result of ``state``; with its ``saga``, what the pivot did."""
        reached = False
        past: tuple[str, ...] = ()
        if saga is not None and saga.pivot is not None:
            reached = state.step(saga.pivot).status is StepStatus.SUCCEEDED
            below = saga.graph.descendants[saga.pivot]
            past = tuple(
                n
                for n in saga.graph.order
                if n in below and state.step(n).status is StepStatus.SUCCEEDED
            )
        # every field, in order, into the new instance's __dict__: the
        # frozen __init__ would store them one object.__setattr__ at a time
        result = object.__new__(cls)
        vars(result).update(
            saga_id=state.saga_id,
            saga_name=state.saga_name,
            status=state.status,
            context=context,
            results=state.results,
            failed_step=state.failed_step,
            error=state.error,
            compensation_step=state.compensation_step,
            compensation_error=state.compensation_error,
            exception=exception,
            compensation_errors=state.compensation_errors,
            pivot_reached=reached,
            committed_past_pivot=past,
        )
        return result

    def raise_for_status(self) -> SagaResult[C]:
        """Return self if the saga succeeded; else raise StepFailed (or its
        subclass CompensationFailed)."""
        if self.status is SagaStatus.SUCCEEDED:
            return self
        if self.status is SagaStatus.COMPENSATION_FAILED:
            failures = self.compensation_errors or (
                ((self.compensation_step or "?"), self.compensation_error),
            )
            undone = "; ".join(f"{step!r} failed ({e})" for step, e in failures)
            raise CompensationFailed(
                f"saga {self.saga_id} ({self.saga_name}): step "
                f"{self.failed_step!r} failed ({self.error}) and compensating "
                f"{undone}",
                saga_id=self.saga_id,
                step=self.failed_step,
                error=self.error,
                status=self.status.value,
                compensation_step=self.compensation_step,
                compensation_error=self.compensation_error,
                compensation_errors=self.compensation_errors,
            ) from self.exception
        if not self.status.terminal:
            raise StepFailed(
                f"saga {self.saga_id} ({self.saga_name}) has not finished: "
                f"{self.status.value}",
                saga_id=self.saga_id,
                step=None,
                error=None,
                status=self.status.value,
            )
        raise StepFailed(
            f"saga {self.saga_id} ({self.saga_name}) {self.status.value}: step "
            f"{self.failed_step!r} failed: {self.error}",
            saga_id=self.saga_id,
            step=self.failed_step,
            error=self.error,
            status=self.status.value,
        ) from self.exception
