"""The actions on one compensation, forks and the audit trail from the CLI,
as real ``sagakit`` processes on SQLite and PostgreSQL: each action, its
refusals (one ``error:`` line, exit 2), and a CLI killed (SIGKILL) right
after its action committed.

The sagas live in ``tests.e2e.repair_app``; the CLI runs none of their
steps: this process does, as ``sagakit recover`` would (in process, so the
test stays quick), and logs them in ``repair_app.LOG``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sagakit import Orchestrator, SagaStatus, StepStatus
from sagakit.adapters.store import open_store_async
from sagakit.ports.store import HistoryEntry, SagaRecord
from tests.e2e import repair_app
from tests.e2e.test_cli import assert_one_error_line, rows, sagakit

pytestmark = pytest.mark.e2e

APP = "tests.e2e.repair_app"
ROOT = Path(__file__).resolve().parents[2]
SAGAS = [repair_app.undoing, repair_app.shipping]


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty log, broken services, and ``repair_app`` importable by the CLI."""
    repair_app.LOG.clear()
    repair_app.SWITCH.fixed = False
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.delenv("SAGAKIT_OPERATOR", raising=False)
    yield
    repair_app.SWITCH.fixed = False


def cli(url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """``sagakit --db URL ARGS --sagas APP`` as operator alice."""
    return sagakit(
        "--db",
        url,
        *args,
        "--sagas",
        APP,
        cwd=ROOT,
        env={"SAGAKIT_OPERATOR": "alice"} | (env or {}),
    )


def show(url: str, saga_id: str) -> str:
    shown = sagakit("--db", url, "show", saga_id, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    return str(shown.stdout)


def audit(output: str) -> list[list[str]]:
    """The rows of the ``operator actions`` table of ``sagakit show``."""
    table = output[output.index("operator actions") :]
    return [r for r in rows(table) if r[0]]  # continuation lines have no time


async def run(url: str, saga: Any, order: str) -> str:
    store = await open_store_async(url)
    try:
        context = repair_app.Order(order=order)
        result = await Orchestrator(store, SAGAS).run(saga, context, saga_id=order)
        return result.saga_id
    finally:
        await store.close()


async def recover(url: str) -> list[str]:
    """What ``sagakit recover`` does, here: resume every unfinished saga."""
    store = await open_store_async(url)
    try:
        orch = Orchestrator(store, SAGAS)
        resumed = await orch.recover()
        await asyncio.wait_for(orch.drain(), 20)
        return resumed
    finally:
        await store.close()


async def stored(url: str, saga_id: str) -> tuple[SagaRecord, list[HistoryEntry]]:
    store = await open_store_async(url)
    try:
        return await store.get(saga_id), await store.history(saga_id)
    finally:
        await store.close()


def lines(history: list[HistoryEntry], outcome: str) -> list[Any]:
    return [h.result for h in history if h.outcome == outcome]


# -- each action ---------------------------------------------------------------


def test_mark_then_retry_one_compensation(url: str) -> None:
    saga_id = asyncio.run(run(url, repair_app.undoing, "o-1"))
    record, _ = asyncio.run(stored(url, saga_id))
    assert record.status is SagaStatus.COMPENSATION_FAILED

    marked = cli(url, "mark-compensated", saga_id, "c", "--reason", "undone in ERP")
    assert marked.returncode == 0, marked.stderr
    assert f"mark-compensated committed for undoing {saga_id}: compensating" in (
        marked.stdout
    )
    assert "no worker owns this saga now" in marked.stdout
    assert f"sagakit recover {APP}" in marked.stdout
    assert asyncio.run(recover(url)) == [saga_id]  # undo b fails again
    record, _ = asyncio.run(stored(url, saga_id))
    assert record.status is SagaStatus.COMPENSATION_FAILED
    assert record.state.compensation_errors[0][0] == "b"

    retried = cli(url, "retry-compensation", saga_id, "b", "--reason", "b is back")
    assert retried.returncode == 0, retried.stderr
    repair_app.SWITCH.fixed = True
    assert asyncio.run(recover(url)) == [saga_id]

    record, history = asyncio.run(stored(url, saga_id))
    assert record.status is SagaStatus.COMPENSATED
    assert record.state.step("c").status is StepStatus.COMPENSATED
    assert repair_app.LOG == [
        "o-1 a x1",
        "o-1 b x1",
        "o-1 c x1",
        "o-1 charge",
        "o-1 undo c",  # failed: then marked done by hand, never run again
        "o-1 undo b",  # failed
        "o-1 undo b",  # retried
        "o-1 undo a",
    ]
    (mark,) = lines(history, "mark_compensated_requested")
    assert mark == {
        "by": "alice",
        "reason": "undone in ERP",
        "step": "c",
        "changed": [
            "status compensation_failed -> compensating",
            "step b succeeded -> compensating",
            "step c compensation_failed -> compensated",
        ],
    }
    shown = audit(show(url, saga_id))
    assert [r[1:5] for r in shown] == [
        ["alice", "mark_compensated", "c", "undone in ERP"],
        ["alice", "retry_compensation", "b", "b is back"],
    ]


def test_skip_a_compensation(url: str) -> None:
    saga_id = asyncio.run(run(url, repair_app.undoing, "o-2"))
    skipped = cli(
        url, "skip-compensation", saga_id[:6], "c", "--reason", "c stays: paid"
    )
    assert skipped.returncode == 0, skipped.stderr
    repair_app.SWITCH.fixed = True
    asyncio.run(recover(url))
    record, _ = asyncio.run(stored(url, saga_id))
    assert record.status is SagaStatus.COMPENSATED
    assert record.state.step("c").status is StepStatus.COMPENSATION_SKIPPED
    assert repair_app.LOG.count("o-2 undo c") == 1  # the failed attempt only
    assert repair_app.LOG[-2:] == ["o-2 undo b", "o-2 undo a"]
    assert "compensation_skipped" in show(url, saga_id)


def test_fork_a_failed_saga_with_an_edited_context(url: str) -> None:
    source = asyncio.run(run(url, repair_app.shipping, "o-3"))
    forked = cli(
        url,
        *("fork", source, "--from", "ship", "--context", '{"qty": 3}'),
        *("--id", "o-3b", "--reason", "ship 3, carrier fixed"),
    )
    assert forked.returncode == 0, forked.stderr
    assert f"forked {source} from step ship into o-3b" in forked.stdout
    assert "fork committed for shipping o-3b: running" in forked.stdout
    repair_app.SWITCH.fixed = True
    assert asyncio.run(recover(url)) == ["o-3b"]

    fork, fork_history = asyncio.run(stored(url, "o-3b"))
    assert fork.status is SagaStatus.SUCCEEDED
    assert fork.context == {"order": "o-3", "qty": 3}
    assert fork.state.results["reserve"] == "reserve-o-3"  # reused, not re-run
    assert repair_app.LOG == [
        "o-3 reserve x1",
        "o-3 charge x1",
        "o-3 ship x1",  # the source's failure
        "o-3 ship x3",  # the fork: only the step it re-runs from
    ]
    (origin,) = lines(fork_history, "forked_from")
    assert origin["saga_id"] == source
    assert origin["by"] == "alice"
    _, source_history = asyncio.run(stored(url, source))
    (line,) = lines(source_history, "fork_requested")
    assert (line["fork"], line["step"], line["context"]["qty"]) == ("o-3b", "ship", 3)
    assert [r[1:5] for r in audit(show(url, source))] == [
        ["alice", "fork", "ship", "ship 3, carrier fixed"]
    ]
    assert audit(show(url, "o-3b"))[0][2] == f"forked from {source}"

    again = cli(url, "fork", source, "--from", "ship", "--reason", "twice")
    assert_one_error_line(again)
    assert "was forked into o-3b already: fork o-3b instead" in again.stderr
    retry = cli(url, "retry", source, "--reason", "twice")
    assert_one_error_line(retry)
    assert "act on o-3b instead" in retry.stderr


# -- refusals ------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "refusals.db")


def test_refusals_are_one_line_and_change_nothing(sqlite_url: str) -> None:
    url = sqlite_url
    undone = asyncio.run(run(url, repair_app.undoing, "r-1"))
    failed = asyncio.run(run(url, repair_app.shipping, "r-2"))
    before = {i: asyncio.run(stored(url, i))[0].version for i in (undone, failed)}
    asked = {
        "say who you are: --as NAME or $SAGAKIT_OPERATOR": (
            ("mark-compensated", undone, "c", "--reason", "x"),
            {"SAGAKIT_OPERATOR": ""},
        ),
        "say why: --reason TEXT": (("skip-compensation", undone, "c"), {}),
        "past its pivot": (
            ("mark-compensated", failed, "reserve", "--reason", "x"),
            {},
        ),
        "step 'charge' has no compensation": (
            ("skip-compensation", undone, "charge", "--reason", "x"),
            {},
        ),
        "has no step 'nope'": (
            ("fork", failed, "--from", "nope", "--reason", "x", "--as", "bob"),
            {},
        ),
        "qty: Input should be a valid integer": (
            (
                "fork",
                failed,
                "--from",
                "ship",
                "--context",
                '{"qty": "x"}',
                "--reason",
                "r",
            ),
            {"SAGAKIT_OPERATOR": "bob"},
        ),
    }
    with ThreadPoolExecutor(len(asked)) as pool:  # they only read: at once
        answers = {
            message: pool.submit(cli, url, *args, env=env)
            for message, (args, env) in asked.items()
        }
        for message, answer in answers.items():
            result = answer.result()
            assert_one_error_line(result)
            assert message in result.stderr, result.stderr
    after = {i: asyncio.run(stored(url, i))[0].version for i in (undone, failed)}
    assert after == before


def test_an_action_on_a_saga_a_live_worker_drives_is_refused(sqlite_url: str) -> None:
    """A worker (here, this process) holds the saga's lease while it rolls
    back: acting on a compensation would race it."""

    async def go() -> None:
        store = await open_store_async(sqlite_url)
        gate = asyncio.Event()
        started = asyncio.Event()

        async def slow_undo(ctx: repair_app.Order) -> None:
            started.set()
            await gate.wait()

        from sagakit import Saga, Step  # noqa: PLC0415

        slow = Saga(
            "undoing",
            [
                Step("a", repair_app.act("a"), compensate=repair_app.undo("a")),
                Step("b", repair_app.act("b"), compensate=slow_undo),
                Step("c", repair_app.act("c"), compensate=repair_app.undo("c")),
                Step("charge", repair_app.refuse),
            ],
            context=repair_app.Order,
        )
        orch = Orchestrator(store, [slow], lease=5)
        saga_id = await orch.start(slow, repair_app.Order(order="l-1"))
        await asyncio.wait_for(started.wait(), 10)
        refused = await asyncio.to_thread(
            cli, sqlite_url, "mark-compensated", saga_id, "a", "--reason", "x"
        )
        gate.set()
        final = await asyncio.wait_for(orch.wait(saga_id), 10)
        await orch.close()
        assert_one_error_line(refused)
        assert "pause it first" in refused.stderr
        assert final.status is SagaStatus.COMPENSATED

    asyncio.run(go())


# -- crashes -------------------------------------------------------------------


def killed(url: str, point: str, *args: str) -> None:
    """Run ``sagakit ARGS``, which kills itself with SIGKILL at ``point``."""
    died = cli(url, *args, env={"REPAIR_CRASH": point})
    assert died.returncode == -signal.SIGKILL, died.stderr


def test_sigkill_right_after_the_action_committed(url: str) -> None:
    """The CLI dies holding the saga's lease: the next recovery takes it at
    once (its owner is a dead process on this host) and finishes the
    rollback, each compensation once, in reverse order."""
    saga_id = asyncio.run(run(url, repair_app.undoing, "k-1"))
    killed(url, "after_commit", "mark-compensated", saga_id, "c", "--reason", "by hand")
    record, history = asyncio.run(stored(url, saga_id))
    assert record.status is SagaStatus.COMPENSATING  # committed, not handed over
    assert len(lines(history, "mark_compensated_requested")) == 1

    repair_app.SWITCH.fixed = True
    assert asyncio.run(recover(url)) == [saga_id]
    record, history = asyncio.run(stored(url, saga_id))
    assert record.status is SagaStatus.COMPENSATED
    undone = [e for e in repair_app.LOG if " undo " in e]
    assert undone == ["k-1 undo c", "k-1 undo b", "k-1 undo a"]  # c: failed once
    outcomes = [(h.step, h.outcome) for h in history if h.kind == "compensation"]
    assert outcomes == [("c", "failed"), ("b", "succeeded"), ("a", "succeeded")]
    assert len(lines(history, "mark_compensated_requested")) == 1


def test_sigkill_between_the_two_commits_of_a_fork(sqlite_url: str) -> None:
    """The source names its fork, which was never created: forking it again
    creates that fork as it was asked for, and only it."""
    url = sqlite_url
    source = asyncio.run(run(url, repair_app.shipping, "f-1"))
    asked = ("fork", source, "--from", "ship", "--context", '{"qty": 2}')
    killed(url, "before_fork", *asked, "--reason", "carrier fixed")
    _, history = asyncio.run(stored(url, source))
    (line,) = lines(history, "fork_requested")
    fork_id = line["fork"]
    assert asyncio.run(recover(url)) == []  # nothing was created

    healed = cli(url, "fork", source, "--from", "reserve", "--reason", "once more")
    assert healed.returncode == 0, healed.stderr
    assert "a crash stopped that fork before its saga was created" in healed.stdout
    assert f"into {fork_id}" in healed.stdout
    repair_app.SWITCH.fixed = True
    assert asyncio.run(recover(url)) == [fork_id]
    fork, _ = asyncio.run(stored(url, fork_id))
    assert fork.status is SagaStatus.SUCCEEDED
    assert fork.context["qty"] == 2  # as asked for before the crash
    assert repair_app.LOG[-1] == "f-1 ship x2"
    assert repair_app.LOG.count("f-1 reserve x1") == 1
    third = cli(url, "fork", source, "--from", "ship", "--reason", "again")
    assert_one_error_line(third)
    assert f"was forked into {fork_id} already" in third.stderr
