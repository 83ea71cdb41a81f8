"""Build the neutral model from saga definitions, participants and event sources.

::

    docs = describe(
        sagas=[create_order_saga],
        participants=[kitchen, accounting],
        servers={"production": "amqp://rabbit.internal:5672/"},
        title="Orders",
        version="1.2.0",
    )
    model = docs.model()

``describe`` returns an :class:`AsyncAPIApp`; put one in a module and
``sagakit asyncapi pkg.module`` renders it. A plain module (or a package,
whose submodules are searched when it defines nothing itself) works too: every
module-level ``Saga``, ``Participant`` and :class:`EventSource` is described.

What goes into the model (channels, messages, operations, and where each
body's model comes from) is in :mod:`sagakit.asyncapi.builder`; broker URLs
become servers in :mod:`sagakit.asyncapi.server`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from sagakit.asyncapi.builder import Builder
from sagakit.asyncapi.choreography import events_of, is_event_source
from sagakit.asyncapi.model import ApiModel, EventSource, EventSpec
from sagakit.asyncapi.server import parse_server
from sagakit.definition.saga import Saga
from sagakit.errors import DefinitionError
from sagakit.participant.service import Participant

__all__ = [
    "DEFAULT_REPLY_QUEUE",
    "AsyncAPIApp",
    "describe",
    "from_target",
    "parse_server",
]

DEFAULT_REPLY_QUEUE = "sagakit.replies"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AsyncAPIApp:
    """What one AsyncAPI document describes, and how to title it."""

    sagas: tuple[Saga[Any], ...] = ()
    participants: tuple[Participant, ...] = ()
    events: tuple[EventSpec, ...] = ()
    servers: Mapping[str, str] = field(default_factory=dict)
    title: str = "sagakit services"
    version: str = "1.0.0"
    description: str | None = None
    reply_queue: str = DEFAULT_REPLY_QUEUE
    """The queue the orchestrators' replies arrive on (``worker --reply-queue``)."""
    broker_prefix: str = "sagakit"

    def model(self) -> ApiModel:
        return Builder(self).build()


def describe(
    *,
    sagas: Iterable[Saga[Any]] = (),
    participants: Iterable[Participant] = (),
    events: Iterable[EventSpec | EventSource | object] = (),
    servers: Mapping[str, str] | None = None,
    title: str = "sagakit services",
    version: str = "1.0.0",
    description: str | None = None,
    reply_queue: str = DEFAULT_REPLY_QUEUE,
    broker_prefix: str = "sagakit",
) -> AsyncAPIApp:
    """Declare a document; ``servers`` maps names to broker URLs (credentials
    are dropped). Bad URLs and non-definitions raise ``DefinitionError``."""
    app = AsyncAPIApp(
        sagas=tuple(sagas),
        participants=tuple(participants),
        events=_event_specs(events),
        servers=dict(servers or {}),
        title=title,
        version=version,
        description=description,
        reply_queue=reply_queue,
        broker_prefix=broker_prefix,
    )
    for saga in app.sagas:
        if not isinstance(saga, Saga):
            raise DefinitionError(f"sagas: {saga!r} is not a Saga")
    for service in app.participants:
        if not isinstance(service, Participant):
            raise DefinitionError(f"participants: {service!r} is not a Participant")
    for name, url in app.servers.items():
        parse_server(name, url)
    return app


def _event_specs(items: Iterable[object]) -> tuple[EventSpec, ...]:
    specs: list[EventSpec] = []
    for item in items:
        if isinstance(item, EventSpec):
            specs.append(item)
        elif is_event_source(item):
            specs.extend(events_of(item))
        else:
            raise DefinitionError(f"events: {item!r} is neither EventSpec nor source")
    return tuple(specs)


def from_target(
    value: object, *, servers: Mapping[str, str] | None = None
) -> AsyncAPIApp:
    """An app from what a ``MODULE[:ATTR]`` names: an ``AsyncAPIApp``, a module
    or package, a Saga, a Participant, an event source, or a list of them.
    ``servers`` are added to (and override) the target's own."""
    if isinstance(value, AsyncAPIApp):
        app = value
    elif isinstance(value, ModuleType):
        app = _from_module(value)
    else:
        items = (
            list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        )
        app = _from_items(items, origin=repr(value))
    if servers:
        for name, url in servers.items():
            parse_server(name, url)
        app = dataclasses.replace(app, servers={**app.servers, **servers})
    return app


def _from_items(items: list[object], *, origin: str) -> AsyncAPIApp:
    sagas = [v for v in items if isinstance(v, Saga)]
    participants = [v for v in items if isinstance(v, Participant)]
    sources = [v for v in items if isinstance(v, EventSpec) or is_event_source(v)]
    if not (sagas or participants or sources):
        raise DefinitionError(
            f"{origin} holds no Saga, Participant, event source or AsyncAPIApp"
        )
    return describe(
        sagas=_unique(sagas), participants=_unique(participants), events=sources
    )


def _from_module(module: ModuleType) -> AsyncAPIApp:
    modules = [module]
    found = _module_values(module)
    if not found and hasattr(module, "__path__"):  # a package: look inside
        for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
            sub = importlib.import_module(f"{module.__name__}.{info.name}")
            modules.append(sub)
            found.extend(_module_values(sub))
    apps = _unique([v for v in found if isinstance(v, AsyncAPIApp)])
    if len(apps) > 1:
        raise DefinitionError(
            f"{module.__name__!r} defines {len(apps)} AsyncAPIApp objects; "
            "name one as MODULE:ATTR"
        )
    if apps:
        return apps[0]
    app = _from_items(_unique(found), origin=f"module {module.__name__!r}")
    doc = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split()) or None
    return AsyncAPIApp(
        sagas=app.sagas,
        participants=app.participants,
        events=app.events,
        title=module.__name__,
        description=doc,
    )


def _module_values(module: ModuleType) -> list[object]:
    return [
        v
        for v in vars(module).values()
        if isinstance(v, (AsyncAPIApp, Saga, Participant, EventSpec))
        or is_event_source(v)
    ]


def _unique(values: list[T]) -> list[T]:
    seen: dict[int, T] = {}
    for v in values:
        seen.setdefault(id(v), v)
    return list(seen.values())
