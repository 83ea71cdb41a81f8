"""Saga and step state: immutable values the engine maps to new values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sagakit.engine.lockstate import LockState
from sagakit.engine.status import SagaStatus as SagaStatus  # noqa: PLC0414 - old home
from sagakit.engine.status import StepStatus as StepStatus  # noqa: PLC0414 - old home
from sagakit.errors import ErrorInfo as ErrorInfo  # noqa: PLC0414 - old home

_STEP_RUNNING = StepStatus.RUNNING
_STEP_COMPENSATING = StepStatus.COMPENSATING
_KEEP: Any = object()
"""A field ``but`` leaves as it is (a field may be changed to None)."""
_new = object.__new__

INTERRUPTED = ErrorInfo(
    "Interrupted", "the worker stopped while the step ran; its outcome is unknown"
)


@dataclass(frozen=True, slots=True)
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    result: Any = None
    error: ErrorInfo | None = None
    deadline: float | None = None
    """When a remote action or compensation stops waiting for its reply."""
    retry_base: int = 0
    """Attempts made before the last operator retry (the policy counts after)."""
    compensation_retry_base: int = 0
    crashes: int = 0
    """Takeovers that found this step's local run (or compensation) in
    flight: its process stopped (crashed) while it ran. An unpause resets it."""

    def but(
        self,
        *,
        status: Any = _KEEP,
        attempts: Any = _KEEP,
        compensation_attempts: Any = _KEEP,
        result: Any = _KEEP,
        error: Any = _KEEP,
        deadline: Any = _KEEP,
        retry_base: Any = _KEEP,
        compensation_retry_base: Any = _KEEP,
        crashes: Any = _KEEP,
        **unknown: Any,
    ) -> StepState:
        """A copy with the fields given changed (``dataclasses.replace`` at
        a fifth of its cost: the engine's hottest path). It fills the slots
        of a new instance directly, as a pickle would, rather than through
        the frozen ``__init__`` (an ``object.__setattr__`` call a field)."""
        if unknown:
            raise TypeError(f"StepState has no field(s) {sorted(unknown)}")
        new = _new(StepState)
        _set_step_status(new, self.status if status is _KEEP else status)
        _set_attempts(new, self.attempts if attempts is _KEEP else attempts)
        _set_compensation_attempts(
            new,
            self.compensation_attempts
            if compensation_attempts is _KEEP
            else compensation_attempts,
        )
        _set_result(new, self.result if result is _KEEP else result)
        _set_step_error(new, self.error if error is _KEEP else error)
        _set_deadline(new, self.deadline if deadline is _KEEP else deadline)
        _set_retry_base(new, self.retry_base if retry_base is _KEEP else retry_base)
        _set_compensation_retry_base(
            new,
            self.compensation_retry_base
            if compensation_retry_base is _KEEP
            else compensation_retry_base,
        )
        _set_crashes(new, self.crashes if crashes is _KEEP else crashes)
        return new

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value}
        if self.deadline is not None:
            out["deadline"] = self.deadline
        if self.retry_base:
            out["retry_base"] = self.retry_base
        if self.compensation_retry_base:
            out["compensation_retry_base"] = self.compensation_retry_base
        if self.crashes:
            out["crashes"] = self.crashes
        if self.attempts:
            out["attempts"] = self.attempts
        if self.compensation_attempts:
            out["compensation_attempts"] = self.compensation_attempts
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepState:
        return cls(
            status=StepStatus(data["status"]),
            attempts=data.get("attempts", 0),
            compensation_attempts=data.get("compensation_attempts", 0),
            result=data.get("result"),
            error=ErrorInfo.from_dict(data.get("error")),
            deadline=data.get("deadline"),
            retry_base=data.get("retry_base", 0),
            compensation_retry_base=data.get("compensation_retry_base", 0),
            crashes=data.get("crashes", 0),
        )


@dataclass(frozen=True, slots=True)
class ParentLink:
    """The saga instance (and its step) that runs this one as a sub-saga."""

    saga_id: str
    step: str

    def to_dict(self) -> dict[str, str]:
        return {"saga_id": self.saga_id, "step": self.step}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ParentLink | None:
        return None if data is None else cls(data["saga_id"], data["step"])


@dataclass(frozen=True, slots=True)
class SagaState:
    """Everything the engine needs to decide what happens next.

    ``completed`` lists steps in the order they finished (successes, plus failed
    steps whose own compensation must run); ``compensations`` lists the
    compensations that have not succeeded yet, last completed step first, or
    is ``None`` before rollback starts: those whose step is ``COMPENSATING``
    are in flight, those ``COMPENSATION_FAILED`` failed for good, the
    others wait for everything downstream of their step to be undone.
    (States written by the stage engine, whose queue ran head first, read
    the same way.) ``stage`` is the highest stage (``Saga.stages`` index)
    started, kept for storage and display.
    ``failed_step``/``error`` keep the first failure;
    ``compensation_step``/``compensation_error`` the first compensation that
    failed for good, ``later_compensation_errors`` the others (all of them:
    ``compensation_errors``).
    """

    saga_id: str
    saga_name: str
    status: SagaStatus = SagaStatus.RUNNING
    stage: int = 0
    steps: dict[str, StepState] = field(default_factory=dict)
    completed: tuple[str, ...] = ()
    compensations: tuple[str, ...] | None = None
    failed_step: str | None = None
    error: ErrorInfo | None = None
    compensation_step: str | None = None
    compensation_error: ErrorInfo | None = None
    paused: bool = False
    """An operator paused the saga: outcomes are recorded, nothing new starts."""
    held: tuple[str, ...] = ()
    """Steps whose run (or compensation) the pause held back, in issue order."""
    held_due: dict[str, float] = field(default_factory=dict)
    """When each held retry was due (the time it was decided plus its
    backoff), by step: an unpause waits out what is left of it."""
    later_compensation_errors: tuple[tuple[str, ErrorInfo], ...] = ()
    """(step, error) of each compensation that failed for good after the
    first (``compensation_step``/``compensation_error``), in order."""
    parent: ParentLink | None = None
    """The saga that runs this one as a sub-saga, if one does."""
    parked: str | None = None
    """Why the saga paused itself (a poison step: see ``SagaResumed``);
    None when it did not. Cleared by an unpause."""
    locks: LockState | None = None
    """The semantic locks it holds and waits for (None: none at all)."""

    def step(self, name: str) -> StepState:
        return self.steps.get(name) or StepState()

    def with_step(self, name: str, **changes: Any) -> SagaState:
        """A copy whose step ``name`` has ``changes`` (see :meth:`StepState.but`)."""
        steps = dict(self.steps)
        steps[name] = (self.steps.get(name) or _PENDING).but(**changes)
        return self.but(steps=steps)

    def but(
        self,
        *,
        status: Any = _KEEP,
        stage: Any = _KEEP,
        steps: Any = _KEEP,
        completed: Any = _KEEP,
        compensations: Any = _KEEP,
        failed_step: Any = _KEEP,
        error: Any = _KEEP,
        compensation_step: Any = _KEEP,
        compensation_error: Any = _KEEP,
        paused: Any = _KEEP,
        held: Any = _KEEP,
        held_due: Any = _KEEP,
        later_compensation_errors: Any = _KEEP,
        parent: Any = _KEEP,
        parked: Any = _KEEP,
        locks: Any = _KEEP,
        **unknown: Any,
    ) -> SagaState:
        """A copy with the fields given changed: ``dataclasses.replace`` for
        the engine's hot path, at a tenth of its cost (the slots of a new
        instance filled directly, see :meth:`StepState.but`)."""
        if unknown:
            raise TypeError(f"SagaState has no field(s) {sorted(unknown)}")
        new = _new(SagaState)
        _set_saga_id(new, self.saga_id)
        _set_saga_name(new, self.saga_name)
        _set_saga_status(new, self.status if status is _KEEP else status)
        _set_stage(new, self.stage if stage is _KEEP else stage)
        _set_steps(new, self.steps if steps is _KEEP else steps)
        _set_completed(new, self.completed if completed is _KEEP else completed)
        _set_compensations(
            new,
            self.compensations if compensations is _KEEP else compensations,
        )
        _set_failed_step(new, self.failed_step if failed_step is _KEEP else failed_step)
        _set_saga_error(new, self.error if error is _KEEP else error)
        _set_compensation_step(
            new,
            self.compensation_step if compensation_step is _KEEP else compensation_step,
        )
        _set_compensation_error(
            new,
            self.compensation_error
            if compensation_error is _KEEP
            else compensation_error,
        )
        _set_paused(new, self.paused if paused is _KEEP else paused)
        _set_held(new, self.held if held is _KEEP else held)
        _set_held_due(new, self.held_due if held_due is _KEEP else held_due)
        _set_later_compensation_errors(
            new,
            self.later_compensation_errors
            if later_compensation_errors is _KEEP
            else later_compensation_errors,
        )
        _set_parent(new, self.parent if parent is _KEEP else parent)
        _set_parked(new, self.parked if parked is _KEEP else parked)
        _set_locks(new, self.locks if locks is _KEEP else locks)
        return new

    @property
    def compensation_errors(self) -> tuple[tuple[str, ErrorInfo], ...]:
        """(step, error) of every compensation that failed for good, first
        failure first."""
        if self.compensation_step is None or self.compensation_error is None:
            return self.later_compensation_errors
        first = (self.compensation_step, self.compensation_error)
        return (first, *self.later_compensation_errors)

    @property
    def next_deadline(self) -> float | None:
        """The earliest reply deadline of a step still waiting, if any."""
        earliest = None
        for s in self.steps.values():
            deadline = s.deadline
            if deadline is None or (earliest is not None and deadline >= earliest):
                continue
            if s.status is _STEP_RUNNING or s.status is _STEP_COMPENSATING:
                earliest = deadline
        return earliest

    @property
    def results(self) -> dict[str, Any]:
        return {
            name: s.result
            for name, s in self.steps.items()
            if s.status is not StepStatus.PENDING and s.result is not None
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "saga_id": self.saga_id,
            "saga_name": self.saga_name,
            "status": self.status.value,
            "stage": self.stage,
            "steps": {k: v.to_dict() for k, v in self.steps.items()},
            "completed": list(self.completed),
            "compensations": None
            if self.compensations is None
            else list(self.compensations),
            "failed_step": self.failed_step,
            "error": self.error.to_dict() if self.error else None,
            "compensation_step": self.compensation_step,
            "compensation_error": (
                self.compensation_error.to_dict() if self.compensation_error else None
            ),
        }
        if self.paused:  # absent when not paused: older states load unchanged
            out["paused"] = True
        if self.held:
            out["held"] = list(self.held)
        if self.held_due:
            out["held_due"] = dict(self.held_due)
        if self.later_compensation_errors:  # absent when none: as before it
            out["later_compensation_errors"] = [
                {"step": step, "error": error.to_dict()}
                for step, error in self.later_compensation_errors
            ]
        if self.parent is not None:  # absent for a saga no other one runs
            out["parent"] = self.parent.to_dict()
        if self.parked is not None:
            out["parked"] = self.parked
        if self.locks is not None:  # absent without locks: as before them
            out["locks"] = self.locks.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SagaState:
        comps = data.get("compensations")
        later = tuple(
            (e["step"], ErrorInfo(**e["error"]))
            for e in data.get("later_compensation_errors", ())
        )
        return cls(
            saga_id=data["saga_id"],
            saga_name=data["saga_name"],
            status=SagaStatus(data["status"]),
            stage=data["stage"],
            steps={k: StepState.from_dict(v) for k, v in data["steps"].items()},
            completed=tuple(data["completed"]),
            compensations=None if comps is None else tuple(comps),
            failed_step=data.get("failed_step"),
            error=ErrorInfo.from_dict(data.get("error")),
            compensation_step=data.get("compensation_step"),
            compensation_error=ErrorInfo.from_dict(data.get("compensation_error")),
            paused=data.get("paused", False),
            held=tuple(data.get("held", ())),
            held_due=dict(data.get("held_due", {})),
            later_compensation_errors=later,
            parent=ParentLink.from_dict(data.get("parent")),
            parked=data.get("parked"),
            locks=LockState.from_dict(data.get("locks")),
        )


_PENDING = StepState()


def _slot(cls: type, name: str) -> Callable[[Any, Any], None]:
    """What sets slot ``name`` of a ``cls`` instance (frozen or not)."""
    setter: Callable[[Any, Any], None] = cls.__dict__[name].__set__
    return setter


_set_step_status = _slot(StepState, "status")
_set_attempts = _slot(StepState, "attempts")
_set_compensation_attempts = _slot(StepState, "compensation_attempts")
_set_result = _slot(StepState, "result")
_set_step_error = _slot(StepState, "error")
_set_deadline = _slot(StepState, "deadline")
_set_retry_base = _slot(StepState, "retry_base")
_set_compensation_retry_base = _slot(StepState, "compensation_retry_base")
_set_crashes = _slot(StepState, "crashes")
_set_saga_id = _slot(SagaState, "saga_id")
_set_saga_name = _slot(SagaState, "saga_name")
_set_saga_status = _slot(SagaState, "status")
_set_stage = _slot(SagaState, "stage")
_set_steps = _slot(SagaState, "steps")
_set_completed = _slot(SagaState, "completed")
_set_compensations = _slot(SagaState, "compensations")
_set_failed_step = _slot(SagaState, "failed_step")
_set_saga_error = _slot(SagaState, "error")
_set_compensation_step = _slot(SagaState, "compensation_step")
_set_compensation_error = _slot(SagaState, "compensation_error")
_set_paused = _slot(SagaState, "paused")
_set_held = _slot(SagaState, "held")
_set_held_due = _slot(SagaState, "held_due")
_set_later_compensation_errors = _slot(SagaState, "later_compensation_errors")
_set_parent = _slot(SagaState, "parent")
_set_parked = _slot(SagaState, "parked")
_set_locks = _slot(SagaState, "locks")
