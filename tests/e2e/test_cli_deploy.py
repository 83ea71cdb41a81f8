"""``sagakit deploy-check`` and how ``list``/``show`` report an instance that
waits for its definition, against the issue's scenario: ``order`` v1
``[a, b, c]`` killed while ``b`` runs, the next release defines v2
``[x, a, b2, c]``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from sagakit import Saga, SQLiteStore, Step
from sagakit.runtime import Orchestrator
from tests.e2e.test_cli import assert_one_error_line, rows, sagakit

pytestmark = pytest.mark.e2e

SAGAS = """
import asyncio

from pydantic import BaseModel

from sagakit import Saga, Step


class Order(BaseModel):
    amount: int = 0


class Wider(Order):
    note: str | None = None


def step(name):
    def action(ctx):
        return name

    return Step(name, action)


v1 = Saga("order", [step("a"), step("b"), step("c")], context=Order)
v1_wider = Saga("order", [step("a"), step("b"), step("c")], context=Wider)
v2 = Saga("order", [step("x"), step("a"), step("b2"), step("c")], version=2)
v2_appended = Saga(
    "order", [step("a"), step("b"), step("c"), step("d")], version=2
)
"""

RELEASES = {
    "release_v2.py": "from sagas import v2\n",
    "release_both.py": "from sagas import v1, v2\n",
    "release_appended.py": "from sagas import v1, v2_appended\n",
    "release_wider.py": "from sagas import v1_wider\n",
    "release_migrating.py": (
        "from sagas import step\nfrom sagakit import Saga\n"
        "from sagakit.definition.migration import Migration\n"
        "v2 = Saga('order', [step('x'), step('a'), step('b2'), step('c')],\n"
        "          version=2, migrate_from={1: Migration(steps={'b': 'b2'})})\n"
    ),
    "release_changed.py": (
        "from sagas import step\nfrom sagakit import Saga\n"
        "changed = Saga('order', [step('a'), step('b2'), step('c')])\n"
    ),
}


async def killed_in_b(path: Path) -> str:
    stuck = asyncio.Event()

    async def b(ctx: object) -> str:
        stuck.set()
        await asyncio.sleep(60)
        return "b"

    saga = Saga(
        "order",
        [Step("a", lambda ctx: "a"), Step("b", b), Step("c", lambda ctx: "c")],
    )
    # this test process stays alive, so its lease must run out as a killed
    # process's would: a short one, not renewed once the task is cancelled
    crashed = Orchestrator(SQLiteStore(path), [saga], lease=0.2)
    saga_id = await crashed.start(saga)
    await asyncio.wait_for(stuck.wait(), 5)
    for task in list(crashed.driver.tasks):
        task.cancel()
    await asyncio.sleep(0.3)
    return saga_id


@pytest.fixture
def scenario(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "sagas.py").write_text(textwrap.dedent(SAGAS))
    for name, text in RELEASES.items():
        (tmp_path / name).write_text(text)
    db = tmp_path / "live.db"
    return db, asyncio.run(killed_in_b(db))


def check(db: Path, cwd: Path, release: str, *extra: str) -> tuple[int, str]:
    result = sagakit("--db", str(db), "deploy-check", release, *extra, cwd=cwd)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout


def test_v2_alone_would_strand_the_instance_mid_b(
    scenario: tuple[Path, str], tmp_path: Path
) -> None:
    db, _ = scenario
    code, output = check(db, tmp_path, "release_v2")
    assert code == 1, output
    (row,) = [r for r in rows(output) if r[0] == "order"]
    assert row[:6] == ["order", "v1", "1", "0", "0", "1"]
    assert "needs order v1, not registered here (have v2)" in " ".join(row)
    assert "1 instance(s) would be stranded" in output

    code, text = check(db, tmp_path, "release_v2", "--json")
    assert code == 1
    plan = json.loads(text)
    assert plan["safe"] is False
    assert plan["stranded"] == 1
    assert plan["sagas"][0] == {
        "saga": "order",
        "version": 1,
        "live": 1,
        "continue": 0,
        "migrate": 0,
        "drain": 1,
        "reasons": ["needs order v1, not registered here (have v2)"],
    }


@pytest.mark.parametrize(
    "release", ["release_both", "release_appended", "release_wider"]
)
def test_keeping_v1_or_an_additive_change_lets_it_continue(
    scenario: tuple[Path, str], tmp_path: Path, release: str
) -> None:
    db, _ = scenario
    code, text = check(db, tmp_path, release, "--json")
    assert code == 0, text
    plan = json.loads(text)
    assert plan["safe"] is True
    assert [(s["version"], s["continue"], s["drain"]) for s in plan["sagas"]] == [
        (1, 1, 0)
    ]
    code, output = check(db, tmp_path, release)
    assert code == 0
    assert "safe to deploy" in output


def test_a_changed_shape_under_the_same_version_strands_it(
    scenario: tuple[Path, str], tmp_path: Path
) -> None:
    db, _ = scenario
    code, text = check(db, tmp_path, "release_changed", "--json")
    assert code == 1
    (reason,) = json.loads(text)["sagas"][0]["reasons"]
    assert reason.startswith("order v1 changed shape since this instance started")


def test_bad_input_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "sagas.py").write_text(textwrap.dedent(SAGAS))
    missing = tmp_path / "nothing-here.db"
    result = sagakit("--db", str(missing), "deploy-check", "sagas", cwd=tmp_path)
    assert_one_error_line(result)
    assert "no database at" in result.stderr
    assert not missing.exists()
    result = sagakit("deploy-check", "sagas", cwd=tmp_path)  # default ./sagakit.db
    assert_one_error_line(result)
    assert not (tmp_path / "sagakit.db").exists()
    result = sagakit(
        "--db", str(missing), "deploy-check", "no_such_module", cwd=tmp_path
    )
    assert_one_error_line(result)
    result = sagakit("--db", "mysql://x/y", "deploy-check", "sagas", cwd=tmp_path)
    assert_one_error_line(result)


def test_list_and_show_report_the_waiting_instance(
    scenario: tuple[Path, str], tmp_path: Path
) -> None:
    db, saga_id = scenario
    result = sagakit("--db", str(db), "recover", "release_v2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed 0 saga(s)" in result.stdout
    left = "1 saga(s) of order v1 left waiting: needs order v1, not registered here"
    assert f"{left} (have v2)" in " ".join(result.stdout.split())
    listed = sagakit("--db", str(db), "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = [r for r in rows(listed.stdout) if r[0] == saga_id]
    assert row[1:3] == ["order", "waiting"]
    waiting = sagakit("--db", str(db), "list", "--status", "WAITING", cwd=tmp_path)
    assert waiting.returncode == 0, waiting.stderr
    assert [r[0] for r in rows(waiting.stdout)] == [saga_id]
    bad = sagakit("--db", str(db), "list", "--status", "parked", cwd=tmp_path)
    assert_one_error_line(bad)
    assert "waiting" in bad.stderr
    shown = sagakit("--db", str(db), "show", saga_id[:8], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "waiting" in shown.stdout
    assert "needs order v1, not registered here (have v2)" in shown.stdout
    assert "order v1 (shape " in shown.stdout

    finished = sagakit("--db", str(db), "recover", "release_both", cwd=tmp_path)
    assert "resumed 1 saga(s)" in finished.stdout, finished.stderr
    assert "left waiting" not in finished.stdout
    listed = sagakit("--db", str(db), "list", cwd=tmp_path)
    (row,) = [r for r in rows(listed.stdout) if r[0] == saga_id]
    assert row[1:3] == ["order", "succeeded"]
    waiting = sagakit("--db", str(db), "list", "--status", "waiting", cwd=tmp_path)
    assert rows(waiting.stdout) == []


def test_a_declared_migration_needs_no_drain_and_is_applied_by_an_operator(
    scenario: tuple[Path, str], tmp_path: Path
) -> None:
    db, saga_id = scenario
    code, text = check(db, tmp_path, "release_migrating", "--json")
    assert code == 0, text
    (row,) = json.loads(text)["sagas"]
    assert (row["version"], row["migrate"], row["drain"]) == (1, 1, 0)
    assert row["reasons"] == ["v1 -> v2 by its declared migration"]

    def run(*args: str) -> str:
        result = sagakit("--db", str(db), *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "would migrate 1 instance(s)" in run(
        "migrate-instances", "release_migrating", "--dry-run"
    )
    said = ("--as", "maria", "--reason", "v2 ships the new address check")
    for missing in (said[:2], said[2:]):  # who and why are both needed
        refused = sagakit(
            "--db", str(db), "migrate-instances", "release_migrating", *missing,
            cwd=tmp_path,
        )  # fmt: skip
        assert_one_error_line(refused)
        assert "--as NAME" in refused.stderr or "--reason TEXT" in refused.stderr
    assert "migrated 1 instance(s)" in run(
        "migrate-instances", "release_migrating", *said
    )
    assert "migrated 0 instance(s)" in run(
        "migrate-instances", "release_migrating", *said
    )
    code, text = check(db, tmp_path, "release_migrating", "--json")
    assert json.loads(text)["sagas"][0]["version"] == 2
    assert "resumed 1 saga(s)" in run("recover", "release_migrating")
    shown = run("show", saga_id[:8])
    assert "migrated" in shown
    assert "maria" in shown  # the audit trail: who and why
    assert "v2 ships the new address check" in shown
    assert "order v2 (shape " in shown
    assert "succeeded" in shown


def test_a_database_not_yet_migrated_to_versions_counts_all_as_v1(
    scenario: tuple[Path, str], tmp_path: Path
) -> None:
    db, _ = scenario
    with sqlite3.connect(db) as conn:  # as if migration 8 were still to come
        conn.execute("DELETE FROM sagakit_schema_migrations WHERE version = 8")
    code, text = check(db, tmp_path, "release_both", "--json")
    assert code == 0, text
    assert [(s["version"], s["continue"]) for s in json.loads(text)["sagas"]] == [
        (1, 1)
    ]
    code, text = check(db, tmp_path, "release_v2", "--json")
    assert code == 1
    assert json.loads(text)["stranded"] == 1
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a database sagakit never wrote to
    result = sagakit("--db", str(empty), "deploy-check", "release_v2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no live instances" in result.stdout
