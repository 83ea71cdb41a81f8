"""A neutral description of what a set of sagas and services put on the wire.

It knows nothing of AsyncAPI's document layout (``render_v3`` does): it holds
the broker :class:`Server` objects, the :class:`Channel` of every queue, the
:class:`Message` types that travel on them (each wrapped in the sagakit
envelope, with the JSON Schema of its body), and the :class:`Operation` of each
actor (an orchestrating saga, a participant service, an event publisher or
subscriber) that sends or receives them.

Events are part of the model already: :class:`EventSpec` is what an event
source contributes (see :class:`EventSource`), and ``builder`` turns each spec
into an event message, its channel and its operations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

MessageKind = Literal["command", "reply", "event"]
ChannelKind = Literal["commands", "replies", "events"]
Action = Literal["send", "receive"]
ActorKind = Literal["saga", "participant", "publisher", "subscriber"]

JsonSchema = dict[str, Any]
Body = type[BaseModel]
"""The pydantic model of a message body."""


@dataclass(frozen=True, slots=True)
class Server:
    """A broker, from a configured URL with any credentials removed."""

    name: str
    protocol: str
    """``amqp``, ``amqps``, ``redis``, ``rediss`` or ``nats``."""
    host: str
    """``host[:port]``; never user or password."""
    pathname: str | None = None
    """The virtual host (AMQP) or database number (Redis), as ``/...``."""
    authenticated: bool = False
    """The URL carried credentials (they are not kept)."""
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Where a message comes from in a definition: a saga step, a handler, ..."""

    actor: str
    role: str
    """``action``, ``compensation``, ``on_timeout``, ``handler``,
    ``publisher``, ``subscriber``."""
    step: str | None = None


@dataclass(slots=True)
class Message:
    """One message type: an envelope of ``kind`` whose ``payload`` is ``body``.

    ``body`` is the pydantic model of the envelope's ``payload`` (``None``: any
    JSON object). For a reply it is the body of a successful reply.
    """

    id: str
    kind: MessageKind
    type: str
    body: Body | None = None
    summary: str | None = None
    usages: list[Usage] = field(default_factory=list)


@dataclass(slots=True)
class Channel:
    """A queue (or event stream). ``address`` None: named at run time by the
    command's ``reply_to``."""

    id: str
    kind: ChannelKind
    address: str | None
    messages: list[str] = field(default_factory=list)
    description: str | None = None

    def carry(self, message_id: str) -> None:
        if message_id not in self.messages:
            self.messages.append(message_id)


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply expected to a command sent by an operation."""

    channel: str
    messages: tuple[str, ...]
    dynamic: bool = False
    """Sent to the queue the command's ``reply_to`` names."""


@dataclass(slots=True)
class Operation:
    """``actor`` sends or receives ``messages`` on ``channel``."""

    id: str
    action: Action
    channel: str
    actor: str
    actor_kind: ActorKind
    messages: list[str] = field(default_factory=list)
    summary: str | None = None
    reply: Reply | None = None


@dataclass(slots=True)
class ApiModel:
    """Everything one document describes; the ids are unique per kind."""

    title: str
    version: str
    description: str | None = None
    servers: list[Server] = field(default_factory=list)
    channels: dict[str, Channel] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    broker_prefix: str = "sagakit"
    """Prefix the RabbitMQ and Redis transports put before queue names."""

    @property
    def bodies(self) -> list[Body]:
        """Every payload model, once, in order of first use."""
        seen: dict[Body, None] = {}
        for message in self.messages.values():
            if message.body is not None:
                seen.setdefault(message.body, None)
        return list(seen)


# -- events: the extension point for choreography ------------------------------


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An event type as a choreography (or any publisher) declares it.

    ``address`` is the queue or stream the event is published to;
    ``publishers`` and ``subscribers`` name the services (or flows) that send
    and react to it.
    """

    type: str
    address: str | None
    """None: not known here; its publishers then send to the channel of each
    subscriber in the document, else the message is described without one."""
    body: Body | None = None
    publishers: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()
    summary: str | None = None


@runtime_checkable
class EventSource(Protocol):
    """Anything that can list the events it publishes or reacts to.

    ``describe`` and the ``sagakit asyncapi`` loader pick up every object
    with this method (an event bus, a choreography), so the choreography
    package needs no import from here to be documented.
    """

    def asyncapi_events(self) -> Iterable[EventSpec]: ...
