"""Workflow worker processes of two releases of one app, on one SQLite file
and on PostgreSQL (``versioned_workflow_app.py``).

Release 1 (a -> b -> c) is killed while every instance runs b; more of its
instances wait on a, which release 2 has too. A worker of release 2
(x -> a -> b2 -> c, version 2) alone runs its own instances but never the
old ones: it reports each waiting, with the reason, and ``sagakit
deploy-check`` says deploying release 2 alone strands them. Release 2
keeping version 1 beside it finishes them on version 1's steps.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sagakit.adapters.store import open_database
from sagakit.ports.workflow_store import WorkflowRecord, WorkflowStatus
from tests.conftest import run_sync
from tests.e2e.test_cli import sagakit
from tests.e2e.test_workflow_workers_postgres import spawn

APP_FILE = Path(__file__).with_name("versioned_workflow_app.py")
OLD, IDLE, NEW = 4, 2, 3
REASON = "waiting: needs orders v1, not registered here (have v2)"

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "live.db")
    return str(request.getfixturevalue("pg_url"))


def app(url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return spawn(APP_FILE, url, *args, log=log)


def run(url: str, *args: str, log: Path) -> None:
    proc = app(url, *args, log=log)
    assert proc.wait(120) == 0, log.read_text()[-3000:]


def effects(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def instances(url: str) -> dict[str, WorkflowRecord]:
    async def read() -> dict[str, WorkflowRecord]:
        async with await open_database(url) as db:
            assert db.workflows is not None
            found = await db.workflows.list_workflows(app="orders", limit=100)
            return {r.instance_id: r for r in found}

    return run_sync(read())


RELEASES = {
    "release_2": "v2 = build(InMemoryWorkflowStore(), '2')\n",
    "release_both": "both = build(InMemoryWorkflowStore(), 'both')\n",
}


def deploy_check(url: str, release: str, cwd: Path) -> tuple[int, dict[str, Any]]:
    module = cwd / f"{release}.py"
    module.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(APP_FILE.parent)!r})
        from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
        from versioned_workflow_app import build
        """)
        + RELEASES[release]
    )
    result = sagakit("--db", url, "deploy-check", release, "--json", cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_a_worker_without_the_version_never_runs_its_instances(
    url: str, tmp_path: Path
) -> None:
    log, ran = tmp_path / "workers.log", tmp_path / "effects.jsonl"
    run(url, "submit", str(OLD), "--release", "1", "--prefix", "old-", log=log)
    old = app(
        url, "worker", "--release", "1", "--hold-b", "--effects", str(ran), log=log
    )
    try:
        deadline = time.monotonic() + 60
        while sum(e["step"] == "b" for e in effects(ran)) < OLD:
            assert old.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
    finally:
        os.kill(old.pid, signal.SIGKILL)
        old.wait(10)
    held = instances(url)
    assert {r.status for r in held.values()} == {WorkflowStatus.RUNNING}
    time.sleep(1.5)  # their 1 s leases run out: the worker is gone
    run(url, "submit", str(IDLE), "--release", "1", "--prefix", "idl-", log=log)

    run(url, "submit", str(NEW), "--release", "2", "--prefix", "new-", log=log)
    release_2 = ["worker", "--release", "2", "--effects", str(ran)]
    run(url, *release_2, "--until", f"waiting:{OLD + IDLE}", log=log)
    after = instances(url)
    for prefix, count, step in (("old", OLD, "b"), ("idl", IDLE, "a")):
        for n in range(count):
            record = after[f"{prefix}-{n:05}"]
            assert (record.status, record.step, record.error) == (
                WorkflowStatus.PENDING,
                step,
                REASON,
            )
            assert record.definition_version == 1
    for n in range(NEW):
        assert after[f"new-{n:05}"].status is WorkflowStatus.SUCCEEDED
    by_release = collections.Counter((e["id"][:3], e["version"]) for e in effects(ran))
    assert by_release == {
        ("old", 1): OLD * 2,  # a, then b (killed)
        ("new", 2): NEW * 4,  # x, a, b2, c
    }

    code, plan = deploy_check(url, "release_2", tmp_path)
    assert code == 1, plan
    assert plan["workflows"] == [
        {
            "app": "orders",
            "version": 1,
            "live": OLD + IDLE,
            "continue": 0,
            "migrate": 0,
            "drain": OLD + IDLE,
            "reasons": [REASON.removeprefix("waiting: ")],
        }
    ]
    code, plan = deploy_check(url, "release_both", tmp_path)
    assert code == 0, plan
    assert [(r["version"], r["continue"]) for r in plan["workflows"]] == [
        (1, OLD + IDLE)
    ]

    run(url, "worker", "--release", "both", "--effects", str(ran), log=log)
    final = instances(url)
    assert {r.status for r in final.values()} == {WorkflowStatus.SUCCEEDED}
    old_steps = collections.Counter(
        (e["step"], e["version"]) for e in effects(ran) if e["id"].startswith("old")
    )
    assert old_steps == {("a", 1): OLD, ("b", 1): OLD * 2, ("c", 1): OLD}
    idle_steps = collections.Counter(
        (e["step"], e["version"]) for e in effects(ran) if e["id"].startswith("idl")
    )
    assert idle_steps == {("a", 1): IDLE, ("b", 1): IDLE, ("c", 1): IDLE}
