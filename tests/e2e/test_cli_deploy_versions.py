"""``sagakit deploy-check`` over workflow apps and choreographies: per app
(or choreography) and version, how many live instances can continue or
would be stranded, with the exit status and ``--json`` of the saga check;
and on a database written by an earlier release (schema 0007), before it
is migrated."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sagakit.adapters.store.event_sqlite import SQLiteEventStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.choreography import Choreography, EventBus, Flow
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp
from tests.e2e.test_cli import assert_one_error_line, rows, sagakit

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "store_format" / "cac7a3f" / "sagakit.sqlite3"

DEFINITIONS = """
from sagakit import Saga, Step
from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.choreography import Choreography, EventBus, Flow
from sagakit.workflow import WorkflowApp


def app(version, *names, previous=()):
    made = WorkflowApp(
        "orders", InMemoryWorkflowStore(), version=version, previous=previous
    )
    for name in names:
        def step(order: str) -> None:
            return None

        step.__name__ = name
        made.step(step)
    return made


v1 = app(1, "a", "b", "c")
v2 = app(2, "x", "a", "b2", "c")
both = app(2, "x", "a", "b2", "c", previous=[v1])
changed = app(1, "a", "b", "c", "d")  # a step added

BOOKING_V1 = Choreography("booking", [Flow("booking.created"), Flow("bill.paid")])
BOOKING_V2 = Choreography(
    "booking",
    [Flow("booking.created"), Flow("bill.paid"), Flow("slot.reserved")],
    version=2,
)
saga = Saga("order", [Step("a", lambda ctx: "a")])
"""

RELEASES = {
    "release_v2": "from definitions import v2\n",
    "release_both": "from definitions import both\n",
    "release_changed": "from definitions import changed\n",
    "release_sagas_only": "from definitions import saga\n",
    "release_bus_v2": (
        "from sagakit.choreography import EventBus\n"
        "from definitions import BOOKING_V2, both\n"
        "bus = EventBus('billing', choreographies=[BOOKING_V2])\n"
    ),
    "release_bus_both": (
        "from sagakit.choreography import EventBus\n"
        "from definitions import BOOKING_V1, BOOKING_V2, both\n"
        "bus = EventBus('billing', choreographies=[BOOKING_V1, BOOKING_V2])\n"
        "other = EventBus('parking', choreographies=[BOOKING_V1])\n"
    ),
    "release_empty": "X = 1\n",
}
NEEDS_V1 = "needs orders v1, not registered here (have v2)"

BOOKING_V1 = Choreography("booking", [Flow("booking.created"), Flow("bill.paid")])


async def live(db: Path) -> None:
    """An ``orders`` v1 instance pending on b; a ``booking`` v1 in progress."""
    clock = FakeClock()
    workflows = SQLiteWorkflowStore(db)
    v1 = WorkflowApp("orders", workflows, clock=clock)
    for name in ("a", "b", "c"):

        async def step(order: str) -> None:
            return None

        step.__name__ = name
        v1.step(step)
    await v1.start("o-1", "b", "o-1")
    await workflows.close()
    events = SQLiteEventStore(db)
    transport = InProcessTransport()
    bus = EventBus("booking", transport, events, choreographies=[BOOKING_V1])
    await bus.publish("booking.created", {}, correlation_id="bk-1")
    await transport.close()
    await events.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    (tmp_path / "definitions.py").write_text(textwrap.dedent(DEFINITIONS))
    for name, text in RELEASES.items():
        (tmp_path / f"{name}.py").write_text(text)
    path = tmp_path / "live.db"
    asyncio.run(live(path))
    return path


def check(db: Path, cwd: Path, release: str, *extra: str) -> tuple[int, str]:
    result = sagakit("--db", str(db), "deploy-check", release, *extra, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def plan(db: Path, cwd: Path, release: str) -> tuple[int, dict[str, Any]]:
    code, text = check(db, cwd, release, "--json")
    return code, json.loads(text)


def test_a_workflow_release_without_the_instance_version_strands_it(
    db: Path, tmp_path: Path
) -> None:
    code, found = plan(db, tmp_path, "release_v2")
    assert code == 1
    assert (found["safe"], found["stranded"], found["sagas"]) == (False, 1, [])
    assert found["workflows"] == [
        {
            "app": "orders",
            "version": 1,
            "live": 1,
            "continue": 0,
            "migrate": 0,
            "drain": 1,
            "reasons": [NEEDS_V1],
        }
    ]
    assert found["choreographies"] == []  # release_v2 declares none
    code, output = check(db, tmp_path, "release_v2")
    assert code == 1
    assert "live instances per workflow app version" in output
    (row,) = [r for r in rows(output) if r[0] == "orders"]
    assert row == ["orders", "v1", "1", "0", "0", "1", NEEDS_V1]
    assert "1 instance(s) would be stranded" in output


def test_keeping_the_old_version_beside_the_new_lets_it_continue(
    db: Path, tmp_path: Path
) -> None:
    code, found = plan(db, tmp_path, "release_both")
    assert code == 0, found
    assert [(r["app"], r["version"], r["continue"]) for r in found["workflows"]] == [
        ("orders", 1, 1)
    ]
    code, output = check(db, tmp_path, "release_both")
    assert (code, "safe to deploy" in output) == (0, True)


def test_changed_steps_under_the_same_version_strand_it(
    db: Path, tmp_path: Path
) -> None:
    code, found = plan(db, tmp_path, "release_changed")
    assert code == 1
    (reason,) = found["workflows"][0]["reasons"]
    assert reason.startswith("orders v1 changed shape since this instance started")


def test_a_release_without_workflow_apps_does_not_judge_workflows(
    db: Path, tmp_path: Path
) -> None:
    code, output = check(db, tmp_path, "release_sagas_only")
    assert code == 0, output
    assert "no live instances: nothing to strand" in output


def test_choreographies_are_judged_by_the_versions_the_buses_declare(
    db: Path, tmp_path: Path
) -> None:
    code, found = plan(db, tmp_path, "release_bus_v2")
    assert code == 1
    assert found["choreographies"] == [
        {
            "choreography": "booking",
            "version": 1,
            "live": 1,
            "continue": 0,
            "migrate": 0,
            "drain": 1,
            "reasons": ["needs booking v1, not registered here (have v2)"],
        }
    ]
    code, found = plan(db, tmp_path, "release_bus_both")
    assert code == 0, found
    assert [(r["version"], r["continue"]) for r in found["choreographies"]] == [(1, 1)]
    code, output = check(db, tmp_path, "release_bus_v2")
    assert "live instances per choreography version" in output


def test_a_module_with_nothing_to_check_is_one_error_line(
    db: Path, tmp_path: Path
) -> None:
    result = sagakit("--db", str(db), "deploy-check", "release_empty", cwd=tmp_path)
    assert_one_error_line(result)
    assert "defines no Saga, WorkflowApp, Choreography or EventBus" in result.stderr
    twice = tmp_path / "release_twice.py"
    twice.write_text("from definitions import v1, changed\n")
    result = sagakit("--db", str(db), "deploy-check", "release_twice", cwd=tmp_path)
    assert_one_error_line(result)
    assert "workflow orders v1 is defined twice" in result.stderr


OLD_RELEASE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from tests.fixtures.store_format import sagas

ORDER, TICKET = sagas.SAGAS
payments = sagas.workflow_app(InMemoryWorkflowStore(){{version}})
BOOKING = sagas.BOOKING
"""


def test_a_database_of_an_earlier_release_counts_everything_as_v1(
    tmp_path: Path,
) -> None:
    """cac7a3f's schema (0007) knows no versions: its workflow instances and
    choreographies are version 1 of unknown shape, trusted by name."""
    db = tmp_path / "old.sqlite3"
    shutil.copyfile(FIXTURE, db)
    (tmp_path / "same.py").write_text(OLD_RELEASE.format(version=""))
    (tmp_path / "newer.py").write_text(OLD_RELEASE.format(version=", version=2"))
    code, found = plan(db, tmp_path, "same")
    assert code == 0, found
    assert [(r["app"], r["version"], r["continue"]) for r in found["workflows"]] == [
        ("payments", 1, 3)  # wf-timer, wf-call and wf-later are pending
    ]
    assert [
        (r["choreography"], r["version"], r["continue"])
        for r in found["choreographies"]
    ] == [("booking", 1, 1)]  # bk-2 is in progress
    code, found = plan(db, tmp_path, "newer")
    assert code == 1
    assert found["workflows"][0]["reasons"] == [
        "needs payments v1, not registered here (have v2)"
    ]
