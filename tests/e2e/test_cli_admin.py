"""Admin commands as subprocesses: list --older-than, retry, resume, cancel,
pause/unpause, retry --all-failed, and dlq list|replay against RabbitMQ and Redis.

The sagas live in ``tests.e2e.admin_app``; what they break on is fixed by
setting ``ADMIN_FIXED=1`` in the environment of the process that runs them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagakit import Orchestrator, SagaStatus, SQLiteStore
from sagakit.adapters.transport import open_transport
from sagakit.messaging.envelope import Envelope
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.ports.transport import Transport
from sagakit.testing import FakeClock
from tests.conftest import delete_rabbitmq_queues, delete_redis_keys, run_sync
from tests.e2e import admin_app
from tests.e2e.test_cli import SAGA_ID, assert_one_error_line, rows, sagakit

pytestmark = pytest.mark.e2e

APP = "tests.e2e.admin_app"
ROOT = Path(__file__).resolve().parents[2]
FIXED = {"ADMIN_FIXED": "1"}
EVERY_FAILED = ("retry", "--all-failed", "--sagas", APP, "--reason", "carrier up")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's cwd: ``tests.e2e.admin_app`` must be importable from it."""
    monkeypatch.setenv("ADMIN_EFFECTS", str(tmp_path / "effects.txt"))
    monkeypatch.delenv("ADMIN_FIXED", raising=False)
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return tmp_path


OPERATOR = {"SAGAKIT_OPERATOR": "alice"}


def cli(db: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """``sagakit --db DB ARGS``, as operator alice (``$SAGAKIT_OPERATOR``)."""
    return sagakit("--db", str(db), *args, cwd=db.parent, env=OPERATOR | (env or {}))


def run_sagas(db: Path, *names: str, clock: FakeClock | None = None) -> list[str]:
    """Run sagas of ``admin_app`` here (broken) and return their ids."""

    async def go() -> list[str]:
        definitions = [admin_app.shipping, admin_app.undoing, admin_app.held]
        orch = Orchestrator(SQLiteStore(db), definitions, clock=clock)
        by_name = {d.name: d for d in definitions}
        ids = []
        for n, name in enumerate(names):
            result = await orch.run(by_name[name], admin_app.Order(order=f"o-{n}"))
            ids.append(result.saga_id)
        await orch.close()
        return ids

    return asyncio.run(go())


def stored(db: Path, saga_id: str) -> tuple[SagaRecord, list[HistoryEntry]]:
    async def go() -> tuple[SagaRecord, list[HistoryEntry]]:
        store = SQLiteStore(db)
        try:
            return await store.get(saga_id), await store.history(saga_id)
        finally:
            await store.close()

    return asyncio.run(go())


def effects(workdir: Path) -> list[str]:
    path = workdir / "effects.txt"
    return path.read_text().splitlines() if path.exists() else []


# -- list --older-than ---------------------------------------------------------


def test_list_older_than(workdir: Path) -> None:
    db = workdir / "a.db"
    (old,) = run_sagas(db, "shipping", clock=FakeClock(time.time() - 3 * 3600))
    (new,) = run_sagas(db, "shipping")
    listed = {
        age: [r[0] for r in rows(cli(db, "list", "--older-than", age).stdout)]
        for age in ("30s", "10m", "2h", "1d", "1h30m")
    }
    assert listed == {"30s": [old], "10m": [old], "2h": [old], "1d": [], "1h30m": [old]}
    everything = cli(db, "list", "--status", "failed")
    assert [r[0] for r in rows(everything.stdout)] == [new, old]


@pytest.mark.parametrize("value", ["10", "m", "-5m", "10 minutes", "5x", ""])
def test_list_bad_older_than_is_one_error_line(workdir: Path, value: str) -> None:
    result = cli(workdir / "a.db", "list", "--older-than", value)
    assert_one_error_line(result)
    assert "--older-than" in result.stderr


# -- retry, resume, cancel -----------------------------------------------------


def test_retry_a_failed_saga_after_the_fix(workdir: Path) -> None:
    db = workdir / "r.db"
    (saga_id,) = run_sagas(db, "shipping")
    assert stored(db, saga_id)[0].status is SagaStatus.FAILED

    retried = cli(db, "retry", saga_id[:8], "--sagas", APP, "--reason", "carrier up")
    assert retried.returncode == 0, retried.stderr
    assert f"retry committed for shipping {saga_id}: running" in retried.stdout
    assert f"sagakit recover {APP}" in retried.stdout
    assert effects(workdir).count("o-0 ship") == 1  # the CLI ran nothing

    recovered = cli(db, "recover", APP, env=FIXED)
    assert recovered.returncode == 0, recovered.stderr
    assert "resumed 1 saga(s)" in recovered.stdout
    record, history = stored(db, saga_id)
    assert record.status is SagaStatus.SUCCEEDED
    assert effects(workdir).count("o-0 ship") == 2
    (note,) = [h.result for h in history if h.outcome == "retry_requested"]
    assert note["reason"] == "carrier up"
    assert note["by"] == "alice"

    again = cli(db, "retry", saga_id, "--sagas", APP, "--reason", "x")  # succeeded
    assert_one_error_line(again)
    assert "only a failed saga" in again.stderr


def test_resume_a_compensation_failed_saga(workdir: Path) -> None:
    db = workdir / "c.db"
    (saga_id,) = run_sagas(db, "undoing")
    assert stored(db, saga_id)[0].status is SagaStatus.COMPENSATION_FAILED

    resumed = cli(db, "resume", saga_id, "--sagas", APP, "--reason", "undo fixed")
    assert resumed.returncode == 0, resumed.stderr
    assert "compensating" in resumed.stdout
    assert cli(db, "recover", APP, env=FIXED).returncode == 0
    assert stored(db, saga_id)[0].status is SagaStatus.COMPENSATED
    assert effects(workdir).count("o-0 undo reserve") == 2

    shown = cli(db, "show", saga_id)
    assert "resume_requested" in shown.stdout


@pytest.fixture
def worker(workdir: Path) -> Iterator[subprocess.Popen[str]]:
    """``sagakit worker`` on the test's database, short lease, stopped after."""
    db = workdir / "w.db"
    env = {k: v for k, v in os.environ.items() if k != "SAGAKIT_DATABASE_URL"}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "sagakit.cli.main", "--db", str(db)),
            *("worker", APP, "--lease", "1", "--id", "test-worker"),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_cancel_a_running_saga_compensates_it(
    workdir: Path, worker: subprocess.Popen[str]
) -> None:
    db = workdir / "w.db"

    async def submit() -> str:
        orch = Orchestrator(SQLiteStore(db), [admin_app.held])
        saga_id = await orch.submit(admin_app.held, admin_app.Order(order="h-1"))
        await orch.close()
        return saga_id

    saga_id = asyncio.run(submit())
    started = workdir / "effects.txt.started"
    wait_for(started.exists)  # the worker runs step "hold", which waits

    cancelled = cli(db, "cancel", saga_id, "--sagas", APP, "--reason", "ordered twice")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancel committed for held" in cancelled.stdout
    (workdir / "effects.txt.release").write_text("go")

    wait_for(lambda: stored(db, saga_id)[0].status is SagaStatus.COMPENSATED)
    record, history = stored(db, saga_id)
    assert record.state.error is not None
    assert record.state.error.message == "ordered twice"
    assert effects(workdir) == [
        "h-1 book",
        "h-1 hold",
        "h-1 undo hold",
        "h-1 undo book",
    ]
    assert any(h.outcome == "cancel_requested" for h in history)

    late = cli(db, "cancel", saga_id, "--sagas", APP, "--reason", "again")
    assert_one_error_line(late)
    assert "only a running saga" in late.stderr


def test_pause_and_unpause_by_saga_name_and_by_id(workdir: Path) -> None:
    db = workdir / "p.db"

    async def submit() -> list[str]:
        orch = Orchestrator(SQLiteStore(db), [admin_app.shipping])
        ids = [
            await orch.submit(admin_app.shipping, admin_app.Order(order=f"p-{n}"))
            for n in range(2)
        ]
        await orch.close()
        return ids

    ids = asyncio.run(submit())
    paused = cli(
        db, "pause", "--saga", "shipping", "--sagas", APP, "--reason", "deploy"
    )
    assert paused.returncode == 0, paused.stderr
    assert "paused 2 saga(s)" in paused.stdout
    assert set(SAGA_ID.findall(paused.stdout)) == set(ids)
    listed = cli(db, "list")
    assert [r[2] for r in rows(listed.stdout)] == ["running (paused)"] * 2
    # a recover adopts them, runs nothing and ends: they wait for an operator
    recovered = cli(db, "recover", APP, env=FIXED)
    assert recovered.returncode == 0, recovered.stderr
    assert effects(workdir) == []

    one = cli(db, "unpause", ids[0][:8], "--sagas", APP, "--reason", "deployed")
    assert one.returncode == 0, one.stderr
    assert "unpause committed for shipping" in one.stdout
    every_v1 = ("--saga", "shipping", "--version", "1")
    rest = cli(db, "unpause", *every_v1, "--sagas", APP, "--reason", "deployed")
    assert "unpaused 1 saga(s)" in rest.stdout
    assert SAGA_ID.findall(rest.stdout) == [ids[1]]
    assert cli(db, "recover", APP, env=FIXED).returncode == 0
    for saga_id in ids:
        record, history = stored(db, saga_id)
        assert record.status is SagaStatus.SUCCEEDED
        outcomes = [h.outcome for h in history if h.kind == "saga"]
        assert "pause_requested" in outcomes
        assert "unpause_requested" in outcomes
    assert sorted(effects(workdir)) == sorted(
        f"p-{n} {step}" for n in range(2) for step in ("reserve", "charge", "ship")
    )
    shown = cli(db, "show", ids[0])
    assert "pause_requested" in shown.stdout


def test_retry_all_failed(workdir: Path) -> None:
    db = workdir / "b.db"
    ids = run_sagas(db, "shipping", "shipping", "undoing", "shipping")
    shipping = [ids[0], ids[1], ids[3]]

    first = cli(db, *EVERY_FAILED, "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert "retried 2 failed saga(s)" in first.stdout
    assert set(SAGA_ID.findall(first.stdout)) == {ids[3], ids[1]}  # newest first
    assert cli(db, "recover", APP, env=FIXED).returncode == 0
    statuses = [stored(db, i)[0].status for i in ids]
    assert statuses == [
        SagaStatus.FAILED,
        SagaStatus.SUCCEEDED,
        SagaStatus.COMPENSATION_FAILED,
        SagaStatus.SUCCEEDED,
    ]

    rest = cli(db, *EVERY_FAILED, "--saga", "shipping")
    assert "retried 1 failed saga(s)" in rest.stdout
    assert SAGA_ID.findall(rest.stdout) == [shipping[0]]
    none = cli(db, *EVERY_FAILED, "--saga", "undoing")
    assert "retried 0 failed saga(s)" in none.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["retry", "--sagas", APP],
        ["retry", "abcdef12", "--all-failed", "--sagas", APP],
        ["retry", "abcdef12", "--saga", "shipping", "--sagas", APP],
        ["retry", "--all-failed", "--limit", "0", "--sagas", APP],
        ["retry", "--all-failed", "--saga", "nope", "--sagas", APP],
        ["retry", "f" * 32, "--sagas", APP],
        ["resume", "abc", "--sagas", APP],
        ["cancel", "f" * 32, "--sagas", "no.such.module"],
        ["pause", "--sagas", APP],
        ["pause", "abcdef12", "--saga", "shipping", "--sagas", APP],
        ["pause", "--saga", "shipping", "--version", "0", "--sagas", APP],
        ["pause", "--saga", "nope", "--sagas", APP],
        ["unpause", "abcdef12", "--version", "2", "--sagas", APP],
        ["unpause", "f" * 32, "--sagas", APP],
        ["dlq", "list", "q"],
        ["dlq", "list", "q", "--transport", "memory://"],
        ["dlq", "replay", "q", "--transport", "redis://127.0.0.1:1/0"],
        ["dlq", "replay", "q", "--transport", "redis://x", "--limit", "0"],
    ],
)
def test_admin_bad_input_is_one_error_line(workdir: Path, args: list[str]) -> None:
    environ = {"SAGAKIT_TRANSPORT_URL": ""}
    assert_one_error_line(cli(workdir / "x.db", *args, env=environ))


# -- dead letters --------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("amqp", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL; the test's queue is deleted afterwards."""
    if request.param == "amqp":
        yield request.getfixturevalue("rabbitmq_url")
    else:
        yield request.getfixturevalue("redis_url")


def dead_letter(url: str, queue: str, count: int) -> list[Envelope]:
    """Publish ``count`` commands that a failing consumer dead-letters."""
    sent = [
        Envelope(
            kind="command",
            type="kitchen.cook",
            correlation_id=f"s{n}:cook:1",
            saga_id=f"saga-{n}",
        )
        for n in range(count)
    ]

    async def go() -> None:
        transport = await open_transport(url)
        try:

            async def refuse(message: Envelope) -> None:
                raise RuntimeError("kitchen down")

            subscription = await transport.consume(
                queue, refuse, max_deliveries=1, prefetch=1
            )  # one at a time: dead-lettered in publish order
            for message in sent:
                await transport.publish(queue, message)
            async with asyncio.timeout(10):
                while len(await transport.dead_letters(queue)) < count:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await subscription.cancel()
        finally:
            await transport.close()

    run_sync(go())
    return sent


def handle(url: str, queue: str, count: int) -> list[str]:
    """Consume ``count`` messages of ``queue`` with a working handler."""

    async def go() -> list[str]:
        transport: Transport = await open_transport(url)
        got: list[str] = []
        done = asyncio.Event()

        async def ok(message: Envelope) -> None:
            got.append(message.id)
            if len(got) >= count:
                done.set()

        try:
            await transport.consume(queue, ok)
            await asyncio.wait_for(done.wait(), 10)
            return got
        finally:
            await transport.close()

    return run_sync(go())


def test_dlq_list_and_replay(workdir: Path, broker: str) -> None:
    queue = f"admin-{uuid.uuid4().hex[:10]}"
    try:
        sent = dead_letter(broker, queue, 3)
        listed = cli(workdir / "x.db", "dlq", "list", queue, "--transport", broker)
        assert listed.returncode == 0, listed.stderr
        assert f"3 dead letter(s) of {queue}" in listed.stdout
        table = [r for r in rows(listed.stdout) if len(r) == 6]
        assert [(r[2], r[3], r[4]) for r in table] == [
            ("kitchen.cook", m.id, m.saga_id) for m in sent
        ]
        assert all("kitchen down" in r[5] for r in table)

        replayed = cli(
            workdir / "x.db",
            "dlq",
            "replay",
            queue,
            "--transport",
            broker,
            "--limit",
            "2",
        )
        assert replayed.returncode == 0, replayed.stderr
        assert f"replayed 2 dead letter(s) to {queue}" in replayed.stdout
        assert sorted(handle(broker, queue, 2)) == sorted(m.id for m in sent[:2])
        left = cli(workdir / "x.db", "dlq", "list", queue, "--transport", broker)
        assert [r[3] for r in rows(left.stdout) if len(r) == 6] == [sent[2].id]

        rest = cli(workdir / "x.db", "dlq", "replay", queue, "--transport", broker)
        assert f"replayed 1 dead letter(s) to {queue}" in rest.stdout
        assert handle(broker, queue, 1) == [sent[2].id]
        empty = cli(workdir / "x.db", "dlq", "list", queue, "--transport", broker)
        assert f"0 dead letter(s) of {queue}" in empty.stdout
    finally:
        if broker.startswith("amqp"):
            run_sync(delete_rabbitmq_queues(f"sagakit.{queue}", f"sagakit.{queue}.dlq"))
        else:
            run_sync(delete_redis_keys(f"sagakit:{{{queue}}}*"))
