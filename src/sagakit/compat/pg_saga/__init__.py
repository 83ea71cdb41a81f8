"""pg-saga (``from saga import ...``, PyPI ``pg-saga``) on sagakit's
durable workflow engine.

Change ``saga`` to ``sagakit.compat.pg_saga`` in your imports::

    from sagakit.compat.pg_saga import Saga, SagaError, SagaReturn

    saga = Saga("transfer_fund", dsn="postgresql://app@db/app")

    @saga.step
    async def debit(input, state, set_state, logger):
        await first_account.debit(input.amount)
        return credit(input)

    @saga.step
    async def credit(input, state, set_state, logger):
        await second_account.credit(input.amount)

    await saga.start("transfer-1", debit, TransferInput(amount=10), None)
    await saga.start_event_loop(10, 10, 0.5, 4, 1, 30)

Instances are sagakit workflow instances (``sagakit workflows list``), their
inputs and states JSON (:mod:`~sagakit.compat.pg_saga.codec`), in
PostgreSQL, SQLite or memory. See :mod:`~sagakit.compat.pg_saga.saga` for
the two defects of pg-saga 0.1.7 sagakit fixes (a failing step's retry
spin, an unknown step's hang).
"""

from __future__ import annotations

from sagakit.compat.pg_saga.active_record import activerecord
from sagakit.compat.pg_saga.logger import LogEntry, LogLevel
from sagakit.compat.pg_saga.saga import Saga, SagaError, SagaReturn

__all__ = ["LogEntry", "LogLevel", "Saga", "SagaError", "SagaReturn", "activerecord"]
