"""``sagakit show`` with a choreography's correlation id (SQLite file)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sagakit.adapters.store.event_sqlite import SQLiteEventStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.choreography import Choreography, EventBus, Flow
from sagakit.testing import FakeClock
from tests.e2e.test_cli import assert_one_error_line, rows, sagakit

pytestmark = pytest.mark.e2e

FLOW = Choreography(
    "signup", [Flow("user.created", compensated_by="user.deleted"), Flow("mail.sent")]
)


async def _record(db: Path) -> None:
    store = SQLiteEventStore(db)
    transport = InProcessTransport()
    clock = FakeClock(start=1_000.0)  # long ago: the choreography is overdue
    users = EventBus("users", transport, store, choreographies=[FLOW], clock=clock)
    await users.publish("user.created", {"name": "ada"}, correlation_id="signup-1")
    await users.publish("user.created", {"name": "bob"}, correlation_id="signup-2")
    await users.publish("mail.sent", {}, correlation_id="signup-2")
    await transport.close()
    await store.close()


def test_show_prints_a_choreography_timeline(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    asyncio.run(_record(db))

    result = sagakit("--db", str(db), "show", "signup-1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "signup" in result.stdout
    assert f"signup v1 (shape {FLOW.fingerprint})" in result.stdout
    assert "stalled" in result.stdout  # its deadline passed long ago
    # columns: ms, time, service, event, outcome, message, detail
    events = [r for r in rows(result.stdout) if len(r) == 7]
    assert [(r[2], r[3], r[4]) for r in events] == [
        ("users", "user.created", "published")
    ]
    assert events[0][6] == "no subscribers"

    done = sagakit("--db", str(db), "show", "signup-2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout

    assert_one_error_line(sagakit("--db", str(db), "show", "signup-3", cwd=tmp_path))
