"""Events of ``sagakit.choreography`` objects, as :class:`EventSpec` values.

An ``EventBus`` subscribes its service to event types on its own queue
(``events.<service>``): each handled type becomes an event on that queue, its
body the handler's payload model. The types it declares in ``publishes`` are
events it publishes, with no address (``EventSpec.address`` None): at run
time the bus sends each one to every queue the event store routes its type
to, so ``builder`` puts a ``send`` on the queue of each bus in the same document
that handles the type. A ``Choreography`` names its events (forward, failure,
compensating) without saying who publishes them: they are described as
messages, and get a channel where a bus in the same document handles them.
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
        specs.append(
            EventSpec(
                event_type,
                bus.queue,
                _body(model),
                subscribers=(bus.service,),
                summary=_about(bus, event_type),
            )
        )
    published: dict[str, Any] = getattr(bus, "publishes", {})
    specs.extend(
        EventSpec(
            event_type,
            None,  # wherever it is routed: each subscriber's queue
            _body(model),
            publishers=(bus.service,),
            summary=_about(bus, event_type),
        )
        for event_type, model in published.items()
    )
    return specs


def _body(model: object) -> type[BaseModel] | None:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model
    return None


def _about(bus: Any, event_type: str) -> str:
    declared = bus.choreography_of(event_type)
    where = f" (choreography {declared.name})" if declared is not None else ""
    return f"{event_type}{where}."


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
