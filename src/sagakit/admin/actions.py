"""Admin operations: the API behind ``sagakit list|show|retry|resume|cancel|dlq``
and the dashboard's actions (the actions on one compensation and forks are
in :mod:`sagakit.admin.repair`, exported here; ``locks`` and
``release_lock`` read and release semantic locks). Nothing here prints;
callers render the results.

**Every action names who asks and why** (``by=``, ``reason=``; blank is a
:class:`~sagakit.errors.SagaError`). Both go into the saga's history with
the action, and what it changed (the audit trail ``sagakit show`` lists).

**Operator actions hand the work over.** ``retry``, ``resume`` and ``cancel``
commit one transition (a ``*_requested`` history line, the new state) through a
short-lived :class:`~sagakit.runtime.client.SagaClient` and then release the
instance's lease instead of driving it: the process that asked (a CLI call, a
web request) returns at once, and the steps or compensations run wherever
sagas run.

- With workers (``sagakit worker``), one of them claims the instance at its
  next poll and runs the retried steps, or the compensations.
- Without workers, ``sagakit recover MODULE`` (or ``Orchestrator.recover()``)
  finishes it.

**A saga a live worker drives stays with it.** A ``pause``, ``unpause`` or
``cancel`` of a saga whose lease a live process holds is committed without
taking that lease: the worker's next commit of the saga is refused (the
version moved on), so it reloads the saga, records the outcome of its step
in flight and goes on as the request says (compensating, or holding the
next step). No step runs twice because of a request. A paused saga the
worker parks goes on within a second of an ``unpause``. Only a saga nobody
drives (no lease, an expired one, a dead process's) is handed over as above.

A request that does not fit the saga's state (retrying a saga that
succeeded, cancelling one past its pivot) raises
:class:`~sagakit.errors.StateError` and changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from sagakit.engine.state import SagaStatus
from sagakit.errors import ConcurrencyError, SagaError, SagaNotFound, StateError
from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore

if TYPE_CHECKING:  # the readings (``sagakit list``, ``show``) load none of these
    from sagakit.definition.saga import Saga
    from sagakit.ports.clock import Clock
    from sagakit.ports.transport import DeadLetter, Transport
    from sagakit.runtime import operator
    from sagakit.runtime.client import SagaClient

logger = logging.getLogger(__name__)

__all__ = [
    "BulkAction",
    "BulkRetry",
    "BulkSagaAction",
    "DeadLetterInfo",
    "Driver",
    "SagaAction",
    "SagaDetail",
    "cancel",
    "children_of",
    "dead_letters",
    "describe",
    "driver_of",
    "drivers",
    "find",
    "fork",
    "has_queue",
    "list_sagas",
    "locks",
    "mark_compensated",
    "pause",
    "pause_all",
    "release_lock",
    "replay_dead_letters",
    "resume",
    "retry",
    "retry_compensation",
    "retry_failed",
    "said",
    "show",
    "skip_compensation",
    "unpause",
    "unpause_all",
]

MIN_PREFIX = 6
"""Shortest id prefix :func:`find` accepts."""

ADMIN_LEASE = 10.0
"""Seconds an action holds the instance before handing it over (it releases at
once; the lease only matters if the process dies in between)."""

REPLAY_BATCH = 10
"""Dead letters moved per transport call by :func:`replay_dead_letters`."""

Progress = Callable[[int, int], object]
"""``progress(done, total)``, called after each unit of work."""


@dataclass(frozen=True, slots=True)
class SagaDetail:
    """One saga: its record, its timeline (results, payloads, errors) and
    the sub-sagas its steps ran (its parent is in ``record.state.parent``)."""

    record: SagaRecord
    history: list[HistoryEntry]
    children: list[SagaRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BulkRetry:
    """What :func:`retry_failed` did: ids retried, and ids refused with why."""

    retried: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BulkAction:
    """What :func:`pause_all` or :func:`unpause_all` did: ids acted on, and
    ids refused with why (a saga that ended or changed meanwhile)."""

    done: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """A dead letter and what its body says, if it decodes as an envelope."""

    letter: DeadLetter
    message_type: str | None
    message_id: str | None
    saga_id: str | None

    @property
    def payload(self) -> Any:
        """The envelope's payload, or ``None`` for an undecodable body."""
        from sagakit.messaging.envelope import decode  # noqa: PLC0415 - see top

        try:
            return decode(self.letter.body).payload
        except Exception:  # the body is whatever was dead-lettered
            return None


# -- reading -----------------------------------------------------------------


async def list_sagas(
    store: SagaStore,
    *,
    status: SagaStatus | None = None,
    saga: str | None = None,
    older_than: float | None = None,
    limit: int = 50,
    clock: Clock | None = None,
    waiting: bool = False,
    after: tuple[float, str] | None = None,
) -> list[SagaRecord]:
    """Sagas newest first; ``older_than`` (seconds) keeps those created more
    than that long ago; ``waiting`` only the unfinished ones no process
    drives because their definition is missing or changed where they were
    looked at (``SagaRecord.waiting`` says why). ``after`` (the
    ``created_at`` and id of the last saga of a page) gives the next page."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    before = None
    if older_than is not None:
        if older_than < 0:
            raise SagaError(f"older_than must be >= 0 seconds, got {older_than}")
        if clock is None:
            from sagakit.ports.clock import SystemClock  # noqa: PLC0415 - see top

            clock = SystemClock()
        before = clock.now() - older_than
    before_id = None
    if after is not None and (before is None or after[0] < before):
        before, before_id = after
    return await store.list_sagas(
        status=status,
        saga_name=saga,
        limit=limit,
        created_before=before,
        waiting=waiting,
        before_id=before_id,
    )


async def find(store: SagaStore, ident: str) -> SagaRecord:
    """The saga with this id, or with this unique id prefix (>= 6 characters);
    ``SagaNotFound`` otherwise (also for an ambiguous prefix)."""
    try:
        return await store.get(ident)
    except SagaNotFound:
        if len(ident) < MIN_PREFIX:
            raise SagaNotFound(
                f"no saga with id {ident!r} (an id prefix needs at least "
                f"{MIN_PREFIX} characters)"
            ) from None
    matches = await store.ids_with_prefix(ident, limit=4)
    if not matches:
        raise SagaNotFound(f"no saga with id or id prefix {ident!r}")
    if len(matches) > 1:
        shown = ", ".join(matches[:3])
        more = ", ..." if len(matches) > 3 else ""  # noqa: PLR2004 - show three
        raise SagaNotFound(f"id prefix {ident!r} is ambiguous: {shown}{more}")
    return await store.get(matches[0])


async def show(store: SagaStore, saga_id: str) -> SagaDetail:
    """The saga (by id or unique prefix), its whole timeline and its
    sub-sagas."""
    record = await find(store, saga_id)
    history = await store.history(record.saga_id)
    return SagaDetail(record, history, await children_of(store, record))


async def children_of(
    store: SagaStore, record: SagaRecord, limit: int = 100
) -> list[SagaRecord]:
    """The sub-saga instances that ``record``'s steps ran (their ids are
    ``<id>/<step>``), in id order."""
    found = []
    for child_id in await store.ids_with_prefix(f"{record.saga_id}/", limit=limit):
        try:
            child = await store.get(child_id)
        except SagaNotFound:
            continue  # deleted meanwhile
        parent = child.state.parent
        if parent is not None and parent.saga_id == record.saga_id:
            found.append(child)
    return found


# -- operator actions --------------------------------------------------------


def said(by: str, reason: str) -> tuple[str, str]:
    """``by`` and ``reason`` stripped; ``SagaError`` if either is blank: an
    operator action records who asked for it and why."""
    who, why = (by or "").strip(), (reason or "").strip()
    if not who:
        raise SagaError(
            "an operator action needs the operator's name (who asks): it is "
            "kept in the saga's history"
        )
    if not why:
        raise SagaError(
            "an operator action needs a reason: it is kept in the saga's history"
        )
    return who, why


async def request(
    store: SagaStore,
    sagas: Iterable[Saga[Any]],
    saga_id: str,
    action: operator.Action,
    *,
    by: str,
    reason: str,
    clock: Clock | None,
    step: str | None = None,
) -> SagaRecord:
    by, reason = said(by, reason)
    record = await find(store, saga_id)
    client = action_client(store, sagas, clock)
    await client.request(record.saga_id, action, reason=reason, by=by, step=step)
    logger.info(
        "admin action committed",
        extra={"action": f"admin_{action}", "saga_id": record.saga_id, "by": by},
    )
    return await store.get(record.saga_id)


def action_client(
    store: SagaStore, sagas: Iterable[Saga[Any]], clock: Clock | None
) -> SagaClient:
    """A client that holds what it acts on under this process's own id, so
    a crash before it hands the saga over leaves it to the next worker at
    once (a dead process's lease is not waited out)."""
    from sagakit.runtime.client import SagaClient  # noqa: PLC0415 - see top

    return SagaClient(
        store, sagas, clock=clock, worker_id=_admin_id(), lease=ADMIN_LEASE
    )


@cache
def _admin_id() -> str:
    """This process's owner id for the sagas its actions hold (one for all
    of them: a dashboard acts many times)."""
    from sagakit.runtime.owners import default_worker_id  # noqa: PLC0415

    return default_worker_id()


class Action:
    """An admin function of one operator action (named after it): its
    subclasses say on what it acts."""

    def __init__(self, action: operator.Action, doc: str, name: str = "") -> None:
        self.action = action
        self.__name__ = self.__qualname__ = name or action
        self.__doc__ = doc


class SagaAction(Action):
    """An operator action on one saga (:func:`retry`, :func:`resume`,
    :func:`cancel`, :func:`pause`, :func:`unpause`): called, it commits the
    request and returns the record as committed."""

    async def __call__(
        self,
        store: SagaStore,
        sagas: Iterable[Saga[Any]],
        saga_id: str,
        *,
        by: str,
        reason: str,
        clock: Clock | None = None,
    ) -> SagaRecord:
        return await request(
            store, sagas, saga_id, self.action, by=by, reason=reason, clock=clock
        )


class BulkSagaAction(Action):
    """An operator action on every fitting instance of one saga
    (:func:`pause_all`, :func:`unpause_all`)."""

    async def __call__(
        self,
        store: SagaStore,
        sagas: Sequence[Saga[Any]],
        saga: str,
        *,
        version: int | None = None,
        by: str,
        reason: str,
        limit: int = 10_000,
        clock: Clock | None = None,
    ) -> BulkAction:
        return await _bulk(
            store,
            sagas,
            saga,
            self.action,
            version=version,
            by=by,
            reason=reason,
            limit=limit,
            clock=clock,
        )


retry = SagaAction(
    "retry",
    """Run the failed steps of a ``failed`` saga again (fresh retry budget);
    a worker or ``recover`` runs them. Returns the record as committed.""",
)
resume = SagaAction(
    "resume",
    """Retry the failed compensation of a ``compensation_failed`` saga and go
    on rolling back; a worker or ``recover`` runs it.""",
)
cancel = SagaAction(
    "cancel",
    """Stop a ``running`` saga and compensate what it completed (refused past
    its pivot); a worker or ``recover`` runs the compensations.""",
)
pause = SagaAction(
    "pause",
    """Pause a running or compensating saga: steps in flight finish and are
    recorded, no new step starts until :func:`unpause`.""",
)
unpause = SagaAction(
    "unpause",
    """Let a paused saga go on where it stopped; a worker or ``recover``
    runs what the pause held back.""",
)
pause_all = BulkSagaAction(
    "pause",
    name="pause_all",
    doc="""Pause every running or compensating instance of ``saga`` (only those
    started on definition ``version``, if given) that is not paused yet.""",
)
unpause_all = BulkSagaAction(
    "unpause",
    name="unpause_all",
    doc="""Unpause every paused instance of ``saga`` (of ``version``, if given).""",
)


async def _bulk(
    store: SagaStore,
    sagas: Sequence[Saga[Any]],
    saga: str,
    action: operator.Action,
    *,
    version: int | None,
    by: str,
    reason: str,
    limit: int,
    clock: Clock | None,
) -> BulkAction:
    _bulk_scope(sagas, saga, limit)
    by, reason = said(by, reason)
    result = BulkAction()
    for saga_id in await store.unfinished([saga], limit=limit):
        record = await store.get(saga_id)
        if version is not None and record.definition_version != version:
            continue
        if record.state.paused != (action == "unpause"):
            continue  # already as asked
        try:
            await request(
                store, sagas, saga_id, action, by=by, reason=reason, clock=clock
            )
        except (StateError, ConcurrencyError) as exc:
            result.refused[saga_id] = str(exc)
        else:
            result.done.append(saga_id)
    return result


def _bulk_scope(sagas: Sequence[Saga[Any]], saga: str | None, limit: int) -> set[str]:
    """The names a bulk action may touch; a SagaError for a bad ``limit`` or
    a ``saga`` none of ``sagas`` defines."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    known = {s.name for s in sagas}
    if saga is not None and saga not in known:
        raise SagaError(
            f"no definition of saga {saga!r} among {', '.join(sorted(known))}"
        )
    return known


async def retry_failed(
    store: SagaStore,
    sagas: Sequence[Saga[Any]],
    *,
    saga: str | None = None,
    limit: int = 100,
    by: str,
    reason: str,
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> BulkRetry:
    """Retry up to ``limit`` ``failed`` sagas of these definitions (only those
    named ``saga``, if given), newest first: the ones ``sagakit list --status
    failed`` shows first. A saga that changed meanwhile is refused and
    skipped, not fatal."""
    known = _bulk_scope(sagas, saga, limit)
    by, reason = said(by, reason)
    found: list[SagaRecord] = []
    for name in sorted(known if saga is None else {saga}):
        found += await store.list_sagas(
            status=SagaStatus.FAILED, saga_name=name, limit=limit
        )
    found.sort(key=lambda r: (r.created_at, r.saga_id), reverse=True)
    chosen = found[:limit]
    result = BulkRetry()
    for done, record in enumerate(chosen, start=1):
        try:
            await retry(store, sagas, record.saga_id, by=by, reason=reason, clock=clock)
        except (StateError, ConcurrencyError) as exc:
            result.refused[record.saga_id] = str(exc)
        else:
            result.retried.append(record.saga_id)
        if progress is not None:
            progress(done, len(chosen))
    return result


# -- dead letters ------------------------------------------------------------


def describe(letter: DeadLetter) -> DeadLetterInfo:
    """What a dead letter's body says (``None`` fields if it is not an envelope)."""
    from sagakit.messaging.envelope import decode  # noqa: PLC0415 - see top

    try:
        message = decode(letter.body)
    except Exception:  # undecodable is why many letters are dead
        return DeadLetterInfo(letter, None, _raw_id(letter.body), None)
    return DeadLetterInfo(letter, message.type, message.id, message.saga_id)


def _raw_id(body: bytes) -> str | None:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


async def has_queue(transport: Transport, queue: str) -> bool | None:
    """Whether the broker has ``queue`` (or its dead-letter queue), looked
    up without creating it; None when the transport cannot tell (see
    :class:`~sagakit.ports.transport.QueueLookup`)."""
    from sagakit.ports.transport import QueueLookup  # noqa: PLC0415 - see top

    if isinstance(transport, QueueLookup):
        return await transport.has_queue(queue)
    return None


async def dead_letters(
    transport: Transport, queue: str, *, limit: int = 100
) -> list[DeadLetterInfo]:
    """Dead letters of ``queue``, oldest first (left where they are)."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    return [describe(d) for d in await transport.dead_letters(queue, limit)]


async def replay_dead_letters(
    transport: Transport,
    queue: str,
    *,
    limit: int = 100,
    progress: Progress | None = None,
) -> int:
    """Move up to ``limit`` dead letters back to ``queue``, oldest first (fix
    the handler first); returns how many moved. ``progress(done, total)``
    follows the batches; ``total`` is what was dead when the replay began."""
    if limit < 1:
        raise SagaError(f"limit must be at least 1, got {limit}")
    total = len(await transport.dead_letters(queue, limit))
    moved = 0
    while moved < total:
        got = await transport.replay_dead_letters(
            queue, min(REPLAY_BATCH, total - moved)
        )
        if got == 0:
            break  # someone else replayed or took them meanwhile
        moved += got
        if progress is not None:
            progress(moved, total)
    logger.info(
        "dead letters replayed",
        extra={"action": "dlq_replayed", "queue": queue, "moved": moved},
    )
    return moved


# the actions on one compensation, and forks (they use the helpers above)
from sagakit.admin.driving import Driver, driver_of, drivers  # noqa: E402
from sagakit.admin.lock_actions import locks, release_lock  # noqa: E402
from sagakit.admin.repair import (  # noqa: E402
    fork,
    mark_compensated,
    retry_compensation,
    skip_compensation,
)
