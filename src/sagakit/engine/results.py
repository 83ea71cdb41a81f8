"""``Results``: what earlier steps returned, as a step sees it.

A step function (action, compensation or ``Remote`` payload builder) that
declares a parameter named ``results`` gets one of these::

    def approve_ticket(ctx: Order, results: Results) -> ApproveTicket:
        ticket = results.get("create_ticket", TicketCreated)
        return ApproveTicket(ticket_id=ticket.ticket_id)

It reads the saga state the call was issued with: the results recorded per
step, the same after a crash and recovery. Building one copies nothing;
only what a step asks for is looked up and validated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from sagakit.definition.saga import Saga
from sagakit.definition.signature import RESULTS
from sagakit.engine.state import SagaState, StepState, StepStatus
from sagakit.errors import ResultError

T = TypeVar("T")

_UNDONE = frozenset(
    {
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATION_FAILED,
        StepStatus.COMPENSATION_SKIPPED,
    }
)
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _visible(step: StepState) -> bool:
    """Whether ``step``'s action succeeded: it is succeeded, or it recorded a
    result before its compensation started (a step that failed has none)."""
    return step.status is StepStatus.SUCCEEDED or (
        step.status in _UNDONE and step.result is not None
    )


def validate(model: type[T], value: Any) -> T:
    """``value`` (JSON data) as an instance of ``model``: a pydantic model or
    any type pydantic can validate (``int``, a dataclass, ``list[str]``...)."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_validate(value)
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    return adapter.validate_python(value)  # type: ignore[no-any-return]


def first_error(exc: ValidationError, whole: str = "value") -> str:
    """The first problem pydantic found, as ``where: what`` (``whole`` when
    it is about the value itself)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {first['msg']}"


class Results:
    """The results of the steps that completed before a call, read-only.

    ``results["step"]`` is the recorded JSON, ``results.get("step", Model)``
    the same validated as ``Model``, ``results.get("step")`` it as the
    step's declared output model (``Step(output=...)`` or the ``reply`` of a
    ``Remote``) if it has one, else the JSON. ``"step" in results``,
    ``len(results)`` and iteration (step names, in the order the steps
    started) see only steps whose action succeeded; a step being (or since)
    compensated is still there when it recorded a result. Asking for any
    other step raises :class:`~sagakit.errors.ResultError` naming it.
    """

    __slots__ = ("_saga", "_state")

    def __init__(self, saga: Saga[Any], state: SagaState) -> None:
        self._saga = saga
        self._state = state

    def _step(self, step: str) -> StepState:
        found = self._state.steps.get(step)
        if found is not None and _visible(found):
            return found
        state = self._state
        if not self._saga.has_step(step):
            why = f"saga {self._saga.name!r} has no step {step!r}"
        elif found is None or found.status is StepStatus.PENDING:
            why = f"step {step!r} has not run yet"
        else:
            why = f"step {step!r} has no result: it is {found.status.value}"
        done = ", ".join(repr(name) for name in self) or "none"
        raise ResultError(
            f"saga {state.saga_id}: {why} (steps with results: {done})",
            saga_id=state.saga_id,
            step=step,
        )

    def __getitem__(self, step: str) -> Any:
        """The JSON ``step`` recorded as its result."""
        return self._step(step).result

    @overload
    def get(self, step: str) -> Any: ...

    @overload
    def get(self, step: str, model: type[T]) -> T: ...

    def get(self, step: str, model: type[T] | None = None) -> Any:
        """``step``'s result validated as ``model`` (by default the step's
        declared output model; the recorded JSON when it has none)."""
        value = self._step(step).result
        if model is None:
            declared = None
            if self._saga.has_step(step):
                declared = self._saga.step(step).output_model
            if declared is None:
                return value
            model = declared  # type: ignore[assignment]
        assert model is not None  # noqa: S101 - for mypy
        try:
            return validate(model, value)
        except ValidationError as exc:
            name = getattr(model, "__name__", repr(model))
            raise ResultError(
                f"saga {self._state.saga_id}: the result of step {step!r} is "
                f"not a valid {name} ({first_error(exc)})",
                saga_id=self._state.saga_id,
                step=step,
            ) from exc

    def __contains__(self, step: object) -> bool:
        found = self._state.steps.get(step) if isinstance(step, str) else None
        return found is not None and _visible(found)

    def __iter__(self) -> Iterator[str]:
        return (name for name, s in self._state.steps.items() if _visible(s))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def keys(self) -> list[str]:
        """The steps with a result (so ``dict(results)`` works)."""
        return list(self)

    def __repr__(self) -> str:
        return f"Results({', '.join(self)})"


_NO_KWARGS: Mapping[str, Any] = {}
"""Shared and never written (``**`` copies it): a plain dict, since unpacking
a ``MappingProxyType`` costs ten times as much."""


def results_kwargs(
    saga: Saga[Any], state: SagaState, *, wanted: bool
) -> Mapping[str, Any]:
    """The keyword arguments of a step function: ``results`` if it declared
    the parameter (nothing is built otherwise)."""
    return {RESULTS: Results(saga, state)} if wanted else _NO_KWARGS
