"""What every store on a database object has, whatever the dialect."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


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
