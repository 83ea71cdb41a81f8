"""The store port: durable saga instances and their append-only step history.

Split by role, so a component can ask for only what it uses:
:class:`SagaRepository` (instances and history), :class:`SagaLeases`,
:class:`Outbox`, :class:`Inbox` (also part of the event store) and
:class:`SagaQueries` (listings for operators). :class:`SagaStore` is all of
them together, as every adapter provides, with :class:`SagaLocks` (the
semantic locks, :mod:`sagakit.ports.locks`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from sagakit._lazy import module_getattr
from sagakit.engine.state import SagaState, SagaStatus
from sagakit.ports.locks import SagaLocks

if TYPE_CHECKING:  # loaded on first read: see __getattr__ at the end
    from sagakit.ports.entry import (
        Create,
        HistoryEntry,
        InboxEntry,
        OutboxMessage,
        Save,
        saga_line,
    )
    from sagakit.ports.locks import LockChange


@dataclass(frozen=True, slots=True, kw_only=True)
class SagaRecord:
    """One saga instance as stored. ``version`` grows by one on every save."""

    saga_id: str
    saga_name: str
    status: SagaStatus
    version: int
    state: SagaState
    context: dict[str, Any]
    idempotency_key: str | None
    created_at: float
    updated_at: float
    deadline: float | None = None
    """Earliest reply deadline of a step waiting on another service, if any."""
    definition_version: int = 1
    """The version of the saga definition the instance started on."""
    fingerprint: str | None = None
    """That definition's structural fingerprint (None: unknown, written before
    versions were recorded; the name and version are trusted)."""
    waiting: str | None = None
    """Why no process drives the instance now (its definition is missing or
    changed where it was looked at); None when nothing is known against it."""
    previous_owner: str | None = field(default=None, compare=False)
    """On a record :meth:`SagaLeases.claim` returned: who held the instance's
    lease before this claim took it (its lease ran out, or the owner was
    known gone), None if nobody did (never leased, or handed back with
    ``release``: submitted, drained, changed by an operator's command).
    None on every other record; not part of equality."""

    @property
    def definition_key(self) -> str:
        """The definition this instance needs (see :func:`definition_key`)."""
        return definition_key(self.saga_name, self.definition_version, self.fingerprint)


def definition_key(name: str, version: int, fingerprint: str | None = None) -> str:
    """``name:version``, with ``:fingerprint`` when it is known. A process
    drives an instance whose key is among those of its registered sagas (each
    registers both forms, so an instance of unknown shape trusts the name);
    stores compare the keys they build in SQL the same way."""
    key = f"{name}:{version}"
    return key if fingerprint is None else f"{key}:{fingerprint}"


class Lease(NamedTuple):
    """How an unfinished instance is held (:meth:`SagaLeases.leases`)."""

    owner: str | None
    """Who holds (or last held) its lease; None: nobody."""
    live: bool
    """The lease has not expired (by the store's clock)."""
    version: int
    """The instance's stored version."""


class Created(NamedTuple):
    """What :meth:`SagaRepository.create` did: the stored record, and whether
    this call created it (False: its idempotency key was taken)."""

    record: SagaRecord
    created: bool


class SagaRepository(Protocol):
    """Instances and their history. Every method is one transaction.

    Leases: with ``owner`` and ``lease`` (seconds) both given, a write leases
    the instance to ``owner`` until now + ``lease``. "Now" is the database
    clock where there is one (PostgreSQL) and ``time.time()`` otherwise.
    """

    async def create(
        self,
        record: SagaRecord,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
    ) -> Created:
        """Insert a new instance; with an idempotency key already used by the same
        saga, insert nothing and return ``(existing, False)``. A saga id that
        exists already raises ``SagaAlreadyExists``. Every line of
        ``history`` names this saga: one of another saga is refused with
        ``StoreError`` and nothing is written.

        With ``owner`` and ``lease`` (seconds) both given, the new instance is
        leased to ``owner`` until now + ``lease``; otherwise it is unowned."""

    async def save(
        self,
        record: SagaRecord,
        expected_version: int,
        history: Sequence[HistoryEntry],
        *,
        owner: str | None = None,
        lease: float | None = None,
        outbox: Sequence[OutboxMessage] = (),
        inbox: InboxEntry | None = None,
        locks: LockChange | None = None,
    ) -> None:
        """Replace the instance (its definition version and fingerprint
        included; its ``waiting`` reason cleared) if it is still at
        ``expected_version`` and append ``history``; raise
        ``ConcurrencyError`` otherwise (``SagaNotFound`` if it does not exist).
        A line of ``history`` that names another saga is refused with
        ``StoreError``, and nothing is written.

        With ``owner`` and ``lease`` both given, the lease is set to ``owner``
        until now + ``lease``; otherwise it is left as it is. ``outbox``
        messages and the ``inbox`` entry are written in the same transaction;
        if the inbox entry exists already, nothing is written and
        ``DuplicateMessage`` is raised. So is ``locks``, the change to the
        instance's semantic locks (see :class:`~sagakit.ports.locks.LockChange`:
        ``LockUnavailable`` when a key is busy, and nothing is written)."""

    async def get(self, saga_id: str) -> SagaRecord:
        """The instance, or ``SagaNotFound``."""

    async def history(self, saga_id: str) -> list[HistoryEntry]:
        """The timeline in the order it was written."""


@runtime_checkable
class GroupSaves(Protocol):
    """A store that commits the writes of several instances together."""

    async def create_many(self, creates: Sequence[Create]) -> list[Created | Exception]:
        """Every create of ``creates`` in one transaction, each as
        :meth:`SagaRepository.create` would do it alone: its ``Created``, or
        the ``SagaAlreadyExists`` it would raise (then nothing of it is
        written). A ``StoreError`` is raised and commits none: so is a batch
        in which a create has a history line of another saga (even one of
        the batch)."""

    async def save_many(self, saves: Sequence[Save]) -> list[Exception | None]:
        """Every save of ``saves`` (of different instances) in one
        transaction, so one commit: each exactly as :meth:`SagaRepository.save`
        would do it alone. What a save would raise (``ConcurrencyError``,
        ``SagaNotFound``, ``DuplicateMessage``) is returned in its place and
        writes nothing of that save, while the others are committed. A
        ``StoreError`` (the transaction failed) is raised and commits none,
        as it is for a batch in which a save has a history line of another
        saga (even one of the batch): group commit then writes each alone,
        and only that one fails."""


class SagaLeases(Protocol):
    """Which worker runs which instance."""

    async def claim(
        self,
        owner: str,
        saga_names: Collection[str],
        *,
        lease: float,
        limit: int = 100,
        gone: Collection[str] = (),
        after: str | None = None,
    ) -> list[SagaRecord]:
        """Atomically take up to ``limit`` non-terminal instances of ``saga_names``
        whose lease is missing or expired, or held by one of the ``gone``
        owners (known dead: their leases need not run out), oldest first
        (by ``created_at``, then id). An entry of ``saga_names`` is a saga
        name (any version) or a definition key (:func:`definition_key`: only
        the instances of that definition). With ``after`` (an instance's id),
        only instances after it in that order: a recovery taking every
        instance batch by batch passes the last id of the previous batch, so
        that no batch reads again what an earlier one skipped.

        Each is leased to ``owner`` until now + ``lease`` and its version is
        bumped, so a save by the previous owner raises ``ConcurrencyError``;
        its ``waiting`` reason is cleared. Returns the records with their new
        version, each with the owner it was taken from
        (``SagaRecord.previous_owner``). Two concurrent claimers never get
        the same instance."""

    async def stranded(
        self,
        saga_names: Collection[str],
        keys: Collection[str],
        *,
        limit: int = 100,
        gone: Collection[str] = (),
    ) -> list[SagaRecord]:
        """Non-terminal instances of ``saga_names`` whose ``definition_key`` is
        not in ``keys``, with no ``waiting`` reason yet and no live lease (a
        lease of one of the ``gone`` owners does not count), oldest first:
        those a process with these definitions must report as waiting (with
        :meth:`mark_waiting`) instead of driving."""

    async def mark_waiting(self, saga_id: str, reason: str) -> None:
        """Record why no process drives this non-terminal instance (nothing
        else changes, not even its version). A save or a claim clears it."""

    async def renew(
        self, owner: str, saga_ids: Collection[str], *, lease: float
    ) -> list[str]:
        """Extend to now + ``lease`` the leases ``owner`` still holds on these
        non-terminal instances; returns the ids renewed (an instance claimed by
        another worker meanwhile is not)."""

    async def leases(self, saga_ids: Collection[str]) -> dict[str, Lease]:
        """How each of these unfinished instances is held: its owner, whether
        that lease is live (not expired by the store's clock, the database's on
        PostgreSQL) and its version. Ended or unknown ids are left out.

        An operator's request reads it to leave a live owner in charge, and an
        owner to see that a paused instance it parks was changed elsewhere."""

    async def lease_holders(self, saga_names: Collection[str]) -> list[str]:
        """The owners holding a lease (expired or not) on non-terminal
        instances of ``saga_names``, each once."""

    async def release(self, owner: str, saga_ids: Collection[str]) -> None:
        """Drop the leases ``owner`` still holds on these instances, so another
        worker can claim them at once (graceful shutdown)."""

    async def unfinished(
        self,
        saga_names: Collection[str] | None = None,
        limit: int = 1000,
        *,
        after: str | None = None,
    ) -> list[str]:
        """Ids of at most ``limit`` instances of ``saga_names`` (None: of every
        saga) that are not in a terminal status, oldest first (by
        ``created_at``, then id); with ``after`` (the last id of the previous
        page), those after it: every one, page by page."""


class Outbox(Protocol):
    """Messages written with a save, published by a relay after the commit."""

    async def claim_outbox(
        self, owner: str, *, lease: float, limit: int = 100
    ) -> list[OutboxMessage]:
        """Take up to ``limit`` unsent messages whose ``available_at`` has come
        and that no other relay holds (or whose hold expired), oldest first;
        hold them for ``lease`` seconds."""

    async def mark_sent(self, message_ids: Collection[str]) -> None:
        """Forget these messages: they were published."""

    async def release_outbox(self, owner: str | None = None) -> int:
        """End the holds of ``owner`` (of everyone if None) on outbox messages,
        so that any relay may claim them at once; returns how many."""


class Inbox(Protocol):
    """Messages a consumer took, so a redelivery runs its handler once."""

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        """The reply stored when ``consumer`` took this message, ``b""`` if it
        stored none, or ``None`` if it never took it."""

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """Remember that ``consumer`` took this message (with its reply, to
        resend on a duplicate); False if it was remembered already."""


@runtime_checkable
class InboxBatches(Protocol):
    """An inbox that records several entries in one transaction (optional:
    a participant handling several commands at once commits their entries
    together where its store offers this, one by one elsewhere)."""

    async def record_inbox_many(
        self, consumer: str, entries: Sequence[tuple[str, bytes | None]]
    ) -> list[bool]:
        """:meth:`Inbox.record_inbox` of each (message id, reply) of
        ``entries``, all committed together or none; for each, whether it
        was new."""


class SagaQueries(Protocol):
    """Read-only lookups for operators (CLI, dashboard) and the deadline check."""

    async def list_sagas(
        self,
        *,
        status: SagaStatus | None = None,
        saga_name: str | None = None,
        limit: int = 50,
        created_before: float | None = None,
        waiting: bool = False,
        before_id: str | None = None,
    ) -> list[SagaRecord]:
        """Newest first (by ``created_at``, then id); ``created_before`` (Unix
        time) keeps only instances created strictly before it, or with
        ``before_id`` too, those before the instance created then with that
        id: the next page after it (keyset paging); ``waiting`` only
        unfinished instances marked waiting (see
        :meth:`SagaLeases.mark_waiting`)."""

    async def find_by_key(
        self, idempotency_key: str, limit: int = 20
    ) -> list[SagaRecord]:
        """Instances (of any saga) started with this idempotency key, newest
        first."""

    async def search_context(
        self, text: str, *, limit: int = 50, scan: int = 10_000
    ) -> list[SagaRecord]:
        """Among the ``scan`` newest instances, those whose context, as JSON
        text, contains ``text`` (ignoring the case of ASCII letters), newest
        first: a bounded scan, for an operator's search."""

    async def count_by_status(
        self, saga_name: str | None = None
    ) -> dict[SagaStatus, int]:
        """How many instances (of ``saga_name``, or of every saga) are in each
        status; statuses with none are left out."""

    async def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids that start with ``prefix``, in id order (for ``sagakit show``)."""

    async def live_definitions(self) -> dict[tuple[str, int, str | None], int]:
        """How many non-terminal instances need each definition, by
        ``(saga_name, definition_version, fingerprint)``."""

    async def due_deadlines(
        self, saga_names: Collection[str], *, limit: int = 100
    ) -> list[str]:
        """Ids of non-terminal instances whose ``deadline`` has passed."""


class SagaStore(
    SagaRepository, SagaLeases, Outbox, Inbox, SagaQueries, SagaLocks, Protocol
):
    """Durable saga state: every role together, as each adapter provides it.
    Every method is one transaction.

    Adapters also count their commits in a ``commits`` attribute (tests and
    benchmarks check the write budget with it); it is not part of the port.
    """

    async def close(self) -> None: ...


__all__ = [
    "Create",
    "Created",
    "GroupSaves",
    "HistoryEntry",
    "Inbox",
    "InboxBatches",
    "InboxEntry",
    "Lease",
    "Outbox",
    "OutboxMessage",
    "SagaLeases",
    "SagaQueries",
    "SagaRecord",
    "SagaRepository",
    "SagaStore",
    "Save",
    "definition_key",
    "saga_line",
]

# The values a write carries (:mod:`sagakit.ports.entry`) load when first read
# (sagakit._lazy.module_getattr): a command that only reads instances
# (``sagakit list``) builds none of their dataclasses.
__getattr__ = module_getattr(
    globals(),
    "sagakit.ports.entry",
    ("Create", "HistoryEntry", "InboxEntry", "OutboxMessage", "Save", "saga_line"),
)
