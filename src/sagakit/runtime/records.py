"""The records a driver writes at every transition, built at a plain
class's cost.

A frozen dataclass's ``__init__`` stores each field with an
``object.__setattr__`` call (its own ``__setattr__`` refuses), which is
most of what making a ``HistoryEntry`` or a ``SagaRecord`` costs. These
builders fill the slots of a new instance directly, as a pickle does, with
the values the constructor would store: equal records (a unit test
compares them field by field). A field the port gains later is set to its
default after the others (see :func:`_rest`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from sagakit.engine.events import StepSucceeded
from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.ports.store import HistoryEntry, SagaRecord

_new = object.__new__


def _setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    setter: Callable[[Any, Any], None] = cls.__dict__[name].__set__
    return setter


def _rest(cls: type, given: tuple[str, ...]) -> tuple[tuple[Any, Any], ...]:
    """(setter, default) of each field of ``cls`` a builder does not set."""
    rest = []
    for f in fields(cls):
        if f.name in given:
            continue
        if f.default is MISSING:  # a factory's value would be shared: refuse
            raise TypeError(f"{cls.__name__}.{f.name}: no plain default to build with")
        rest.append((_setter(cls, f.name), f.default))
    return tuple(rest)


_H = (
    "saga_id",
    "step",
    "kind",
    "attempt",
    "outcome",
    "started_at",
    "finished_at",
    "result",
    "error",
)
_h0, _h1, _h2, _h3, _h4, _h5, _h6, _h7, _h8 = (_setter(HistoryEntry, n) for n in _H)
_H_REST = _rest(HistoryEntry, _H)


def history_line(  # noqa: PLR0917 - the record's fields, in order
    saga_id: str,
    step: str | None,
    kind: str,
    attempt: int,
    outcome: str,
    started_at: float,
    finished_at: float,
    result: Any = None,
    error: ErrorInfo | None = None,
) -> HistoryEntry:
    """``HistoryEntry(saga_id=saga_id, step=step, ...)``."""
    new = _new(HistoryEntry)
    _h0(new, saga_id)
    _h1(new, step)
    _h2(new, kind)
    _h3(new, attempt)
    _h4(new, outcome)
    _h5(new, started_at)
    _h6(new, finished_at)
    _h7(new, result)
    _h8(new, error)
    for setter, default in _H_REST:
        setter(new, default)
    return new


def saga_line(
    saga_id: str, outcome: str, at: float, result: Any = None
) -> HistoryEntry:
    """:func:`sagakit.ports.store.saga_line`, built as above."""
    return history_line(saga_id, None, "saga", 0, outcome, at, at, result, None)


_R = (
    "saga_id",
    "saga_name",
    "status",
    "version",
    "state",
    "context",
    "idempotency_key",
    "created_at",
    "updated_at",
    "deadline",
    "definition_version",
    "fingerprint",
)
_r0, _r1, _r2, _r3, _r4, _r5, _r6, _r7, _r8, _r9, _r10, _r11 = (
    _setter(SagaRecord, n) for n in _R
)
_R_REST = _rest(SagaRecord, _R)


def saga_record(  # noqa: PLR0917 - the record's fields, in order
    saga_id: str,
    saga_name: str,
    status: SagaStatus,
    version: int,
    state: SagaState,
    context: dict[str, Any],
    idempotency_key: str | None,
    created_at: float,
    updated_at: float,
    deadline: float | None,
    definition_version: int,
    fingerprint: str | None,
) -> SagaRecord:
    """``SagaRecord(saga_id=saga_id, ...)``, the other fields (``waiting``,
    ``previous_owner``) at their defaults."""
    new = _new(SagaRecord)
    _r0(new, saga_id)
    _r1(new, saga_name)
    _r2(new, status)
    _r3(new, version)
    _r4(new, state)
    _r5(new, context)
    _r6(new, idempotency_key)
    _r7(new, created_at)
    _r8(new, updated_at)
    _r9(new, deadline)
    _r10(new, definition_version)
    _r11(new, fingerprint)
    for setter, default in _R_REST:
        setter(new, default)
    return new


_e0, _e1, _e2, _e3 = (
    _setter(StepSucceeded, n) for n in ("step", "result", "at", "attempt")
)


def step_succeeded(step: str, result: Any, at: float) -> StepSucceeded:
    """``StepSucceeded(step, result, at)`` (no attempt: a local run's)."""
    new = _new(StepSucceeded)
    _e0(new, step)
    _e1(new, result)
    _e2(new, at)
    _e3(new, None)
    return new
