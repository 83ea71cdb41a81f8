"""The list page's search box: one text, looked for as a saga id (or the
start of one), an idempotency key, a correlation id and text in the
contexts; and the list's pages, each after the last saga of the one before.

Each way reads an index, but for the context text: that search reads the
newest ``CONTEXT_SCAN`` sagas only, and says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sagakit.dashboard.choreographies import Conversation, EventSource
from sagakit.dashboard.views import FilterError
from sagakit.errors import SagaNotFound
from sagakit.ports.store import SagaRecord, SagaStore

CONTEXT_SCAN = 10_000
"""Sagas (the newest) whose context a search reads."""
MAX_QUERY = 200
_COMMAND = re.compile(r"^(?P<saga>.+):(?P<step>[^:]+):(?P<attempt>\d+)$")
"""A remote step's command correlation id: ``<saga id>:<step>:<attempt>``."""


@dataclass(frozen=True, slots=True)
class Hit:
    record: SagaRecord
    matched: str
    """How: ``id``, ``id prefix``, ``idempotency key``, ``correlation id``
    or ``context``."""


@dataclass(frozen=True, slots=True)
class Found:
    query: str
    hits: list[Hit] = field(default_factory=list)
    conversation: Conversation | None = None
    """The choreography whose correlation id is the query, if any."""
    scanned: int = CONTEXT_SCAN


def parse_query(text: str | None) -> str:
    query = (text or "").strip()
    if len(query) > MAX_QUERY:
        raise FilterError(f"search text too long: at most {MAX_QUERY} characters")
    return query


async def search(
    store: SagaStore, events: EventSource, query: str, *, limit: int
) -> Found:
    """Every saga ``query`` names, each once, the most exact match first."""
    hits: dict[str, Hit] = {}

    def add(records: Sequence[SagaRecord], matched: str) -> None:
        for record in records:
            hits.setdefault(record.saga_id, Hit(record, matched))

    add(await _get(store, query), "id")
    prefixed = await store.ids_with_prefix(query, limit=limit)
    add([r for i in prefixed for r in await _get(store, i)], "id prefix")
    add(await store.find_by_key(query, limit), "idempotency key")
    command = _COMMAND.match(query)
    if command is not None:
        add(await _get(store, command["saga"]), "correlation id")
    conversation = await events.conversation(query)
    add(await store.search_context(query, limit=limit, scan=CONTEXT_SCAN), "context")
    return Found(query, list(hits.values())[:limit], conversation)


async def _get(store: SagaStore, saga_id: str) -> list[SagaRecord]:
    try:
        return [await store.get(saga_id)]
    except SagaNotFound:
        return []


# -- pages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after the saga created at ``created_at`` with
    id ``saga_id`` (newest first)."""

    created_at: float
    saga_id: str

    def text(self) -> str:
        return f"{self.created_at!r}:{self.saga_id}"

    @classmethod
    def after(cls, record: SagaRecord) -> Cursor:
        return cls(record.created_at, record.saga_id)


def parse_cursor(text: str | None) -> Cursor | None:
    """``<created_at>:<saga id>`` as :meth:`Cursor.text` writes it."""
    if text is None or not text.strip():
        return None
    stamp, _, saga_id = text.partition(":")
    try:
        created = float(stamp)
    except ValueError:
        created = math.nan
    if not math.isfinite(created) or not saga_id:
        raise FilterError(f"invalid page {text!r}: follow the dashboard's links")
    return Cursor(created, saga_id)


__all__ = ["CONTEXT_SCAN", "Cursor", "Found", "Hit", "parse_cursor", "search"]
