"""Running a compat layer's coroutine from the synchronous call it stands for.

saga-py's ``Saga.execute()`` and saga-framework's ``BaseSaga.execute()`` are
plain functions; sagakit's engine is asynchronous. :func:`call_sync` bridges
the two without leaving a trace in the user's exceptions: whether a loop runs
is asked and answered before the coroutine starts, so an exception an action
raises carries no ``RuntimeError: no running event loop`` as its
``__context__`` (an ``asyncio.run`` called inside ``except RuntimeError:``
would chain it to every exception the user's code raises).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_running() -> bool:
    """Whether this thread is running an event loop right now."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def call_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous code: in this thread, or in a
    helper thread when this thread already runs an event loop."""
    if not loop_running():
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


__all__ = ["call_sync", "loop_running"]
