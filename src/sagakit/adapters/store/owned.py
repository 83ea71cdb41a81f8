"""What every store on a database object has, whatever the dialect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Protocol,
    Self,
    TypedDict,
    TypeVar,
    Unpack,
)

from sagakit.errors import StoreError

if TYPE_CHECKING:
    from sagakit.adapters.store.sql import Migration


class Opened(Protocol):
    """A database object as the stores on it see it."""

    @property
    def commits(self) -> int: ...

    @property
    def where(self) -> str: ...

    async def close(self) -> None: ...


DB = TypeVar("DB", bound=Opened)


class OnDatabase(Generic[DB]):
    """A store on ``database``: it closes it only if it opened it
    (``_owned``), and counts the database's commits as its own."""

    database: DB
    _owned: bool

    @property
    def commits(self) -> int:
        """Transactions committed on this store's database."""
        return self.database.commits

    async def close(self) -> None:
        if self._owned:
            await self.database.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.database.where!r})"


class PoolOptions(TypedDict, total=False):
    """How a server's database object's ``connect`` opens a database."""

    min_size: int
    max_size: int
    migrate: bool


class Migrations:
    """What a server's database object does the same way on every server:
    how its errors read, its opening (migrated, or closed again) and the
    versions applied, through its named queries. A subclass names the
    server (``dialect``), what its driver raises (``driver_errors``) and
    how the driver's errors read (``reason``)."""

    where: str
    commits: int
    statements: int
    _pool: Any
    dialect: ClassVar[str]
    driver_errors: ClassVar[tuple[type[BaseException], ...]]

    def __init__(self, pool: Any, *, where: str) -> None:
        self._pool = pool
        self.where = where
        self.commits = 0
        self.statements = 0

    async def fetch(self, about: str, query: str, *args: Any) -> Any: ...

    async def fetchrow(self, about: str, query: str, *args: Any) -> Any: ...

    def begun(self) -> AbstractAsyncContextManager[Any]:
        """A pooled connection inside a transaction, committed when the
        block ends (rolled back if it raises)."""
        raise NotImplementedError

    @asynccontextmanager
    async def transaction(self, about: str) -> AsyncIterator[Any]:
        """A pooled connection inside a transaction (:meth:`begun`),
        committed (and counted) when the block ends, rolled back if it
        raises; a driver error becomes a StoreError saying ``about`` failed."""
        try:
            async with self.begun() as conn:
                yield conn
        except self.driver_errors as exc:
            raise self.error(about, exc) from exc
        self.commits += 1

    @staticmethod
    def reason(exc: BaseException) -> str:
        """One line saying what the driver reported."""
        raise NotImplementedError

    async def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def error(self, about: str, exc: BaseException) -> StoreError:
        """``exc`` as the StoreError to raise ``from`` it."""
        why = self.reason(exc)
        return StoreError(f"{about} failed on {self.dialect} at {self.where}: {why}")

    @classmethod
    def unreachable(cls, where: str, exc: BaseException) -> StoreError:
        """The StoreError of a ``connect`` that failed with ``exc``."""
        why = cls.reason(exc)
        return StoreError(f"cannot connect to {cls.dialect} at {where}: {why}")

    async def opened(self, *, migrate: bool) -> Self:
        """This database, migrated unless ``migrate`` is false; closed again
        if migrating fails."""
        if migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise
        return self

    async def closing(self, pool: Awaitable[object]) -> None:
        """Await the closing of the pool; a driver error becomes a StoreError."""
        try:
            await pool
        except self.driver_errors as exc:
            raise self.error("closing the pool", exc) from exc

    async def applied_migrations(self) -> list[int]:
        """Versions applied so far (none on a database sagakit never touched)."""
        exists = await self.fetchrow("listing migrations", "migrations_table_exists")
        if exists is None or not exists[0]:
            return []
        rows = await self.fetch("listing migrations", "applied_migrations")
        return [row[0] for row in rows]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"


class Served(Opened, Protocol):
    """A database server's database object (PostgreSQL, MySQL)."""

    @property
    def statements(self) -> int: ...

    async def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]: ...

    async def applied_migrations(self) -> list[int]: ...


S = TypeVar("S", bound=Served)


class OnServer(OnDatabase[S]):
    """What every store on a database server has: its database (an open one,
    one ``connect`` opens, or another store's), the database's statement
    counter (round trips) and its schema. A subclass names the database
    class (``kind``) and the server (``dialect``, for messages)."""

    kind: ClassVar[type[Any]]
    dialect: ClassVar[str]

    def __init__(self, database: Any, *, owned: bool = False) -> None:
        found = database if isinstance(database, self.kind) else None
        found = found or getattr(database, "database", None)
        if not isinstance(found, self.kind):
            raise StoreError(f"{database!r} is not on a {self.dialect} database")
        self.database = found
        self._owned = owned
        self.where = found.where

    @classmethod
    async def connect(cls, url: str, **options: Unpack[PoolOptions]) -> Self:
        """Open a database on ``url`` (``min_size``, ``max_size``; migrated
        unless ``migrate=False``); closing this store closes it."""
        return cls(await cls.kind.connect(url, **options), owned=True)

    @property
    def statements(self) -> int:
        """Statements (round trips) sent on this store's database."""
        return self.database.statements

    async def migrate(
        self, progress: Callable[[Migration], object] | None = None
    ) -> list[int]:
        """Apply the database's pending migrations (see its ``migrate``)."""
        return await self.database.migrate(progress)

    async def applied_migrations(self) -> list[int]:
        return await self.database.applied_migrations()
