"""How many connections a PostgreSQL store opens: ``max_size`` bounds them
all, the lane of one-statement calls and the pool of transactions together,
as a user sizing the server's ``max_connections`` reads it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings

import asyncpg
import pytest

from sagakit import StoreError
from sagakit.adapters.store.pg_connections import Connections
from sagakit.adapters.store.postgres import PostgresStore
from sagakit.adapters.store.postgres_database import split_connections

pytestmark = pytest.mark.postgres


async def connections_to(url: str) -> int:
    """Client connections open to ``url``'s database, as the server sees
    them (this one's own left out)."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


async def busy(store: PostgresStore, calls: int) -> None:
    """``calls`` one-statement reads and as many transactions, all at once:
    more than any ``max_size`` here lets run side by side."""

    async def transaction() -> None:
        async with store.database.begun() as conn:
            await conn.execute("SELECT pg_sleep(0.02)")

    await asyncio.gather(
        *(store.count_by_status() for _ in range(calls)),
        *(transaction() for _ in range(calls)),
    )


@pytest.mark.parametrize("max_size", [2, 3, 5, 10, 20])
async def test_max_size_bounds_the_lane_and_the_pool_together(
    pg_url: str, max_size: int
) -> None:
    store = await PostgresStore.connect(pg_url, max_size=max_size)
    try:
        await busy(store, calls=60)
        # both keep what they opened, idle: the server counts the peak
        assert await connections_to(pg_url) == max_size
    finally:
        await store.close()
    assert await connections_to(pg_url) == 0


def test_the_pool_takes_at_most_half_and_the_lane_the_rest() -> None:
    assert split_connections(1) == (1, 1)
    assert split_connections(2) == (1, 1)
    assert split_connections(3) == (1, 2)
    assert split_connections(10) == (4, 6)
    assert split_connections(20) == (4, 16)
    with pytest.raises(ValueError, match="at least 1"):
        split_connections(0)


async def test_a_listen_cancelled_midway_leaves_no_connection_open(
    pg_url: str,
) -> None:
    """A lock watch stopped while it starts listening (its worker closing)
    closes the listener's connection: none is left to the garbage
    collector, which would warn, nor open on the server."""
    store = await PostgresStore.connect(pg_url, max_size=2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            listened = 0
            for attempt in range(80):
                task = asyncio.ensure_future(
                    store.database.listen("sagakit_test", lambda: None)
                )
                await asyncio.sleep(attempt * 0.0002)  # 0 to 16 ms in
                task.cancel()
                try:
                    stop = await task
                except asyncio.CancelledError:
                    continue
                listened += 1
                await stop()
            gc.collect()
        leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaked, [str(w.message) for w in leaked]
        assert listened < 80  # some were cancelled midway
        assert await connections_to(pg_url) <= 1  # the lane's
    finally:
        await store.close()


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_gives_it_back(
    pg_url: str,
) -> None:
    lane = Connections(pg_url, max_size=1)
    await lane.open(1)
    try:
        held = lane.connection()
        await held.__aenter__()
        waiting = asyncio.ensure_future(lane.connection().__aenter__())
        await asyncio.sleep(0)  # queued for the one connection
        await held.__aexit__(None, None, None)  # handed to the waiter...
        waiting.cancel()  # ...which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await waiting
        async with asyncio.timeout(5):  # not lost: the next caller gets it
            async with lane.connection() as conn:
                assert await conn.fetchval("SELECT 1") == 1
        assert await connections_to(pg_url) == 1
    finally:
        await lane.close()


async def test_a_closed_database_opens_no_connection(pg_url: str) -> None:
    """What outlives its store (the lock watch of an orchestrator never
    closed) gets a StoreError, not a connection nobody would close."""
    store = await PostgresStore.connect(pg_url, max_size=2)
    lane = Connections(pg_url, max_size=1)
    await lane.open(1)
    held = lane.connection()
    await held.__aenter__()
    waiting = asyncio.ensure_future(lane.connection().__aenter__())
    await asyncio.sleep(0)
    await store.close()
    await lane.close()
    with pytest.raises(StoreError, match="listening to sagakit_test"):
        await store.database.listen("sagakit_test", lambda: None)
    with pytest.raises(StoreError):
        await store.count_by_status()
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        await waiting  # it waited for the lane's one connection
    with pytest.raises(asyncpg.InterfaceError, match="closed"):
        await lane.dedicated()
    await held.__aexit__(None, None, None)
    assert await connections_to(pg_url) == 0


async def test_a_listen_stopped_and_cancelled_midway_leaves_no_connection_open(
    pg_url: str,
) -> None:
    """Stopping to listen is cancelled too at times (a lock watch whose
    loop ends as it stops): the connection goes all the same."""
    store = await PostgresStore.connect(pg_url, max_size=2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for attempt in range(40):
                stop = await store.database.listen("sagakit_test", lambda: None)
                stopping = asyncio.ensure_future(stop())
                await asyncio.sleep(attempt * 0.0001)  # 0 to 4 ms in
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopping
            await asyncio.sleep(0.05)  # what the shield lets finish
            gc.collect()
        leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaked, [str(w.message) for w in leaked]
        assert await connections_to(pg_url) <= 1  # the lane's
    finally:
        await store.close()
