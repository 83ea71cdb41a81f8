"""Sub-sagas: a step that runs another saga as a durable child instance.

::

    Step("pay", SubSaga(payment, context=lambda order: Payment(amount=order.total)))

When the step runs, an instance of ``payment`` (the child) is created with
the id ``<parent id>/<step>``, recording its parent (saga id and step); the
step succeeds when the child succeeds, with the child's results (or what
``output`` makes of them) as its result, and fails when the child ends
otherwise, with the child's error.

The step's compensation is the child's rollback: a child that succeeded is
compensated as a whole, every completed step of it undone, and the parent's
compensation succeeds once the child ends ``compensated``. A child that has
a pivot cannot be rolled back once it succeeded, so such a step has no
compensation (it is not undone, like any step without one) unless it
declares its own ``compensate=`` (a callable or a ``Remote``: a semantic
undo, such as a refund, which then runs instead of a rollback).

A sub-saga step cannot have a retry policy or timeouts (the child's steps
have their own) nor ``compensate_on_failure`` (a failed child has rolled
itself back already).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from sagakit.definition.retry import COMPENSATION_RETRY, NO_RETRY
from sagakit.definition.signature import RESULTS, UNKNOWN, CallShape, call_shape
from sagakit.errors import DefinitionError

if TYPE_CHECKING:
    from sagakit.definition.saga import Saga
    from sagakit.definition.step import Step

CC = TypeVar("CC", bound=BaseModel)


@dataclass(frozen=True, slots=True, init=False)
class SubSaga(Generic[CC]):
    """Run ``saga`` as a child instance of the step that holds this action.

    ``context(parent_ctx)`` builds the child's context (a model of the
    child's context class, or a dict validated as one); without it the
    parent's context data is validated as the child's context.
    ``output(child_ctx)`` makes the step's result (JSON-able) from the child
    that succeeded; without it the result is the child's results, by step
    name. Either may declare a parameter named ``results``: ``context``
    then gets the results of the parent's earlier steps, ``output`` those of
    the child's steps (a :class:`~sagakit.engine.results.Results`).
    """

    saga: Saga[CC]
    context: Callable[..., CC | Mapping[str, Any]] | None
    output: Callable[..., Any] | None
    context_wants_results: bool
    output_wants_results: bool

    def __init__(
        self,
        saga: Saga[CC],
        *,
        context: Callable[..., CC | Mapping[str, Any]] | None = None,
        output: Callable[..., Any] | None = None,
    ) -> None:
        from sagakit.definition.saga import Saga  # noqa: PLC0415 - a cycle

        if not isinstance(saga, Saga):
            raise DefinitionError(f"SubSaga() takes a Saga, got {saga!r}")
        name = saga.name
        wants = []
        for what, fn, takes in (
            ("context", context, "the parent's context"),
            ("output", output, "the child's context"),
        ):
            shape = _shape(fn)
            if not shape.accepts(1):
                raise DefinitionError(
                    f"SubSaga({name!r}): {what} must take {takes}, and may take "
                    f"the results of steps as a parameter named {RESULTS!r}"
                )
            wants.append(shape.results)
        object.__setattr__(self, "saga", saga)
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "context_wants_results", wants[0])
        object.__setattr__(self, "output_wants_results", wants[1])

    def __repr__(self) -> str:
        return f"SubSaga({self.saga.name!r} v{self.saga.version})"


def _shape(fn: object) -> CallShape:
    if fn is None:
        return UNKNOWN
    if not callable(fn):
        return CallShape(maximum=0, required=1)  # accepts nothing
    return call_shape(fn)


def check_step(step: Step) -> None:
    """Refuse what a sub-saga step cannot have, and make the child's
    rollback its compensation when it has none (see the module)."""
    sub = step.action
    assert isinstance(sub, SubSaga)  # noqa: S101 - the caller checks
    where = f"step {step.name!r} (sub-saga {sub.saga.name!r})"
    for attr in ("timeout", "compensation_timeout"):
        if getattr(step, attr) is not None:
            raise DefinitionError(
                f"{where}: a sub-saga step has no {attr} (give the child's steps "
                "timeouts)"
            )
    if step.output is not None:
        raise DefinitionError(
            f"{where}: the result of a sub-saga step is made by "
            "SubSaga(..., output=...)"
        )
    if step.retry != NO_RETRY:
        raise DefinitionError(
            f"{where}: a sub-saga step is not retried (the child's steps have "
            "their retry policies)"
        )
    if step.compensate_on_failure:
        raise DefinitionError(
            f"{where}: compensate_on_failure does not apply (a child that failed "
            "has rolled itself back)"
        )
    if isinstance(step.compensate, SubSaga):
        if step.compensate is not sub:
            raise DefinitionError(
                f"{where}: compensate cannot be another sub-saga (the step's own "
                "child is rolled back by default)"
            )
        if sub.saga.pivot is not None:
            raise DefinitionError(
                f"{where}: a child with a pivot cannot be rolled back once it "
                "succeeded; give the step its own compensate="
            )
    if step.compensate is None and not step.pivot and sub.saga.pivot is None:
        object.__setattr__(step, "compensate", sub)
    if step.compensate is sub and step.compensation_retry != COMPENSATION_RETRY:
        raise DefinitionError(
            f"{where}: the rollback of a child is not retried (the child's "
            "compensations have their retry policies)"
        )


def children_of(steps: list[Step]) -> dict[str, Saga[Any]]:
    """The child saga of each sub-saga step, by step name."""
    return {s.name: s.action.saga for s in steps if isinstance(s.action, SubSaga)}


def check_cycles(name: str, children: Mapping[str, Saga[Any]]) -> None:
    """``DefinitionError`` if saga ``name`` contains itself through its
    ``children`` (by name: a child of the same name would start itself again
    at run time), naming the path as ``saga.step`` hops."""
    path = _path_to(name, children)
    if path is None:
        return
    hops, saga = [], name
    for step, child in path:
        hops.append(f"{saga}.{step}")
        saga = child
    raise DefinitionError(
        f"saga {name!r} contains itself: {' -> '.join([*hops, name])} "
        "(a sub-saga cannot run a saga it is part of)"
    )


def _path_to(
    name: str, children: Mapping[str, Saga[Any]]
) -> list[tuple[str, str]] | None:
    """(step, child saga) hops from ``children`` down to a saga ``name``."""
    for step, child in children.items():
        if child.name == name:
            return [(step, child.name)]
        below = _path_to(name, child.children)
        if below is not None:
            return [(step, child.name), *below]
    return None


def family(children: Mapping[str, Saga[Any]]) -> list[Saga[Any]]:
    """Every saga below ``children``, each once, parents before children."""
    found: list[Saga[Any]] = []
    for child in children.values():
        for saga in (child, *child.family):
            if not any(saga is seen for seen in found):
                found.append(saga)
    return found


def has_remote_steps(saga: Saga[Any]) -> bool:
    """Some step of ``saga`` or of its sub-sagas sends a command."""
    return saga.sends or any(one.sends for one in saga.family)
