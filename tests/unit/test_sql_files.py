"""The SQL files of the stores, read by name (``sagakit.adapters.store.sql``)."""

from __future__ import annotations

import pytest

from sagakit.adapters.store.sql import Queries, migration_versions, migrations, queries

DIALECTS = ("postgres", "mysql", "sqlite")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_queries_read_one_by_one_are_those_read_at_once(dialect: str) -> None:
    every = queries(dialect)
    one_by_one = Queries(dialect)

    assert len(every) > 50
    for name in reversed(list(every)):  # last first: no block reads the next
        assert one_by_one[name] == every[name], name
    assert dict(one_by_one) == every


def test_an_unknown_query_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no_such_query"):
        Queries("postgres")["no_such_query"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migration_versions_are_those_of_the_migrations(dialect: str) -> None:
    assert migration_versions(dialect) == tuple(m.version for m in migrations(dialect))
