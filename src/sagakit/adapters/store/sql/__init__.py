"""SQL files of the stores, loaded once by name. No SQL lives in Python code."""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

logger = logging.getLogger("sagakit.adapters.store")

# a block's name line, after the newline that ends the line before it: the
# literal start lets the search skip ahead (a tenth of the time of a match
# tried at every line start, over a whole file)
_BLOCK = re.compile(r"\n-- ([a-z_][a-z0-9_]*) --[ \t\r]*$", re.MULTILINE)


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


@cache
def _files() -> Traversable:
    """This package's folder: read as plain files when it is one (no
    importlib.resources, and its zipfile and tempfile, at start-up), through
    importlib.resources otherwise (a zipped install)."""
    here = Path(__file__).parent
    if (here / "sqlite" / "queries.sql").is_file():
        return here
    from importlib import resources  # noqa: PLC0415 - a zipped install only

    return resources.files(__package__)


def _read(dialect: str, name: str) -> str:
    return _files().joinpath(dialect, name).read_text("utf-8")


@cache
def _queries_text(dialect: str) -> str:
    """``<dialect>/queries.sql`` after a newline (a first line is a line
    after one, as :data:`_BLOCK` finds them)."""
    return "\n" + _read(dialect, "queries.sql")


def _statement(body: str) -> str:
    """A block's SQL: its text without comment lines."""
    lines = [ln for ln in body.strip().splitlines() if not ln.startswith("--")]
    return "\n".join(lines).strip()


@cache
def _blocks(dialect: str) -> dict[str, tuple[int, int]]:
    """Where the SQL of each named block of ``<dialect>/queries.sql`` starts
    and ends (after its ``-- name --`` line, up to the next one); a name
    defined twice is a ``ValueError``."""
    text = _queries_text(dialect)
    found = list(_BLOCK.finditer(text))
    out: dict[str, tuple[int, int]] = {}
    for here, after in zip(found, [*found[1:], None], strict=True):
        name = here.group(1)
        if name in out:
            raise ValueError(f"{dialect}/queries.sql defines {name!r} twice")
        out[name] = (here.end(), len(text) if after is None else after.start())
    return out


def _query(dialect: str, name: str) -> str:
    """The SQL of the block ``name`` (``KeyError`` if there is none)."""
    start, end = _blocks(dialect)[name]
    return _statement(_queries_text(dialect)[start:end])


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named blocks of ``<dialect>/queries.sql``: ``-- name --`` then SQL."""
    return {name: _query(dialect, name) for name in _blocks(dialect)}


class Queries(dict[str, str]):
    """:func:`queries` of a dialect, each block read the first time it is
    asked for: a command that runs three statements (``sagakit list``) does
    not parse the hundred others. A name that is not there: ``KeyError``."""

    def __init__(self, dialect: str) -> None:
        super().__init__()
        self.dialect = dialect

    def __missing__(self, name: str) -> str:
        sql = self[name] = _query(self.dialect, name)
        return sql


def schema(dialect: str) -> str:
    return _read(dialect, "schema.sql")


_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    folder = _files().joinpath(dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8"))
            )
    return in_order(dialect, found)


def migration_versions(dialect: str) -> tuple[int, ...]:
    """The versions :func:`migrations` has, from the files' names alone (a
    read-only command's check of the schema reads no SQL)."""
    folder = _files().joinpath(dialect, "migrations")
    found = (_MIGRATION.match(entry.name) for entry in folder.iterdir())
    return tuple(sorted(int(match.group(1)) for match in found if match))


def in_order(dialect: str, found: list[Migration]) -> tuple[Migration, ...]:
    """``found`` by version. Numbers are unique and start at 1; a gap is
    allowed (a number taken by a change merged later): the runner applies
    whatever is missing, in order, so migrations on either side of a gap must
    not depend on each other."""
    ordered = sorted(found, key=lambda m: m.version)
    versions = [m.version for m in ordered]
    if (versions and versions[0] != 1) or len(set(versions)) != len(versions):
        raise ValueError(f"{dialect} migrations are not numbered 1, 2, ...: {versions}")
    return tuple(ordered)


def log_migrated(applied: list[int], where: str) -> list[int]:
    """Log the versions a migration run applied (if any); returns them."""
    if applied:
        logger.info(
            "schema migrated",
            extra={"action": "schema_migrated", "versions": applied, "db": where},
        )
    return applied


def statements(script: str) -> list[str]:
    """The statements of a MySQL script, as the mysql client splits it: each
    ends with the delimiter at the end of a line (``;``, or what a
    ``DELIMITER`` line sets, for the bodies of procedures and triggers);
    comment lines never end one, and those between statements are dropped."""
    found: list[str] = []
    buffer: list[str] = []
    delimiter = ";"
    for line in script.splitlines():
        text = line.strip()
        if not buffer and (not text or text.startswith("--")):
            continue
        if not buffer and text.upper().startswith("DELIMITER "):
            delimiter = text.split(None, 1)[1]
            continue
        if text.endswith(delimiter) and not text.startswith("--"):
            buffer.append(line.rstrip()[: -len(delimiter)])
            found.append("\n".join(buffer).strip())
            buffer = []
        else:
            buffer.append(line)
    if "".join(buffer).strip():
        raise ValueError(f"incomplete SQL statement: {' '.join(buffer)[:80]!r}")
    return found
