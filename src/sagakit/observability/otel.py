"""OpenTelemetry spans for sagas, steps and the messages between services.

Uses only ``opentelemetry-api`` (``pip install 'sagakit[otel]'``) and the
application's tracer provider (the global one unless one is given), so the
application chooses the SDK, the exporter and the sampler.

A saga outlives requests and processes, so it has no long span. The spans:

- ``saga.start <saga>``: the creation of the instance, a child of the
  caller's current span. Its context is stored with the saga's ``started``
  history line and is the parent of every later span of the saga, here or
  in the worker that claims or resumes it: a saga is one trace.
- ``saga.step <step>`` / ``saga.compensate <step>``: one local execution,
  current while the user's function runs (so its own spans nest under it);
  a failure sets the error status and records the exception.
- ``saga.send <command>`` (producer): a remote step's command; its context
  travels in the message headers (W3C ``traceparent`` with the default
  propagator).
- ``saga.handle <command>`` (consumer, in the participant): a child of the
  command's span; the reply carries its context back.
- ``saga.reply <command>`` (consumer): the orchestrator applying the reply.
- ``saga.finish <saga>``: the end status; error status unless it succeeded
  or was compensated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sagakit._extras import needs_extra

with needs_extra("OpenTelemetryObserver needs opentelemetry-api", "otel"):
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from sagakit.messaging.envelope import Envelope
from sagakit.observability.observer import Observer, SagaStart, StepRun, StepScope

_FAILED_STATUSES = frozenset({"failed", "compensation_failed"})


class _SpanScope(StepScope):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def ended(
        self,
        outcome: str,
        error: BaseException | None = None,
        description: str | None = None,
    ) -> None:
        self._span.set_attribute("sagakit.step.outcome", outcome)
        if error is not None:
            self._span.record_exception(error)
        if outcome != "succeeded":
            text = description or (
                f"{type(error).__name__}: {error}" if error else None
            )
            self._span.set_status(Status(StatusCode.ERROR, text or outcome))


class OpenTelemetryObserver(Observer):
    """Spans per saga, step and message (see the module docstring).

    ``tracer_provider``: the application's provider (default: the global one).
    ``propagator``: how trace context goes into headers (default: the global
    one, W3C trace context and baggage unless the application set another).
    """

    traces = True

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("sagakit", tracer_provider=tracer_provider)
        self._propagator = propagator

    # -- propagation -------------------------------------------------------

    def inject(self, headers: dict[str, str]) -> None:
        if self._propagator is not None:
            self._propagator.inject(headers)
        else:
            propagate.inject(headers)

    def extract(self, headers: Mapping[str, str] | None) -> otel_context.Context:
        """The context in ``headers``; the current one if they carry none."""
        if not headers:
            return otel_context.get_current()
        if self._propagator is not None:
            return self._propagator.extract(headers)
        return propagate.extract(headers)

    # -- orchestrator ------------------------------------------------------

    @contextmanager
    def saga_start(self, saga: str, saga_id: str) -> Iterator[SagaStart]:
        start = SagaStart()
        with self.tracer.start_as_current_span(
            f"saga.start {saga}",
            attributes={"sagakit.saga.name": saga, "sagakit.saga.id": saga_id},
        ) as span:
            self.inject(start.carrier)
            yield start
            if not start.created:
                span.set_attribute("sagakit.saga.deduplicated", True)

    def saga_finished(
        self,
        saga: str,
        saga_id: str,
        status: str,
        failed_step: str | None,
        trace: Mapping[str, str] | None,
    ) -> None:
        attributes: dict[str, Any] = {
            "sagakit.saga.name": saga,
            "sagakit.saga.id": saga_id,
            "sagakit.saga.status": status,
        }
        if failed_step is not None:
            attributes["sagakit.saga.failed_step"] = failed_step
        span = self.tracer.start_span(
            f"saga.finish {saga}", self.extract(trace), attributes=attributes
        )
        if status in _FAILED_STATUSES:
            span.set_status(Status(StatusCode.ERROR, f"saga {status}"))
        span.end()

    @contextmanager
    def step(
        self, call: StepRun, trace: Mapping[str, str] | None
    ) -> Iterator[StepScope]:
        verb = "step" if call.kind == "action" else "compensate"
        with self.tracer.start_as_current_span(
            f"saga.{verb} {call.step}",
            self.extract(trace),
            attributes=_step_attributes(call),
        ) as span:
            yield _SpanScope(span)

    def command_headers(
        self,
        call: StepRun,
        command: str,
        destination: str,
        trace: Mapping[str, str] | None,
    ) -> Mapping[str, str]:
        headers: dict[str, str] = {}
        attributes = _step_attributes(call)
        attributes["messaging.operation.type"] = "send"
        attributes["messaging.destination.name"] = destination
        with self.tracer.start_as_current_span(
            f"saga.send {command}",
            self.extract(trace),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        ):
            self.inject(headers)
        return headers

    @contextmanager
    def reply_received(self, saga: str, message: Envelope) -> Iterator[None]:
        attributes = _message_attributes(message)
        attributes["sagakit.saga.name"] = saga
        attributes["sagakit.reply.ok"] = bool(message.ok)
        with self.tracer.start_as_current_span(
            f"saga.reply {message.type}",
            self.extract(message.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ):
            yield

    # -- participant -------------------------------------------------------

    @contextmanager
    def handling(self, service: str, message: Envelope) -> Iterator[StepScope]:
        attributes = _message_attributes(message)
        attributes["sagakit.service"] = service
        with self.tracer.start_as_current_span(
            f"saga.handle {message.type}",
            self.extract(message.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            yield _SpanScope(span)


def _step_attributes(call: StepRun) -> dict[str, Any]:
    return {
        "sagakit.saga.name": call.saga,
        "sagakit.saga.id": call.saga_id,
        "sagakit.step.name": call.step,
        "sagakit.step.kind": call.kind,
        "sagakit.step.attempt": call.attempt,
    }


def _message_attributes(message: Envelope) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "sagakit",
        "messaging.operation.type": "process",
        "messaging.message.id": message.id,
        "sagakit.step.kind": "compensation" if message.compensation else "action",
        "sagakit.step.attempt": message.attempt,
    }
    if message.saga_id is not None:
        attributes["sagakit.saga.id"] = message.saga_id
    if message.step is not None:
        attributes["sagakit.step.name"] = message.step
    return attributes
