"""``activerecord``, as ``saga.active_record``: a dataclass that remembers
which of its attributes were set since it was made or last cleared."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def activerecord(cls: T) -> T:
    """A subclass of ``cls`` whose ``changes()`` lists the attributes set
    after ``__init__`` (once each, in no particular order) and whose
    ``clear()`` forgets them."""

    class Recorded(cls):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._changeset: set[str] = set()

        def __setattr__(self, name: str, value: Any) -> None:
            changed = self.__dict__.get("_changeset")
            if changed is not None:
                changed.add(name)
            super().__setattr__(name, value)

        def changes(self) -> list[str]:
            """The attributes set since the record was made or cleared."""
            return [*self._changeset]

        def clear(self) -> None:
            """Forget the changes."""
            self._changeset.clear()

    Recorded.__name__ = cls.__name__
    Recorded.__qualname__ = cls.__qualname__
    Recorded.__module__ = cls.__module__
    return Recorded  # type: ignore[return-value]


__all__ = ["activerecord"]
