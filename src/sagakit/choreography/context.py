"""What a handler gets: :class:`EventContext`, and the helpers the bus and it
share (payloads, headers, events stored with an inbox entry)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from sagakit.choreography.versions import (
    CHOREOGRAPHY_HEADER,
    FINGERPRINT_HEADER,
    version_of,
)
from sagakit.errors import DuplicateMessage, SagaError
from sagakit.messaging.envelope import Envelope
from sagakit.messaging.handler import payload_dict
from sagakit.messaging.handler import payload_model as handler_payload_model
from sagakit.ports.event_store import TransactionalInbox

if TYPE_CHECKING:
    from sagakit.choreography.bus import EventBus

SOURCE_HEADER = "source"
CAUSE_HEADER = "caused_by"
_EVENT_IDS = uuid.UUID("6f1c1f5e-3b7a-4c55-9a43-0d5e0c2b7e11")


def payload_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The model an event handler's payload parameter asks for, or None."""
    return handler_payload_model(fn, "event handler", "event payload")


def as_payload(event_type: str, value: Any) -> dict[str, Any]:
    """A pydantic model, a dict or None as an envelope payload."""
    return payload_dict(
        value,
        lambda kind: (
            f"the payload of {event_type!r} is {kind}; pass a "
            "pydantic model, a dict or None"
        ),
    )


def encode_events(events: Iterable[Envelope]) -> bytes:
    return json.dumps([e.model_dump(mode="json") for e in events]).encode("utf-8")


def decode_events(body: bytes) -> list[Envelope]:
    if not body:
        return []
    return [Envelope.model_validate(e) for e in json.loads(body)]


class EventContext:
    """What a handler gets beside the payload: the event, and a ``publish``
    that carries its correlation id (and choreography) to the next events.

    Events published here are sent once the handler has returned and its
    message id is in the inbox, never before.
    """

    def __init__(self, bus: EventBus, message: Envelope) -> None:
        self._bus = bus
        self.message = message
        self.outgoing: list[Envelope] = []
        self.marked = False

    @property
    def correlation_id(self) -> str:
        return self.message.correlation_id

    @property
    def service(self) -> str:
        return self._bus.service

    @property
    def choreography(self) -> str | None:
        return self.message.headers.get(CHOREOGRAPHY_HEADER)

    @property
    def choreography_version(self) -> int | None:
        """The version of the choreography this event belongs to (None if it
        belongs to none): a handler serving several versions tells them apart
        with it. Events it publishes carry the same version."""
        return version_of(self.message)

    async def publish(self, event_type: str, payload: Any = None) -> Envelope:
        """Queue an event for when the handler returns; returns its envelope.

        Its id is derived from the consumed message's, so a handler that runs
        again for the same message publishes the same ids."""
        self._bus._check_published(event_type)
        if self.marked:
            raise SagaError(
                f"{self.service}: publish {event_type!r} before mark_consumed(), "
                "so that the inbox stores it"
            )
        nth = sum(1 for e in self.outgoing if e.type == event_type)
        name = f"{self.message.id}/{self.service}/{event_type}/{nth}"
        event = self._bus.event(
            event_type,
            payload,
            correlation_id=self.correlation_id,
            message_id=uuid.uuid5(_EVENT_IDS, name).hex,
            choreography=self.choreography,
            version=self.choreography_version,
            fingerprint=self.message.headers.get(FINGERPRINT_HEADER),
            caused_by=self.message.id,
        )
        self.outgoing.append(event)
        return event

    async def mark_consumed(self, conn: Any) -> None:
        """Record this event in the inbox on ``conn``, the handler's own
        connection to the database the inbox lives in, inside its open
        transaction; call it after the handler's ``publish`` calls.

        Raises :class:`~sagakit.errors.DuplicateMessage` if the event was
        consumed before: let it roll the transaction back, and the bus treats
        the delivery as a duplicate."""
        if self.marked:
            raise SagaError(f"{self.service}: mark_consumed() called twice")
        store = self._bus.store
        if not hasattr(store, "record_inbox_on"):
            raise SagaError(
                f"{type(store).__name__} cannot write the inbox on the handler's "
                "connection; use PostgreSQL or SQLite, or leave the inbox to the bus"
            )
        inbox = cast(TransactionalInbox, store)
        body = encode_events(self.outgoing)
        if not await inbox.record_inbox_on(
            conn, self._bus.consumer, self.message.id, body
        ):
            raise DuplicateMessage(
                f"event {self.message.id} ({self.message.type}) was consumed by "
                f"{self.service} before"
            )
        self.marked = True
