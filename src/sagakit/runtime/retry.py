"""Retrying a store call (or a publish) through an outage (a lost
connection, a restart)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sagakit.errors import SagaError, StoreError
from sagakit.ports.clock import Clock

T = TypeVar("T")

FIRST_DELAY = 0.05
MAX_DELAY = 2.0


async def retry_store(
    call: Callable[[], Awaitable[T]],
    *,
    clock: Clock,
    limit: float,
    logger: logging.Logger | None = None,
    message: str = "",
    extra: dict[str, Any] | None = None,
    failed: StoreError | None = None,
) -> T:
    """``call()``, retried on ``StoreError`` with capped exponential backoff
    (``FIRST_DELAY`` doubling up to ``MAX_DELAY``) for ``limit`` seconds;
    then the last error is raised, and at once one that retrying cannot fix
    (``StoreError.read_only``: the database refuses writes). With a
    ``logger``, each retry logs the fixed ``message`` with ``extra`` and the
    error.

    ``failed``: the error of a first call the caller made itself (a hot path
    that tries once before paying for this helper); retrying starts there."""
    return await retry_outage(
        call,
        StoreError,
        clock=clock,
        limit=limit,
        logger=logger,
        message=message,
        extra=extra,
        failed=failed,
    )


async def retry_outage(
    call: Callable[[], Awaitable[T]],
    errors: type[SagaError],
    *,
    clock: Clock,
    limit: float,
    logger: logging.Logger | None = None,
    message: str = "",
    extra: dict[str, Any] | None = None,
    failed: SagaError | None = None,
) -> T:
    """:func:`retry_store` for the ``errors`` of any service that can be
    away for a while (a ``TransportError`` while the broker restarts)."""
    delay, waited = FIRST_DELAY, 0.0
    error = failed
    while True:
        if error is not None:
            if waited >= limit or getattr(error, "read_only", False):
                raise error
            if logger is not None:
                logger.warning(message, extra={**(extra or {}), "error": str(error)})
            await clock.sleep(delay)
            waited += delay
            delay = min(delay * 2, MAX_DELAY)
        try:
            return await call()
        except errors as exc:
            error = exc
