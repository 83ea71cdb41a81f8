"""Operator actions on stored sagas: ``retry``, ``resume``, ``cancel``,
``pause``, the bulk ones and the dead letters. :mod:`sagakit.admin` (its
docstring tells how they hand the work over) exports them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from sagakit.admin.reading import find
from sagakit.engine.state import SagaStatus
from sagakit.errors import ConcurrencyError, SagaError, StateError
from sagakit.ports.store import SagaRecord, SagaStore

if TYPE_CHECKING:  # the readings (``sagakit list``, ``show``) load none of these
    from sagakit.definition.saga import Saga
    from sagakit.ports.clock import Clock
    from sagakit.ports.transport import DeadLetter, Transport
    from sagakit.runtime import operator
    from sagakit.runtime.client import SagaClient

logger = logging.getLogger(__name__)


ADMIN_LEASE = 10.0
"""Seconds an action holds the instance before handing it over (it releases at
once; the lease only matters if the process dies in between)."""

REPLAY_BATCH = 10
"""Dead letters moved per transport call by :func:`replay_dead_letters`."""

Progress = Callable[[int, int], object]
"""``progress(done, total)``, called after each unit of work."""


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
