"""The inbox role, written once per dialect: the saga store and the event
store of a database share its ``sagakit_inbox`` table, and each inherits
these methods (they use only the public database object)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sagakit.errors import StoreError

if TYPE_CHECKING:
    from sagakit.adapters.store.mysql_database import MySQLDatabase
    from sagakit.adapters.store.postgres_database import PostgresDatabase
    from sagakit.adapters.store.sqlite_database import SQLiteDatabase


def _reply(found: Any) -> bytes | None:
    """What ``inbox_reply`` returns for the row found (or None)."""
    if found is None:
        return None
    reply = found[0]
    return b"" if reply is None else bytes(reply)


class SQLiteInbox:
    """:class:`~sagakit.ports.store.Inbox` on a SQLite database."""

    database: SQLiteDatabase

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        found = self.database.fetchall(
            f"inbox of {consumer!r}", "inbox_reply", (consumer, message_id)
        )
        return _reply(found[0] if found else None)

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        about = f"recording message {message_id!r} for {consumer!r}"
        with self.database.transaction(about) as conn:
            return await self.record_inbox_on(conn, consumer, message_id, reply)

    async def record_inbox_many(
        self, consumer: str, entries: Sequence[tuple[str, bytes | None]]
    ) -> list[bool]:
        """:meth:`record_inbox` of each (message id, reply), in one
        transaction (:class:`~sagakit.ports.store.InboxBatches`)."""
        about = f"recording {len(entries)} message(s) for {consumer!r}"
        with self.database.transaction(about) as conn:
            return [
                await self.record_inbox_on(conn, consumer, message_id, reply)
                for message_id, reply in entries
            ]

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """The inbox entry on the caller's ``sqlite3.Connection`` to the same
        file, inside the transaction it has open (nothing is committed)."""
        db = self.database
        try:
            cur = db.callers(conn, "record_inbox_on").execute(
                db.sql("insert_inbox"), (consumer, message_id, reply, time.time())
            )
        except db.driver_errors as exc:
            raise db.error(f"recording message {message_id!r}", exc) from exc
        return cur.rowcount == 1


class _Server(Protocol):
    commits: int

    @property
    def driver_errors(self) -> tuple[type[BaseException], ...]: ...

    async def fetchrow(self, about: str, query: str, *args: Any) -> Any: ...

    def callers(self, conn: Any, method: str) -> Any: ...

    def error(self, about: str, exc: BaseException) -> StoreError: ...


D = TypeVar("D", bound=_Server)


class ServerReplies(Generic[D]):
    """The inbox on a database server: ``inbox_reply`` (one ``fetchrow``)
    and the recording of an entry, on its own (committed and counted) or
    on the caller's connection; a dialect says how the ``record_inbox``
    statement runs (:meth:`recorded`, :meth:`recorded_on`)."""

    database: D

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        about = f"inbox of {consumer!r}"
        return _reply(
            await self.database.fetchrow(about, "inbox_reply", consumer, message_id)
        )

    async def recorded(self, about: str, *args: Any) -> bool:
        """Run ``record_inbox`` on its own (committed); whether it was new."""
        raise NotImplementedError

    async def recorded_on(self, conn: Any, *args: Any) -> bool:
        """Run ``record_inbox`` on ``conn``; whether it was new. Driver errors
        are the caller's to wrap."""
        raise NotImplementedError

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        about = f"recording message {message_id!r} for {consumer!r}"
        new = await self.recorded(about, consumer, message_id, reply)
        self.database.commits += 1
        return new

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """The inbox entry on the caller's connection (an asyncpg one on
        PostgreSQL, an asyncmy one on MySQL; same database), inside the
        transaction it has open; nothing is committed here."""
        db = self.database
        try:
            own = db.callers(conn, "record_inbox_on")
            return await self.recorded_on(own, consumer, message_id, reply)
        except db.driver_errors as exc:
            raise db.error(f"recording message {message_id!r}", exc) from exc


class PostgresInbox(ServerReplies["PostgresDatabase"]):
    """:class:`~sagakit.ports.store.Inbox` on a PostgreSQL database."""

    database: PostgresDatabase

    async def recorded(self, about: str, *args: Any) -> bool:
        return await self.database.fetchrow(about, "record_inbox", *args) is not None

    async def recorded_on(self, conn: Any, *args: Any) -> bool:
        sql = self.database.sql("record_inbox")
        return await conn.fetchrow(sql, *args) is not None


class MySQLInbox(ServerReplies["MySQLDatabase"]):
    """:class:`~sagakit.ports.store.Inbox` on a MySQL database."""

    database: MySQLDatabase

    async def recorded(self, about: str, *args: Any) -> bool:
        return await self.database.execute(about, "record_inbox", *args) == 1

    async def recorded_on(self, conn: Any, *args: Any) -> bool:
        _, new = await self.database.run(conn, "record_inbox", *args)
        return bool(new == 1)
