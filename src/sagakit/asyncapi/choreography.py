"""Events of ``sagakit.choreography`` objects, as :class:`EventSpec` values.

An ``EventBus`` subscribes its service to event types on its own queue
(``events.<service>``): each handled type becomes an event on that queue, its
body the handler's payload model. A ``Choreography`` names its events (forward,
failure, compensating) without saying who publishes them: they are described
as messages, and get a channel where a bus in the same document handles them.
Anything else with ``asyncapi_events()`` (an :class:`EventSource`) works too.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sagakit.asyncapi.model import EventSource, EventSpec

try:  # optional: the document of sagas and participants needs none of it
    from sagakit.choreography import Choreography, EventBus
except ImportError:  # pragma: no cover - a build without choreography
    Choreography = EventBus = None  # type: ignore[assignment,misc]


def is_event_source(value: object) -> bool:
    if isinstance(value, type):
        return False
    if isinstance(value, EventSource):
        return True
    return any(
        cls is not None and isinstance(value, cls) for cls in (EventBus, Choreography)
    )


def events_of(value: object) -> list[EventSpec]:
    """The events ``value`` publishes or handles (``[]``: none it knows of)."""
    if isinstance(value, EventSource) and not isinstance(value, type):
        return list(value.asyncapi_events())
    if EventBus is not None and isinstance(value, EventBus):
        return _bus_events(value)
    if Choreography is not None and isinstance(value, Choreography):
        return _choreography_events(value)
    return []


def _bus_events(bus: Any) -> list[EventSpec]:
    handlers: dict[str, Any] = getattr(bus, "_handlers", {})
    specs: list[EventSpec] = []
    for event_type in bus.event_types:
        model = getattr(handlers.get(event_type), "model", None)
        body = (
            model if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        declared = bus.choreography_of(event_type)
        where = f" (choreography {declared.name})" if declared is not None else ""
        specs.append(
            EventSpec(
                event_type,
                bus.queue,
                body,
                subscribers=(bus.service,),
                summary=f"{event_type}{where}.",
            )
        )
    return specs


def _choreography_events(choreography: Any) -> list[EventSpec]:
    specs: list[EventSpec] = []
    for index, flow in enumerate(choreography.steps, start=1):
        roles = (
            (flow.event, f"step {index} of choreography {choreography.name}"),
            (flow.failed_by, f"step {index} of {choreography.name} failed"),
            (flow.compensated_by, f"undoes {flow.event} ({choreography.name})"),
        )
        specs.extend(
            EventSpec(event, None, summary=f"{event}: {text}.")
            for event, text in roles
            if event
        )
    return specs
