"""Versions of a choreography, as the services of one see them.

Nobody runs a choreography: each service reacts to events with one handler
per event type. What a version numbers is the conversation: the events of
the choreography and their roles (its :class:`Flow` steps), together with
what the services' handlers do with those events (the payloads they expect,
the events they publish in answer). ``Choreography(..., version=N)``
declares it; its fingerprint covers the flows (forward events in order, the
event that undoes or fails each); the timeout is left out.

- Every event of a declared choreography carries the choreography's name,
  version and fingerprint in its headers (``choreography``,
  ``choreography_version``, ``choreography_fingerprint``). The first event of
  a correlation id takes the newest version its publisher declares; events a
  handler publishes carry the version of the event it handles, so a
  choreography finishes on the version it started on. The tracker's row
  keeps the version of the event that created it.
- A bus declares the versions its handlers serve: ``EventBus(...,
  choreographies=[booking_v1, booking_v2])`` (several versions of one name
  side by side). A handler is still one per event type; it can tell the
  versions apart with ``ctx.choreography_version``.
- A bus that declares a choreography (any version) does not handle an event
  of a version it lacks, or of the same version with another fingerprint:
  it writes a ``waiting`` timeline line with the reason (``needs booking v1,
  not registered here (have v2)``), logs a warning and raises
  :class:`~sagakit.errors.DefinitionUnavailable`, so the broker delivers the
  event again (to a process of the service that has the version) and,
  after ``max_deliveries``, dead-letters it with that reason; replay it once
  a process with the version runs. Events of choreographies the bus does
  not declare are handled as before, without a check.
- Events without a version (published before versions were kept) are
  version 1 of unknown fingerprint: a bus declaring version 1 handles them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sagakit.choreography.definition import Choreography
from sagakit.definition.versions import unavailable
from sagakit.errors import DefinitionError, SagaError
from sagakit.messaging.envelope import Envelope, MalformedMessage
from sagakit.ports.event_store import EventOutcome, EventStore, LiveChoreographies
from sagakit.runtime.deploy import DeployRow, Judged, judge_rows

logger = logging.getLogger("sagakit.choreography.bus")

CHOREOGRAPHY_HEADER = "choreography"
VERSION_HEADER = "choreography_version"
FINGERPRINT_HEADER = "choreography_fingerprint"


def version_of(message: Envelope) -> int | None:
    """The choreography version ``message`` carries: None if it belongs to
    no choreography, 1 if it names one without a version (older
    publishers); ``MalformedMessage`` if the version is not a number."""
    if CHOREOGRAPHY_HEADER not in message.headers:
        return None
    raw = message.headers.get(VERSION_HEADER, "1")
    try:
        return int(raw)
    except ValueError:
        raise MalformedMessage(
            f"{message.type}: choreography version {raw[:20]!r} is not a number"
        ) from None


def headers_of(choreography: Choreography) -> dict[str, str]:
    """The headers that put an event in ``choreography``'s conversation."""
    return {
        CHOREOGRAPHY_HEADER: choreography.name,
        VERSION_HEADER: str(choreography.version),
        FINGERPRINT_HEADER: choreography.fingerprint,
    }


class Declared:
    """The choreographies a bus declares, by name and version."""

    def __init__(self, choreographies: Iterable[Choreography]) -> None:
        self.versions: dict[str, dict[int, Choreography]] = {}
        for choreography in choreographies:
            versions = self.versions.setdefault(choreography.name, {})
            if choreography.version in versions:
                raise SagaError(
                    f"choreography {choreography.name!r} v{choreography.version} "
                    "given twice"
                )
            versions[choreography.version] = choreography

    def all(self) -> list[Choreography]:
        """Every declared choreography, each name's versions oldest first."""
        return [c for v in self.versions.values() for _, c in sorted(v.items())]

    def newest_with(self, event_type: str) -> Choreography | None:
        """The newest version of the first declared choreography that has
        ``event_type``: the one a new conversation of it starts on."""
        for versions in self.versions.values():
            found = [c for v, c in sorted(versions.items()) if event_type in c.events]
            if found:
                return found[-1]
        return None

    def of(self, message: Envelope) -> Choreography | None:
        """The declared definition ``message`` belongs to (its header's name
        and version, or the one :meth:`newest_with` its type if it names
        none), if it has ``message``'s type."""
        name = message.headers.get(CHOREOGRAPHY_HEADER)
        if name is None:
            return self.newest_with(message.type)
        if name not in self.versions:
            return None  # not declared here: its version is not looked at
        found = self.versions[name].get(version_of(message) or 1)
        return found if found is not None and message.type in found.events else None

    def reason(self, message: Envelope) -> str | None:
        """Why this bus must not handle ``message`` (its choreography is
        declared here, but not in its version and shape), or None."""
        name = message.headers.get(CHOREOGRAPHY_HEADER)
        if name is None or name not in self.versions:
            return None
        fingerprint = message.headers.get(FINGERPRINT_HEADER)
        return self.reason_for(name, version_of(message) or 1, fingerprint)

    def reason_for(
        self, name: str, version: int, fingerprint: str | None
    ) -> str | None:
        """Why a conversation of ``name`` ``version`` with ``fingerprint``
        cannot go on with the versions declared here, or None."""
        versions = self.versions.get(name, {})
        found = versions.get(version)
        registered = None if found is None else found.fingerprint
        return unavailable(name, version, fingerprint, registered, versions)


def deploy_rows(
    choreographies: Iterable[Choreography], live: LiveChoreographies
) -> list[DeployRow]:
    """What deploying services that declare ``choreographies`` does to the
    ``live`` (unfinished) choreographies, per name and version (``sagakit
    deploy-check``): those whose version is declared continue, the others
    would be stranded (their events refused). Names not declared are left
    out: their events are handled without a version check."""
    declared = Declared(_distinct(choreographies))
    judged = {key: n for key, n in live.items() if key[0] in declared.versions}

    def judge(key: tuple[str, int, str | None]) -> Judged:
        why = declared.reason_for(*key)
        return ("continue", None) if why is None else ("drain", why)

    return judge_rows(judged, "choreography", judge)


def _distinct(choreographies: Iterable[Choreography]) -> list[Choreography]:
    """``choreographies`` without repeats of a name and version of the same
    shape (several buses declare the same ones)."""
    found: dict[tuple[str, int], Choreography] = {}
    for each in choreographies:
        known = found.setdefault((each.name, each.version), each)
        if known.fingerprint != each.fingerprint:
            raise DefinitionError(
                f"choreography {each.name!r} v{each.version} is declared twice, "
                "with different flows"
            )
    return list(found.values())


async def first_refusal(
    store: EventStore, service: str, message: Envelope, why: str
) -> bool:
    """Log that ``service`` does not handle ``message`` and ``why``; True
    unless its timeline says so already (a delivery before this one)."""
    logger.warning(
        "event of a choreography version this service lacks; not handled",
        extra={
            "action": "event_waiting",
            "event": message.type,
            "message_id": message.id,
            "correlation_id": message.correlation_id,
            "reason": why,
        },
    )
    timeline = await store.timeline(message.correlation_id)
    return not any(
        line.message_id == message.id
        and line.service == service
        and line.outcome is EventOutcome.WAITING
        for line in timeline
    )
