"""The durable writes on a remote saga's path, measured in the run that
compares it with the bare broker floor (``remote_throughput.py``).

One saga at a time, every remote step waits for two commits the floor
never makes: the orchestrator saves the saga with the next command in its
outbox before the command may leave (else a crash after the send forgets
it was sent), and the participant commits the command's inbox entry with
its reply before the reply may leave (else a redelivered command runs its
handler twice). Neither can overlap the broker's hops, so however little
the rest of sagakit cost, one saga takes at least the floor's time plus
these writes:

    sagakit/floor <= floor time a saga / (floor time a saga + writes a saga)

:class:`StoreTimer` adds up the wall time of the orchestrator store's write
calls while the sequential rows run; :func:`inbox_step_seconds` times the
participant's two inbox calls per command (the lookup of an earlier reply
and the commit) on a store of the participants' kind, in the directory of
their files, in the same run.
"""

from __future__ import annotations

import functools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sagakit import SQLiteStore

WRITES = ("create_one", "save_one", "create_many", "save_many")
"""The store's calls that commit a saga's transitions (group commit's too)."""
REPLY = b'{"v":1,"kind":"reply","ok":true,"result":{"order_id":1,"held":true}}'
"""A reply about the size of the benchmark's participants' replies."""


class StoreTimer:
    """Wraps a store's write calls on the instance; while :attr:`on`, adds
    their wall time to :attr:`seconds`."""

    def __init__(self, store: Any) -> None:
        self.on = False
        self.seconds = 0.0
        for name in WRITES:
            call = getattr(store, name, None)
            if call is not None:
                setattr(store, name, self._timed(call))

    def _timed(
        self, call: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(call)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return await call(*args, **kwargs)
            start = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


async def inbox_step_seconds(directory: Path, calls: int = 300) -> float:
    """The median wall time of one command's inbox work on SQLite: the
    lookup of an earlier reply, then the commit of the entry and its reply
    (what a participant does before it sends the reply)."""
    store = SQLiteStore(directory / f"inbox-probe-{uuid.uuid4().hex[:8]}.db")
    times: list[float] = []
    try:
        for i in range(calls + calls // 10):
            message_id = f"probe-{i}"
            start = time.perf_counter()
            await store.inbox_reply("probe", message_id)
            await store.record_inbox("probe", message_id, REPLY)
            if i >= calls // 10:  # the first tenth warms the cache
                times.append(time.perf_counter() - start)
    finally:
        await store.close()
    return statistics.median(times)


def write_ceiling(floor_per_s: float, writes_s_per_saga: float) -> float:
    """The most sagakit/floor can be one saga at a time (see the module)."""
    floor_s = 1.0 / floor_per_s
    return floor_s / (floor_s + writes_s_per_saga)
