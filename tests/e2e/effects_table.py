"""The ``effects`` table of the multi-process tests, on PostgreSQL or MySQL.

The apps' steps record ``(<key column>, step, pid)`` rows through the driver
the URL names (asyncpg for ``postgresql://``, asyncmy for ``mysql://``);
the tests create the table and read rows (as dicts) through the same
drivers. Placeholders differ (``$1`` / ``%s``), so readers pass literal SQL.
"""

from __future__ import annotations

from typing import Any

from sagakit.adapters.store.database import is_mysql

_CLOCK = {
    "postgres": ", at double precision NOT NULL "
    "DEFAULT extract(epoch FROM clock_timestamp())",
    "mysql": ", at DOUBLE NOT NULL DEFAULT (UNIX_TIMESTAMP(SYSDATE(6)))",
}
"""The ``at`` column: the database's clock when the row was written."""
_DDL = {
    "postgres": "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "{key} text NOT NULL, step text NOT NULL, pid integer NOT NULL",
    "mysql": "id BIGINT AUTO_INCREMENT PRIMARY KEY, "
    "{key} VARCHAR(255) NOT NULL, step VARCHAR(64) NOT NULL, pid INT NOT NULL",
}


async def fetch(url: str, *statements: str) -> list[list[dict[str, Any]]]:
    """Run ``statements`` in order on one autocommit connection; the rows
    of each, as dicts."""
    if is_mysql(url):
        import asyncmy  # noqa: PLC0415 - only the MySQL tests need the driver
        from asyncmy.cursors import DictCursor  # noqa: PLC0415

        from sagakit.adapters.store.mysql_database import options  # noqa: PLC0415

        conn = await asyncmy.connect(**options(url), autocommit=True, connect_timeout=5)
        try:
            found = []
            async with conn.cursor(DictCursor) as cur:
                for sql in statements:
                    await cur.execute(sql)
                    found.append([dict(r) for r in await cur.fetchall()])
            return found
        finally:
            conn.close()
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL tests need the driver

    pg = await asyncpg.connect(url, timeout=5)
    try:
        return [[dict(r) for r in await pg.fetch(sql)] for sql in statements]
    finally:
        await pg.close()


async def create(url: str, key: str, *, clock: bool = False) -> None:
    """A new, empty ``effects`` table keyed by the column ``key`` (a MySQL
    test database is reused by later tests: one left behind is dropped);
    with ``clock``, each row also gets ``at``, the database's clock (epoch
    seconds) when it was written, so rows of several processes order alike."""
    dialect = "mysql" if is_mysql(url) else "postgres"
    columns = _DDL[dialect].format(key=key) + (_CLOCK[dialect] if clock else "")
    await fetch(
        url, "DROP TABLE IF EXISTS effects", f"CREATE TABLE effects ({columns})"
    )


class Recorder:
    """Inserts effect rows, each in its own transaction, on a pool of its own."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.mysql = is_mysql(url)
        marks = "%s, %s, %s" if self.mysql else "$1, $2, $3"
        self.sql = f"INSERT INTO effects ({key}, step, pid) VALUES ({marks})"  # noqa: S608 - ours
        self._pool: Any = None

    @property
    def lost_connection(self) -> tuple[type[BaseException], ...]:
        """The driver's errors of a lost connection (worth a retry)."""
        if self.mysql:
            import asyncmy.errors  # noqa: PLC0415

            return (OSError, TimeoutError, asyncmy.errors.OperationalError,
                    asyncmy.errors.InterfaceError)  # fmt: skip
        import asyncpg  # noqa: PLC0415

        return (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # e.g. a connection lost mid-transaction
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
        )

    async def open(self, max_size: int = 10) -> None:
        if self.mysql:
            import asyncmy  # noqa: PLC0415

            from sagakit.adapters.store.mysql_database import options  # noqa: PLC0415

            self._pool = await asyncmy.create_pool(
                **options(self.url), minsize=1, maxsize=max_size, autocommit=True
            )
        else:
            import asyncpg  # noqa: PLC0415

            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=max_size
            )

    async def record(self, key: str, step: str, pid: int) -> None:
        if self.mysql:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(self.sql, (key, step, pid))
        else:
            await self._pool.execute(self.sql, key, step, pid)

    async def close(self) -> None:
        if self._pool is None:
            return
        if self.mysql:
            self._pool.close()
            await self._pool.wait_closed()
        else:
            await self._pool.close()
