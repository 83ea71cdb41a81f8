"""The hooks the runtime calls so that traces and metrics can be collected.

:class:`Observer` is both the interface and the no-op default: every hook does
nothing, so an orchestrator without an observer pays a method call per hook
and imports nothing. Subclasses override what they need
(``OpenTelemetryObserver``, ``PrometheusObserver``); ``MultiObserver`` fans
out to several.

A saga's trace context (a *carrier*: ``{"traceparent": ...}``) is made when
the saga starts, stored with the saga's ``started`` history line, and handed
back to every later hook, in this process or in the worker that resumes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagakit.messaging.envelope import Envelope
    from sagakit.ports.store import HistoryEntry

STEP_KINDS = frozenset({"action", "compensation"})
"""History kinds that are a step outcome (the others are saga lines)."""


@dataclass(frozen=True, slots=True)
class StepRun:
    """One execution of a step's action or compensation."""

    saga: str
    saga_id: str
    step: str
    kind: str
    """``action`` or ``compensation``."""
    attempt: int


@dataclass(slots=True)
class SagaStart:
    """Filled while a saga instance is created: ``carrier`` is the trace
    context to store with it; ``created`` is False for a deduplicated start."""

    carrier: dict[str, str] = field(default_factory=dict)
    created: bool = False

    def __enter__(self) -> SagaStart:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class StepScope:
    """Open while a step (or a participant's handler) runs; told how it ended."""

    __slots__ = ()

    def ended(
        self,
        outcome: str,
        error: BaseException | None = None,
        description: str | None = None,
    ) -> None:
        """``outcome`` is ``succeeded`` or ``failed``; ``error`` what was raised."""

    def __enter__(self) -> StepScope:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NULL_SCOPE = StepScope()


class Observer:
    """No-op hooks; subclass and override the ones you need."""

    traces: bool = False
    """True if the hooks need the saga's stored trace carrier: a resumed saga
    then costs one history read to find it."""

    def saga_start(self, saga: str, saga_id: str) -> AbstractContextManager[SagaStart]:
        """Wraps the creation of an instance, in the caller's context."""
        return SagaStart()

    def saga_finished(
        self,
        saga: str,
        saga_id: str,
        status: str,
        failed_step: str | None,
        trace: Mapping[str, str] | None,
    ) -> None:
        """The instance reached an end status (again, after an operator's retry)."""

    def step(
        self, call: StepRun, trace: Mapping[str, str] | None
    ) -> AbstractContextManager[StepScope]:
        """Wraps one local execution of a step or compensation."""
        return _NULL_SCOPE

    def step_finished(self, saga: str, entry: HistoryEntry) -> None:
        """A step outcome was committed: local or remote, ``succeeded``,
        ``failed`` or ``timed_out`` (or ``sent``: a fire-and-forget
        compensation); ``entry.duration`` is how long it took."""

    def command_headers(
        self,
        call: StepRun,
        command: str,
        destination: str,
        trace: Mapping[str, str] | None,
    ) -> Mapping[str, str]:
        """Headers to add to the command message a remote step sends."""
        return {}

    def handling(
        self, service: str, message: Envelope
    ) -> AbstractContextManager[StepScope]:
        """Wraps a participant's handling of a command."""
        return _NULL_SCOPE

    def reply_received(
        self, saga: str, message: Envelope
    ) -> AbstractContextManager[Any]:
        """Wraps applying a participant's reply in the orchestrator."""
        return _NULL_SCOPE

    def inject(self, headers: dict[str, str]) -> None:
        """Write the current trace context into message ``headers``."""


NOOP = Observer()
"""The default observer: does nothing."""


class _MultiScope(StepScope):
    __slots__ = ("_scopes",)

    def __init__(self, scopes: Sequence[StepScope]) -> None:
        self._scopes = scopes

    def ended(
        self,
        outcome: str,
        error: BaseException | None = None,
        description: str | None = None,
    ) -> None:
        for scope in self._scopes:
            scope.ended(outcome, error, description)


class MultiObserver(Observer):
    """Calls each of ``observers`` in turn (tracing and metrics together)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers
        self.traces = any(o.traces for o in observers)

    @contextmanager
    def saga_start(self, saga: str, saga_id: str) -> Iterator[SagaStart]:
        merged = SagaStart()
        with ExitStack() as stack:
            starts = [
                stack.enter_context(o.saga_start(saga, saga_id)) for o in self.observers
            ]
            for start in starts:
                merged.carrier.update(start.carrier)
            try:
                yield merged
            finally:
                for start in starts:
                    start.created = merged.created

    def saga_finished(
        self,
        saga: str,
        saga_id: str,
        status: str,
        failed_step: str | None,
        trace: Mapping[str, str] | None,
    ) -> None:
        for o in self.observers:
            o.saga_finished(saga, saga_id, status, failed_step, trace)

    @contextmanager
    def step(
        self, call: StepRun, trace: Mapping[str, str] | None
    ) -> Iterator[StepScope]:
        with ExitStack() as stack:
            yield _MultiScope(
                [stack.enter_context(o.step(call, trace)) for o in self.observers]
            )

    def step_finished(self, saga: str, entry: HistoryEntry) -> None:
        for o in self.observers:
            o.step_finished(saga, entry)

    def command_headers(
        self,
        call: StepRun,
        command: str,
        destination: str,
        trace: Mapping[str, str] | None,
    ) -> Mapping[str, str]:
        headers: dict[str, str] = {}
        for o in self.observers:
            headers.update(o.command_headers(call, command, destination, trace))
        return headers

    @contextmanager
    def handling(self, service: str, message: Envelope) -> Iterator[StepScope]:
        with ExitStack() as stack:
            yield _MultiScope(
                [
                    stack.enter_context(o.handling(service, message))
                    for o in self.observers
                ]
            )

    @contextmanager
    def reply_received(self, saga: str, message: Envelope) -> Iterator[None]:
        with ExitStack() as stack:
            for o in self.observers:
                stack.enter_context(o.reply_received(saga, message))
            yield

    def inject(self, headers: dict[str, str]) -> None:
        for o in self.observers:
            o.inject(headers)


def started_result(carrier: Mapping[str, str]) -> dict[str, Any] | None:
    """What the saga's ``started`` history line stores (None: nothing)."""
    return {"trace": dict(carrier)} if carrier else None


def trace_of(history: Sequence[HistoryEntry]) -> dict[str, str]:
    """The trace carrier stored with the saga's ``started`` line (or none)."""
    for entry in history:
        if entry.kind == "saga" and entry.outcome == "started":
            result = entry.result
            if isinstance(result, dict) and isinstance(result.get("trace"), dict):
                return {str(k): str(v) for k, v in result["trace"].items()}
            break
    return {}
