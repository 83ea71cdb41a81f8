"""Tracing and metrics hooks; both implementations are optional extras.

``Observer`` is the hook interface and the no-op default. The OpenTelemetry
and Prometheus observers import their libraries only when used::

    from sagakit.observability import OpenTelemetryObserver, PrometheusObserver
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagakit.observability.observer import (
    NOOP,
    MultiObserver,
    Observer,
    SagaStart,
    StepRun,
    StepScope,
)

if TYPE_CHECKING:
    from sagakit.observability.otel import OpenTelemetryObserver
    from sagakit.observability.prometheus import PrometheusObserver

__all__ = [
    "NOOP",
    "MultiObserver",
    "Observer",
    "OpenTelemetryObserver",
    "PrometheusObserver",
    "SagaStart",
    "StepRun",
    "StepScope",
]


def __getattr__(name: str) -> Any:
    # the extras' libraries are imported only by code that asks for them
    if name == "OpenTelemetryObserver":
        from sagakit.observability.otel import OpenTelemetryObserver  # noqa: PLC0415

        return OpenTelemetryObserver
    if name == "PrometheusObserver":
        from sagakit.observability.prometheus import (  # noqa: PLC0415
            PrometheusObserver,
        )

        return PrometheusObserver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
