"""Retrying a store call through an outage (a lost connection, a restart)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sagakit.errors import StoreError
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
) -> T:
    """``call()``, retried on ``StoreError`` with capped exponential backoff
    (``FIRST_DELAY`` doubling up to ``MAX_DELAY``) for ``limit`` seconds;
    then the last error is raised. With a ``logger``, each retry logs the
    fixed ``message`` with ``extra`` and the error."""
    delay, waited = FIRST_DELAY, 0.0
    while True:
        try:
            return await call()
        except StoreError as exc:
            if waited >= limit:
                raise
            if logger is not None:
                logger.warning(message, extra={**(extra or {}), "error": str(exc)})
            await clock.sleep(delay)
            waited += delay
            delay = min(delay * 2, MAX_DELAY)
