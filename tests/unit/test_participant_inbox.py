"""A participant's inbox entries: several handled at once share one commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sagakit import SQLiteStore
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.errors import StoreError
from sagakit.messaging import Envelope, decode
from sagakit.participant import Participant
from sagakit.participant.inbox import InboxGroup
from sagakit.runtime.group import GATHER_TURNS
from tests.unit.test_batch import command


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "inbox.db")
    yield opened
    await opened.close()


class Sent:
    """A transport that keeps what is published (replies only here)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def publish_raw(self, queue: str, body: bytes) -> None:
        self.bodies.append(body)

    async def publish(self, queue: str, message: Envelope) -> None:
        raise AssertionError("a participant publishes its replies raw")


def kitchen(store: Any, transport: Sent) -> Participant:
    service = Participant("kitchen", transport, store)  # type: ignore[arg-type]

    @service.handler("kitchen.create_ticket")
    async def create_ticket(cmd: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)  # the others start meanwhile, as on a broker
        return {"ticket": cmd["order_id"]}

    return service


async def test_commands_handled_at_once_share_one_commit(store: SQLiteStore) -> None:
    sent = Sent()
    service = kitchen(store, sent)
    commands = [command(n) for n in range(11)]
    before = store.database.commits
    await asyncio.gather(*(service.handle(c) for c in commands[:10]))
    assert store.database.commits - before == 1
    assert len(sent.bodies) == 10
    replies = sorted(decode(b).payload["ticket"] for b in sent.bodies)
    assert replies == list(range(10))
    for n, sent_command in enumerate(commands[:10]):  # each with its own reply
        stored = await store.inbox_reply("kitchen", sent_command.id)
        assert stored is not None
        assert decode(stored).payload == {"ticket": n}
    # one at a time: a commit each, as before
    await service.handle(commands[10])
    assert store.database.commits - before == 2


async def test_a_duplicate_in_the_same_group_gets_the_first_reply(
    store: SQLiteStore,
) -> None:
    group = InboxGroup("kitchen")
    news = await asyncio.gather(
        group.record(store, "m1", b"first", alone=False),
        group.record(store, "m2", b"other", alone=False),
        group.record(store, "m1", b"second", alone=False),
    )
    assert news == [True, True, False]
    assert group.groups == 1
    assert await store.inbox_reply("kitchen", "m1") == b"first"


async def test_a_store_without_record_inbox_many_commits_each() -> None:
    store = InMemoryStore()
    group = InboxGroup("kitchen")
    news = await asyncio.gather(
        *(group.record(store, f"m{n}", b"r", alone=False) for n in range(3))
    )
    assert news == [True, True, True]
    assert store.commits == 3
    assert group.groups == 0


class Failing(InMemoryStore):
    async def record_inbox_many(
        self, consumer: str, entries: list[tuple[str, bytes | None]]
    ) -> list[bool]:
        raise StoreError("database is locked")


async def test_a_failed_group_commit_fails_every_entry_of_it() -> None:
    group = InboxGroup("kitchen")
    results = await asyncio.gather(
        *(group.record(Failing(), f"m{n}", b"r", alone=False) for n in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results)


async def test_cancelling_the_first_cancels_the_group_uncommitted(
    store: SQLiteStore,
) -> None:
    group = InboxGroup("kitchen")
    first = asyncio.create_task(group.record(store, "m1", b"r", alone=False))
    second = asyncio.create_task(group.record(store, "m2", b"r", alone=False))
    await asyncio.sleep(0)  # first opens the group and yields, second joins
    first.cancel()  # before it commits
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await store.inbox_reply("kitchen", "m2") is None
    assert await group.record(store, "m2", b"again", alone=False) is True


async def test_entries_a_turn_apart_share_a_commit_on_sqlite(
    store: SQLiteStore,
) -> None:
    """SQLite commits on the loop's thread: a group stays open while each
    turn of the loop brings another entry (commands delivered one by one),
    at most GATHER_TURNS turns."""

    async def later(turns: int, message_id: str) -> bool:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await group.record(store, message_id, b"r", alone=False)

    group = InboxGroup("kitchen")
    before = store.database.commits
    news = await asyncio.gather(*(later(n, f"m{n}") for n in range(5)))
    assert news == [True] * 5
    assert store.database.commits - before == 1
    assert group.groups == 1

    group = InboxGroup("kitchen")
    count = 3 * GATHER_TURNS
    before = store.database.commits
    await asyncio.gather(*(later(n, f"late{n}") for n in range(count)))
    assert 2 <= store.database.commits - before < count
