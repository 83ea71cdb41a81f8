"""The inbox role, written once per dialect: the saga store and the event
store of a database share its ``sagakit_inbox`` table, and each inherits
these methods (they use only the public database object)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

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


class _FetchesRow(Protocol):
    async def fetchrow(self, about: str, query: str, *args: Any) -> Any: ...


D = TypeVar("D", bound=_FetchesRow)


class ServerReplies(Generic[D]):
    """``inbox_reply`` on a database server (one ``fetchrow``)."""

    database: D

    async def inbox_reply(self, consumer: str, message_id: str) -> bytes | None:
        about = f"inbox of {consumer!r}"
        return _reply(
            await self.database.fetchrow(about, "inbox_reply", consumer, message_id)
        )


class PostgresInbox(ServerReplies["PostgresDatabase"]):
    """:class:`~sagakit.ports.store.Inbox` on a PostgreSQL database."""

    database: PostgresDatabase

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        about = f"recording message {message_id!r} for {consumer!r}"
        row = await self.database.fetchrow(
            about, "record_inbox", consumer, message_id, reply
        )
        self.database.commits += 1
        return row is not None

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """The inbox entry on the caller's asyncpg connection (same database),
        inside the transaction it has open; nothing is committed here."""
        db = self.database
        try:
            row = await db.callers(conn, "record_inbox_on").fetchrow(
                db.sql("record_inbox"), consumer, message_id, reply
            )
        except db.driver_errors as exc:
            raise db.error(f"recording message {message_id!r}", exc) from exc
        return row is not None


class MySQLInbox(ServerReplies["MySQLDatabase"]):
    """:class:`~sagakit.ports.store.Inbox` on a MySQL database."""

    database: MySQLDatabase

    async def record_inbox(
        self, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        about = f"recording message {message_id!r} for {consumer!r}"
        new = await self.database.execute(
            about, "record_inbox", consumer, message_id, reply
        )
        self.database.commits += 1
        return new == 1

    async def record_inbox_on(
        self, conn: Any, consumer: str, message_id: str, reply: bytes | None
    ) -> bool:
        """The inbox entry on the caller's asyncmy connection (same database),
        inside the transaction it has open; nothing is committed here."""
        db = self.database
        try:
            _, new = await db.run(
                db.callers(conn, "record_inbox_on"),
                "record_inbox",
                consumer,
                message_id,
                reply,
            )
        except db.driver_errors as exc:
            raise db.error(f"recording message {message_id!r}", exc) from exc
        return new == 1
