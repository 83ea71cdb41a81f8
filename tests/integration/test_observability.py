"""Tracing and metrics: OpenTelemetry spans with the SDK's in-memory exporter,
Prometheus metrics on a fresh registry, and nothing imported without them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition import Remote
from sagakit.messaging import Envelope
from sagakit.observability import (
    MultiObserver,
    OpenTelemetryObserver,
    PrometheusObserver,
)
from sagakit.participant import CommandRejected, Participant
from sagakit.runtime import Worker


class Trip(BaseModel):
    fail: bool = False


class Tracing:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")
        self.observer = OpenTelemetryObserver(self.provider)

    def spans(self) -> dict[str, ReadableSpan]:
        found: dict[str, ReadableSpan] = {}
        for span in self.exporter.get_finished_spans():
            assert span.name not in found, f"two spans named {span.name}"
            found[span.name] = span
        return found


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    yield t
    t.provider.shutdown()


def trip_saga(seen: dict[str, int]) -> Saga[Trip]:
    def flight(ctx: Trip) -> dict[str, str]:
        # the step's span is current while user code runs
        seen["flight"] = trace.get_current_span().get_span_context().span_id
        return {"flight": "F1"}

    async def hotel(ctx: Trip) -> None:
        if ctx.fail:
            raise ValueError("no rooms")

    def cancel_flight(ctx: Trip) -> None:
        seen["cancel_flight"] = 1

    return Saga(
        "trip",
        [Step("flight", flight, compensate=cancel_flight), Step("hotel", hotel)],
        context=Trip,
    )


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_saga_and_step_spans_join_the_callers_trace(
    tmp_path: Path, tracing: Tracing
) -> None:
    seen: dict[str, int] = {}
    orch = Orchestrator(SQLiteStore(tmp_path / "t.db"), observer=tracing.observer)
    with tracing.tracer.start_as_current_span("request") as request:
        result = await orch.run(trip_saga(seen))
    assert result.status is SagaStatus.SUCCEEDED
    spans = tracing.spans()
    assert set(spans) == {
        "request",
        "saga.start trip",
        "saga.step flight",
        "saga.step hotel",
        "saga.finish trip",
    }
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    start = spans["saga.start trip"]
    assert parent_of(start) == request.get_span_context().span_id
    for name in ("saga.step flight", "saga.step hotel", "saga.finish trip"):
        assert parent_of(spans[name]) == start.context.span_id, name
    flight = spans["saga.step flight"]
    assert seen["flight"] == flight.context.span_id
    assert flight.attributes is not None
    assert dict(flight.attributes) == {
        "sagakit.saga.name": "trip",
        "sagakit.saga.id": result.saga_id,
        "sagakit.step.name": "flight",
        "sagakit.step.kind": "action",
        "sagakit.step.attempt": 1,
        "sagakit.step.outcome": "succeeded",
    }
    finish = spans["saga.finish trip"]
    assert finish.attributes is not None
    assert finish.attributes["sagakit.saga.status"] == "succeeded"
    assert finish.status.status_code is StatusCode.UNSET
    # the saga's trace context is stored with its started line
    started = (await orch.store.history(result.saga_id))[0]
    assert started.outcome == "started"
    assert started.result["trace"]["traceparent"].split("-")[2] == (
        f"{start.context.span_id:016x}"
    )


async def test_failing_step_span_has_error_status(
    tmp_path: Path, tracing: Tracing
) -> None:
    orch = Orchestrator(SQLiteStore(tmp_path / "t.db"), observer=tracing.observer)
    result = await orch.run(trip_saga({}), Trip(fail=True))
    assert result.status is SagaStatus.COMPENSATED
    spans = tracing.spans()
    hotel = spans["saga.step hotel"]
    assert hotel.status.status_code is StatusCode.ERROR
    assert hotel.status.description == "ValueError: no rooms"
    assert hotel.attributes is not None
    assert hotel.attributes["sagakit.step.outcome"] == "failed"
    assert [e.name for e in hotel.events] == ["exception"]
    assert hotel.events[0].attributes is not None
    assert hotel.events[0].attributes["exception.message"] == "no rooms"
    compensate = spans["saga.compensate flight"]
    assert compensate.status.status_code is StatusCode.UNSET
    assert compensate.attributes is not None
    assert compensate.attributes["sagakit.step.kind"] == "compensation"
    finish = spans["saga.finish trip"]
    assert finish.attributes is not None
    assert finish.attributes["sagakit.saga.status"] == "compensated"
    assert finish.attributes["sagakit.saga.failed_step"] == "hotel"
    # without a caller span the saga's own start span is the trace's root
    assert spans["saga.start trip"].parent is None
    assert len({s.context.trace_id for s in spans.values()}) == 1


async def test_a_saga_run_by_a_worker_continues_the_submitters_trace(
    tmp_path: Path, tracing: Tracing
) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    producer = Orchestrator(store, observer=tracing.observer)
    with tracing.tracer.start_as_current_span("request") as request:
        saga_id = await producer.submit(trip_saga({}))
    # a worker (another process) finds the trace in the saga's history
    worker = Worker(store, [trip_saga({})], observer=tracing.observer, lease=5)
    await asyncio.wait_for(worker.run(until_idle=True), 10)
    assert worker.claimed == 1
    assert (await producer.result(saga_id)).status is SagaStatus.SUCCEEDED
    spans = tracing.spans()
    start = spans["saga.start trip"]
    assert parent_of(start) == request.get_span_context().span_id
    assert parent_of(spans["saga.step hotel"]) == start.context.span_id
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans.values()} == {trace_id}


class CreateTicket(BaseModel):
    order_id: int


class Order(BaseModel):
    order_id: int = 1


def order_saga() -> Saga[Order]:
    return Saga(
        "create_order",
        [
            Step(
                "ticket",
                Remote(
                    "kitchen.create_ticket",
                    lambda ctx: CreateTicket(order_id=ctx.order_id),
                ),
                timeout=5,
            )
        ],
        context=Order,
    )


class Kitchen:
    def __init__(self, tmp_path: Path, tracing: Tracing) -> None:
        self.transport = InProcessTransport()
        self.store = SQLiteStore(tmp_path / "orders.db")
        self.participant = Participant(
            "kitchen",
            self.transport,
            SQLiteStore(tmp_path / "kitchen.db"),
            observer=tracing.observer,
        )
        self.headers: list[dict[str, str]] = []
        self.current: list[int] = []
        self.reject = False

        @self.participant.handler("kitchen.create_ticket")
        async def create_ticket(cmd: CreateTicket, message: Envelope) -> None:
            self.headers.append(dict(message.headers))
            self.current.append(trace.get_current_span().get_span_context().span_id)
            if self.reject:
                raise CommandRejected("kitchen closed")


@pytest.fixture
async def kitchen(tmp_path: Path, tracing: Tracing) -> AsyncIterator[Kitchen]:
    k = Kitchen(tmp_path, tracing)
    await k.participant.start()
    yield k
    await k.transport.close()


async def test_remote_step_carries_the_trace_to_the_participant_and_back(
    kitchen: Kitchen, tracing: Tracing
) -> None:
    orch = Orchestrator(
        kitchen.store,
        transport=kitchen.transport,
        deadline_interval=0.02,
        observer=tracing.observer,
    )
    async with orch.serving():
        with tracing.tracer.start_as_current_span("request") as request:
            result = await asyncio.wait_for(orch.run(order_saga()), 10)
    assert result.status is SagaStatus.SUCCEEDED
    spans = tracing.spans()
    start = spans["saga.start create_order"]
    send = spans["saga.send kitchen.create_ticket"]
    handle = spans["saga.handle kitchen.create_ticket"]
    reply = spans["saga.reply kitchen.create_ticket"]
    assert parent_of(start) == request.get_span_context().span_id
    assert parent_of(send) == start.context.span_id
    assert send.kind is SpanKind.PRODUCER
    assert parent_of(handle) == send.context.span_id
    assert handle.kind is SpanKind.CONSUMER
    assert parent_of(reply) == handle.context.span_id
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    # W3C trace context in the command's headers: the send span's
    (headers,) = kitchen.headers
    _, trace_hex, span_hex, _ = headers["traceparent"].split("-")
    assert int(trace_hex, 16) == trace_id
    assert int(span_hex, 16) == send.context.span_id
    assert kitchen.current == [handle.context.span_id]
    assert handle.attributes is not None
    assert handle.attributes["sagakit.service"] == "kitchen"
    assert handle.attributes["sagakit.step.name"] == "ticket"
    assert handle.attributes["sagakit.saga.id"] == result.saga_id
    assert send.attributes is not None
    assert send.attributes["messaging.destination.name"] == "kitchen"


async def test_rejected_command_marks_the_handler_span_failed(
    kitchen: Kitchen, tracing: Tracing
) -> None:
    kitchen.reject = True
    orch = Orchestrator(
        kitchen.store,
        transport=kitchen.transport,
        deadline_interval=0.02,
        observer=tracing.observer,
    )
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(order_saga()), 10)
    assert result.status is SagaStatus.COMPENSATED
    spans = tracing.spans()
    handle = spans["saga.handle kitchen.create_ticket"]
    assert handle.status.status_code is StatusCode.ERROR
    assert handle.status.description == "CommandRejected: kitchen closed"
    reply = spans["saga.reply kitchen.create_ticket"]
    assert reply.attributes is not None
    assert reply.attributes["sagakit.reply.ok"] is False


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_prometheus_counts_sagas_and_times_steps(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    orch = Orchestrator(
        SQLiteStore(tmp_path / "t.db"), observer=PrometheusObserver(registry)
    )
    saga = trip_saga({})
    assert (await orch.run(saga)).status is SagaStatus.SUCCEEDED
    assert (await orch.run(saga, Trip(fail=True))).status is SagaStatus.COMPENSATED
    # a deduplicated start is not counted again
    await orch.run(saga, idempotency_key="k")
    await orch.run(saga, idempotency_key="k")

    started = "sagakit_sagas_started_total"
    completed = "sagakit_sagas_completed_total"
    assert sample(registry, started, saga="trip") == 3
    assert sample(registry, completed, saga="trip", status="succeeded") == 2
    assert sample(registry, completed, saga="trip", status="compensated") == 1
    assert sample(registry, completed, saga="trip", status="failed") == 0

    def count(step: str, kind: str, outcome: str) -> float:
        return sample(
            registry,
            "sagakit_step_duration_seconds_count",
            saga="trip",
            step=step,
            kind=kind,
            outcome=outcome,
        )

    assert count("flight", "action", "succeeded") == 3
    assert count("hotel", "action", "succeeded") == 2
    assert count("hotel", "action", "failed") == 1
    assert count("flight", "compensation", "succeeded") == 1
    total = sample(
        registry,
        "sagakit_step_duration_seconds_sum",
        saga="trip",
        step="flight",
        kind="action",
        outcome="succeeded",
    )
    assert 0 <= total < 5
    inf = sample(
        registry,
        "sagakit_step_duration_seconds_bucket",
        saga="trip",
        step="flight",
        kind="action",
        outcome="succeeded",
        le="+Inf",
    )
    assert inf == 3


async def test_prometheus_times_remote_steps(kitchen: Kitchen) -> None:
    registry = CollectorRegistry()
    orch = Orchestrator(
        kitchen.store,
        transport=kitchen.transport,
        deadline_interval=0.02,
        observer=PrometheusObserver(registry),
    )
    async with orch.serving():
        result = await asyncio.wait_for(orch.run(order_saga()), 10)
    assert result.status is SagaStatus.SUCCEEDED
    labels = {
        "saga": "create_order",
        "step": "ticket",
        "kind": "action",
        "outcome": "succeeded",
    }
    assert sample(registry, "sagakit_step_duration_seconds_count", **labels) == 1


async def test_tracing_and_metrics_together(tmp_path: Path, tracing: Tracing) -> None:
    registry = CollectorRegistry()
    both = MultiObserver(tracing.observer, PrometheusObserver(registry))
    assert both.traces
    orch = Orchestrator(SQLiteStore(tmp_path / "t.db"), observer=both)
    result = await orch.run(trip_saga({}), Trip(fail=True))
    assert result.status is SagaStatus.COMPENSATED
    assert "saga.compensate flight" in tracing.spans()
    assert tracing.spans()["saga.step hotel"].status.status_code is StatusCode.ERROR
    assert sample(registry, "sagakit_sagas_started_total", saga="trip") == 1
    completed = sample(
        registry, "sagakit_sagas_completed_total", saga="trip", status="compensated"
    )
    assert completed == 1


def test_two_observers_share_one_registry() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusObserver(registry), PrometheusObserver(registry)
    assert first._metrics is second._metrics


def test_without_an_observer_no_tracing_or_metrics_library_is_imported(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        import sys

        from sagakit import Orchestrator, Saga, SQLiteStore, Step
        import sagakit.observability

        saga = Saga("s", [Step("a", lambda ctx: 1, compensate=lambda ctx: None)])
        result = Orchestrator(SQLiteStore("s.db")).run_sync(saga)
        assert result.status.value == "succeeded", result
        roots = ("opentelemetry", "prometheus_client")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in roots)
        assert not loaded, loaded
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
