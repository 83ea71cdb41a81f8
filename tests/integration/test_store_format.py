"""Databases written by an earlier release, opened by the current code.

``tests/fixtures/store_format/cac7a3f`` holds a SQLite file and a PostgreSQL
dump written by commit cac7a3f (schema 0007) with instances in every status
(see its ``make_fixtures.py``). Each test copies one, opens it with migration,
reads every instance back, then recovers the unfinished ones with the same
definitions (``sagas.py``) and checks they end as those definitions dictate,
while the finished ones stay untouched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sagakit import Orchestrator
from sagakit.adapters.store import (
    Database,
    applied_migrations,
    event_store_for,
    open_database,
    open_store_async,
    workflow_store_for,
)
from sagakit.adapters.store.sql import migrations
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.messaging import decode
from sagakit.participant import Participant
from sagakit.testing import FakeClock
from tests.conftest import admin, database_url, run_sync
from tests.fixtures.store_format import sagas

FIXTURES = Path(__file__).parents[1] / "fixtures" / "store_format" / "cac7a3f"
REPLIES = "sagakit.replies"
READER = "store-format-check"

AFTER_RECOVERY = {
    "order-running": "succeeded",  # killed while charge ran
    "order-compensating": "compensated",  # killed while undoing charge
    "order-submitted": "succeeded",  # committed, never driven
    "ticket-waiting-kitchen": "succeeded",  # its command never left the outbox
    "ticket-waiting-bill": "succeeded",  # one reply applied, one command unsent
}
UNSENT = {"ticket-waiting-kitchen.ticket.a1", "ticket-waiting-bill.bill.a1"}


def manifest(dialect: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (FIXTURES / f"{dialect}.json").read_text(encoding="utf-8")
    )
    return data


# -- opening a copy of each fixture ---------------------------------------------


@pytest.fixture
def sqlite_copy(tmp_path: Path) -> str:
    target = tmp_path / "old.sqlite3"
    shutil.copyfile(FIXTURES / "sagakit.sqlite3", target)
    return str(target)


@pytest.fixture
def postgres_copy(pg_template: str) -> Iterator[str]:
    """A fresh database holding the dump (the template only checks the server)."""
    name = f"sagakit_format_{uuid.uuid4().hex[:12]}"
    run_sync(admin(f"CREATE DATABASE {name}"))
    url = database_url(name)
    # our own dump: drop pg_dump's \restrict lines, which older psql rejects
    lines = (FIXTURES / "postgres.sql").read_text(encoding="utf-8").splitlines()
    dump = "\n".join(
        x for x in lines if not x.startswith(("\\restrict", "\\unrestrict"))
    )
    try:
        subprocess.run(
            ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
            input=dump.encode("utf-8"),
            check=True,
            capture_output=True,
        )
        yield url
    finally:
        run_sync(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(autouse=True)
def fresh_effects() -> None:
    sagas.EFFECTS.clear()
    sagas.GATE.closed = False


# -- reading back -----------------------------------------------------------------


async def check_read_back(db: Database, dialect: str) -> None:
    """Migrated to the current schema; every stored thing reads and decodes."""
    expected = [m.version for m in migrations(dialect)]
    assert await applied_migrations(db.sagas) == expected
    assert manifest(dialect)["migrations"] == list(range(1, 8))

    for saga_id, status in manifest(dialect)["sagas"].items():
        record = await db.sagas.get(saga_id)
        assert record.status.value == status, saga_id
        assert record.state.saga_id == saga_id
        assert record.state.status.value == status
        sagas.Order.model_validate(record.context)
        history = await db.sagas.history(saga_id)
        assert (history[0].kind, history[0].outcome) == ("saga", "started")
        if record.status.terminal:
            assert (history[-1].kind, history[-1].outcome) == ("saga", status)
    running = await db.sagas.get("order-running")
    assert running.state.steps["notify"].status.value == "succeeded"
    assert running.state.steps["charge"].status.value == "running"

    assert db.workflows is not None
    for instance_id, expect in manifest(dialect)["workflows"].items():
        wf = await db.workflows.get(sagas.WORKFLOW_APP, instance_id)
        assert (wf.status.value, wf.step) == (expect["status"], expect["step"])
        assert await db.workflows.history(sagas.WORKFLOW_APP, instance_id)

    # inbox: a participant kept its reply, the orchestrator only the id
    reply = await db.sagas.inbox_reply("kitchen", "ticket-succeeded.ticket.a1")
    assert reply is not None
    assert decode(reply).payload == {"ticket_id": 110}
    taken = "ticket-waiting-bill.ticket.a1.reply"
    assert await db.sagas.inbox_reply("sagakit.orchestrator", taken) == b""

    # outbox: the two commands the broker refused are still there, decodable
    claimed = await db.sagas.claim_outbox(READER, lease=5.0)
    assert {m.message_id for m in claimed} == UNSENT
    for message in claimed:
        command = decode(message.body)
        assert (command.kind, command.saga_id) == ("command", message.saga_id)
    await db.sagas.release_outbox(READER)


async def snapshot(db: Database, ids: list[str]) -> dict[str, Any]:
    return {i: (await db.sagas.get(i), await db.sagas.history(i)) for i in ids}


async def until_statuses(db: Database, wanted: dict[str, str]) -> None:
    got: dict[str, str] = {}
    for _ in range(1500):
        got = {i: (await db.sagas.get(i)).status.value for i in wanted}
        if got == wanted:
            return
        await asyncio.sleep(0.01)
    assert got == wanted


# -- finishing the running instances ----------------------------------------------


class World:
    """The current code's orchestrator and participants on a fixture."""

    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.transport = InProcessTransport()
        self.orchestrator = Orchestrator(
            db.sagas,
            sagas.SAGAS,
            clock=clock,
            transport=self.transport,
            reply_queue=REPLIES,
            deadline_interval=0.05,
        )
        self.kitchen = Participant("kitchen", self.transport, db.sagas)
        self.accounting = Participant("accounting", self.transport, db.sagas)
        self.calls: list[tuple[str, int]] = []

        @self.kitchen.handler("kitchen.create_ticket")
        async def create_ticket(cmd: sagas.CreateTicket) -> sagas.TicketCreated:
            self.calls.append(("create_ticket", cmd.order_id))
            return sagas.TicketCreated(ticket_id=100 + cmd.order_id)

        @self.kitchen.handler("kitchen.cancel_ticket")
        async def cancel_ticket(cmd: dict[str, Any]) -> None:
            self.calls.append(("cancel_ticket", cmd["order_id"]))

        @self.accounting.handler("accounting.charge")
        async def bill(cmd: dict[str, Any]) -> dict[str, str]:
            self.calls.append(("charge", cmd["order_id"]))
            return {"bill": f"b-{cmd['order_id']}"}


@pytest.fixture
async def opened(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    url = request.getfixturevalue(request.param)
    db = await open_database(url)
    try:
        yield db
    finally:
        await db.close()


DIALECTS = [
    pytest.param("sqlite_copy", id="sqlite"),
    pytest.param("postgres_copy", id="postgres", marks=pytest.mark.postgres),
]


def dialect_of(db: Database) -> str:
    return "postgres" if db.url.startswith("postgres") else "sqlite"


@pytest.mark.parametrize("opened", DIALECTS, indirect=True)
async def test_old_sagas_read_back_and_finish(opened: Database) -> None:
    db, dialect = opened, dialect_of(opened)
    await check_read_back(db, dialect)
    stored = manifest(dialect)
    finished = [i for i, s in stored["sagas"].items() if i not in AFTER_RECOVERY]
    assert sorted(stored["sagas"]) == sorted([*finished, *AFTER_RECOVERY])
    before = await snapshot(db, finished)
    bill_before = await snapshot(db, ["ticket-waiting-bill"])

    world = World(db, FakeClock(stored["clock_start"] + 60))
    orch = world.orchestrator
    async with orch.serving():
        # the reply the old code applied, delivered again, changes nothing
        await orch.handle_reply(decode(base64.b64decode(stored["duplicate_reply"])))
        assert await snapshot(db, ["ticket-waiting-bill"]) == bill_before
        await world.kitchen.start()
        await world.accounting.start()
        resumed = await orch.recover()
        assert set(resumed) <= set(AFTER_RECOVERY)
        await until_statuses(db, AFTER_RECOVERY)
        await orch.stop_driving()
    await world.transport.close()

    assert await snapshot(db, finished) == before
    effects = sagas.EFFECTS
    # committed steps are not run again; the one in flight is
    assert sorted(e for e in effects if e[1] == 5) == [
        ("charge", 5),
        ("email", 5),
        ("ship", 5),
    ]
    assert [e for e in effects if e[1] == 6] == [
        ("undo:charge", 6),
        ("undo:reserve", 6),
    ]
    assert sorted(e[0] for e in effects if e[1] == 7) == sorted(
        ["reserve", "charge", "notify", "ship", "email"]
    )
    assert not [e for e in effects if e[1] in (11, 12)]  # prepare ran before
    # each unsent command was sent once; the applied reply's command was not
    assert sorted(world.calls) == [
        ("charge", 11),
        ("charge", 12),
        ("create_ticket", 11),
    ]
    kitchen_done = await db.sagas.get("ticket-waiting-kitchen")
    assert kitchen_done.state.steps["ticket"].result == {"ticket_id": 111}
    assert await db.sagas.inbox_reply("kitchen", "ticket-waiting-kitchen.ticket.a1")


async def test_old_reply_deadline_passes_and_compensates(sqlite_copy: str) -> None:
    async with await open_database(sqlite_copy) as db:
        stored = manifest("sqlite")
        deadline = (await db.sagas.get("ticket-waiting-kitchen")).deadline
        assert deadline == stored["clock_start"] + sagas.LONG
        world = World(db, FakeClock(deadline + 1))
        orch = world.orchestrator
        async with orch.serving():
            await orch.recover()
            # the timer loop asks the database's clock; ours is past the deadline
            await orch.fire_deadline("ticket-waiting-kitchen")
            await orch.fire_deadline("ticket-waiting-bill")
            await until_statuses(
                db,
                {
                    "ticket-waiting-kitchen": "compensated",
                    "ticket-waiting-bill": "compensating",
                },
            )
            await world.kitchen.start()  # now the ticket can be cancelled
            await until_statuses(db, {"ticket-waiting-bill": "compensated"})
            await orch.stop_driving()
        await world.transport.close()
    assert ("cancel_ticket", 12) in world.calls
    assert ("undo:prepare", 11) in sagas.EFFECTS
    assert ("undo:prepare", 12) in sagas.EFFECTS


@pytest.mark.parametrize("opened", DIALECTS, indirect=True)
async def test_old_workflow_instances_finish(opened: Database) -> None:
    db, dialect = opened, dialect_of(opened)
    assert db.workflows is not None
    stored = manifest(dialect)
    clock = FakeClock(stored["clock_start"] + 10)
    app = sagas.workflow_app(db.workflows, clock=clock, max_attempts=1)
    done = ["wf-succeeded", "wf-failed"]
    before = {i: await app.get(i) for i in done}

    await app.call("wf-call", "webhook", {"confirmed": True})
    await app.run_until_idle()
    await app.advance(3600)  # wf-later's start (+60) and wf-timer's settle

    final = {i: (await app.get(i)).status.value for i in stored["workflows"]}
    assert final == {
        "wf-succeeded": "succeeded",
        "wf-timer": "succeeded",
        "wf-call": "succeeded",
        "wf-failed": "failed",
        "wf-later": "succeeded",
    }
    assert {i: await app.get(i) for i in done} == before
    assert (await app.get("wf-call")).state == {
        "deposited": 3,
        "webhook": {"confirmed": True},
    }
    assert (await app.get("wf-timer")).state == {"deposited": 2, "settled": 2}
    assert sorted(sagas.EFFECTS) == [("deposit", 5), ("settle", 2), ("webhook", 0)]


@pytest.mark.parametrize("opened", DIALECTS, indirect=True)
async def test_old_choreography_rows_read_back_and_finish(opened: Database) -> None:
    db, dialect = opened, dialect_of(opened)
    stored = manifest(dialect)["choreographies"]
    assert stored == {"bk-1": "succeeded", "bk-2": "in_progress"}
    assert await db.events.subscribers("booking.created") == ["events.billing"]
    assert await db.events.subscribers("bill.paid") == ["events.parking"]
    for cid, status in stored.items():
        tracked = await db.events.tracked(cid)
        assert tracked is not None
        assert (tracked.name, tracked.status.value) == ("booking", status)
    assert len(await db.events.timeline("bk-1")) == 5
    assert len(await db.events.timeline("bk-2")) == 3

    transport = InProcessTransport()
    clock = FakeClock(manifest(dialect)["clock_start"] + 10)
    buses = sagas.booking_buses(transport, db.events, clock=clock)
    for bus in buses.values():
        await bus.start()
    # bk-2's first event again: billing has it in its inbox, so it does not
    # bill again but resends the bill.paid it stored, which parking (stopped
    # when it was first sent) now takes
    for cid in ("bk-1", "bk-2"):
        await buses["booking"].publish(
            "booking.created", {"amount": 0}, correlation_id=cid, message_id=f"{cid}.c"
        )
    tracker = buses["booking"].tracker
    for _ in range(1500):
        if str(await tracker.status("bk-2")) == "succeeded":
            break
        await asyncio.sleep(0.01)
    for bus in buses.values():
        await bus.stop()
    await transport.close()
    assert str(await tracker.status("bk-2")) == "succeeded"
    assert str(await tracker.status("bk-1")) == "succeeded"
    assert sagas.EFFECTS == [("park", 2)]
    assert buses["billing"].duplicates == 2


@pytest.mark.parametrize(
    "copy",
    ["sqlite_copy", pytest.param("postgres_copy", marks=pytest.mark.postgres)],
)
async def test_old_rows_are_version_1_of_unknown_shape(
    request: pytest.FixtureRequest, copy: str
) -> None:
    """Workflow instances and choreographies written before versions were
    kept count as version 1 of unknown fingerprint: before migration 0010
    (what ``sagakit deploy-check`` reads ahead of a deploy) and after."""
    url = request.getfixturevalue(copy)
    live_workflows = {
        ("payments", 1, None, "settle"): 1,
        ("payments", 1, None, "webhook"): 1,
        ("payments", 1, None, "deposit"): 1,
    }
    live_choreographies = {("booking", 1, None): 1}
    for migrate in (False, True):
        store = await open_store_async(url, migrate=migrate)
        try:
            assert (9 in await applied_migrations(store)) is migrate
            workflows = workflow_store_for(store)
            assert await workflows.live_workflows() == live_workflows
            events = event_store_for(store)
            assert await events.live_choreographies() == live_choreographies
        finally:
            await store.close()
    async with await open_database(url) as db:
        assert db.workflows is not None
        for instance_id in manifest(dialect_of(db))["workflows"]:
            wf = await db.workflows.get(sagas.WORKFLOW_APP, instance_id)
            assert (wf.definition_version, wf.fingerprint) == (1, None)
        tracked = await db.events.tracked("bk-2")
        assert tracked is not None
        assert (tracked.definition_version, tracked.fingerprint) == (1, None)
