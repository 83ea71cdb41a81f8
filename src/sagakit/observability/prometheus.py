"""Prometheus metrics for sagas and steps (``pip install 'sagakit[prometheus]'``).

Registered in the application's registry (the default one unless given);
exposing them (``start_http_server``, a web framework's endpoint) is the
application's choice.

- ``sagakit_sagas_started_total{saga}``: instances created (a deduplicated
  start is not counted).
- ``sagakit_sagas_completed_total{saga,status}``: instances that reached an
  end status: ``succeeded``, ``compensated``, ``failed`` or
  ``compensation_failed`` (counted again if an operator's retry ends it again).
- ``sagakit_step_duration_seconds{saga,step,kind,outcome}``: committed step
  outcomes, local or remote; ``kind`` is ``action`` or ``compensation``,
  ``outcome`` is ``succeeded``, ``failed``, ``timed_out`` or ``sent`` (a
  fire-and-forget compensation).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from sagakit._extras import needs_extra

with needs_extra("PrometheusObserver needs prometheus-client", "prometheus"):
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from sagakit.observability.observer import STEP_KINDS, Observer, SagaStart
from sagakit.ports.store import HistoryEntry

DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
"""Step duration buckets: milliseconds for local calls up to minutes for
remote steps that wait for another service."""


class _Metrics(NamedTuple):
    started: Counter
    completed: Counter
    step_duration: Histogram


_lock = threading.Lock()
_by_registry: dict[int, tuple[CollectorRegistry, _Metrics]] = {}


def _metrics(registry: CollectorRegistry, buckets: Sequence[float]) -> _Metrics:
    """One set per registry: several observers on one registry share it."""
    with _lock:
        known = _by_registry.get(id(registry))
        if known is not None and known[0] is registry:
            return known[1]
        metrics = _Metrics(
            Counter(
                "sagakit_sagas_started",
                "Saga instances created.",
                ["saga"],
                registry=registry,
            ),
            Counter(
                "sagakit_sagas_completed",
                "Saga instances that reached an end status.",
                ["saga", "status"],
                registry=registry,
            ),
            Histogram(
                "sagakit_step_duration_seconds",
                "How long a step's action or compensation took, by outcome.",
                ["saga", "step", "kind", "outcome"],
                registry=registry,
                buckets=buckets,
            ),
        )
        _by_registry[id(registry)] = (registry, metrics)
        return metrics


class PrometheusObserver(Observer):
    """Saga counters and a step latency histogram (see the module docstring).

    ``registry``: the application's registry (default: prometheus_client's
    global ``REGISTRY``). ``buckets`` applies when the metrics are first
    registered in that registry.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self._metrics = _metrics(self.registry, buckets)

    @contextmanager
    def saga_start(self, saga: str, saga_id: str) -> Iterator[SagaStart]:
        start = SagaStart()
        yield start
        if start.created:
            self._metrics.started.labels(saga).inc()

    def saga_finished(
        self,
        saga: str,
        saga_id: str,
        status: str,
        failed_step: str | None,
        trace: Mapping[str, str] | None,
    ) -> None:
        self._metrics.completed.labels(saga, status).inc()

    def step_finished(self, saga: str, entry: HistoryEntry) -> None:
        if entry.step is None or entry.kind not in STEP_KINDS:
            return
        self._metrics.step_duration.labels(
            saga, entry.step, entry.kind, entry.outcome
        ).observe(entry.duration)
