"""A participant's check of a semantic lock before it acts on a key."""

from __future__ import annotations

from sagakit.locks import holder
from sagakit.messaging.envelope import Envelope
from sagakit.participant.service import CommandRejected
from sagakit.ports.locks import LockHolder, SagaLocks


async def require_lock(store: SagaLocks, key: str, message: Envelope) -> LockHolder:
    """The holder of ``key`` when it is the saga that sent ``message``;
    otherwise :class:`CommandRejected` (a business refusal, never retried)
    saying who holds it, if anyone. ``store`` is the saga store the
    orchestrators use (a participant that shares their database)::

        @stock.handler("stock.reserve")
        async def reserve(cmd: Seat, message: Envelope) -> dict:
            await require_lock(saga_store, f"seat:{cmd.seat}", message)
            ...
    """
    found = await holder(store, key)
    if found is not None and found.saga_id == message.saga_id:
        return found
    held = "nobody holds it" if found is None else f"saga {found.saga_id} holds it"
    raise CommandRejected(f"saga {message.saga_id} does not hold lock {key!r}: {held}")
