"""``sagakit locks`` (read-only) and ``sagakit locks release`` as subprocesses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

from sagakit import Orchestrator, Saga, Step
from sagakit.adapters.store import open_store_async
from tests.e2e.test_cli import assert_one_error_line, rows, sagakit

pytestmark = pytest.mark.e2e


class Seat(BaseModel):
    seat: str


def left_holding(db: Path | str, *, paused: bool = False) -> None:
    """Saga ``holder`` holds ``seat:1A`` and ``waiter`` queues for it; then
    the process that drove them stops (the locks stay with the sagas).
    ``paused``: an operator paused ``holder`` first."""

    async def go() -> None:
        store = await open_store_async(str(db))
        never = asyncio.Event()

        async def reserve(ctx: Seat) -> None:
            await never.wait()

        saga = Saga(
            "booking",
            [Step("reserve", reserve, locks=["seat:{ctx.seat}"])],
            context=Seat,
        )
        orch = Orchestrator(store, [saga])
        await orch.start(saga, Seat(seat="1A"), saga_id="holder")
        await orch.start(saga, Seat(seat="1A"), saga_id="waiter")
        await orch.start(saga, Seat(seat="2B"), saga_id="other")
        for _ in range(500):
            holders, waiters = await store.list_locks()
            if (len(holders), len(waiters)) == (2, 1):
                break
            await asyncio.sleep(0.01)
        if paused:
            await orch.pause("holder", by="ana")
            for _ in range(500):
                if (await store.get("holder")).state.paused:
                    break
                await asyncio.sleep(0.01)
        await orch.stop_driving()
        await store.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database left as ``left_holding`` says (commands must not change it)."""
    db = tmp_path_factory.mktemp("held") / "l.db"
    left_holding(db)
    return db


def test_locks_lists_holders_and_waiters(held: Path) -> None:
    db, tmp_path = held, held.parent
    listed = sagakit("--db", str(db), "locks", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "2 lock(s) held, 1 waiting" in listed.stdout
    table = [row[:4] for row in rows(listed.stdout)]
    assert table == [
        ["seat:1A", "holder", "reserve", "held (1 waiting)"],
        ["seat:2B", "other", "reserve", "held"],
        ["seat:1A", "waiter", "reserve", "waiting #1"],
    ]
    one = sagakit("--db", str(db), "locks", "--prefix", "seat:2", cwd=tmp_path)
    assert [row[1] for row in rows(one.stdout)] == ["other"]
    mine = sagakit("--db", str(db), "locks", "--saga", "waiter", cwd=tmp_path)
    assert [row[3] for row in rows(mine.stdout)] == ["waiting #1"]


def test_locks_say_a_paused_holder_holds_up_its_queue(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    left_holding(db, paused=True)
    listed = sagakit("--db", str(db), "locks", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    states = {row[1]: row[3] for row in rows(listed.stdout)}
    assert states["holder"] == "held (1 waiting), paused by an operator"
    assert states["other"] == "held"


def test_release_records_who_and_why(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    left_holding(db)
    released = sagakit(
        "--db", str(db), "locks", "release", "seat:1A",
        "--reason", "the booking desk called", "--as", "ana",
        cwd=tmp_path,
    )  # fmt: skip
    assert released.returncode == 0, released.stderr
    assert "released seat:1A from saga holder (booking) by ana" in released.stdout
    shown = sagakit("--db", str(db), "show", "holder", cwd=tmp_path)
    assert "lock_released" in shown.stdout
    assert "the booking desk called" in shown.stdout
    listed = sagakit("--db", str(db), "locks", cwd=tmp_path)
    assert [row[0] for row in rows(listed.stdout)] == ["seat:2B", "seat:1A"]

    env = {"SAGAKIT_OPERATOR": "bo"}
    again = sagakit(
        "--db", str(db), "locks", "release", "seat:2B", "--reason", "x",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert "by bo" in again.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("locks", "release", "seat:9Z", "--reason", "x"), "no saga holds lock"),
        (("locks", "release", "seat:1A", "--reason", " "), "--reason must say why"),
        (("locks", "release", "seat:1A"), "--reason"),
        (("locks", "--limit", "0"), "invalid --limit 0"),
    ],
)
def test_bad_input_is_one_error_line(
    held: Path, args: tuple[str, ...], says: str
) -> None:
    result = sagakit("--db", str(held), *args, cwd=held.parent)
    assert_one_error_line(result)
    assert says in result.stderr


def test_reading_locks_creates_no_database(tmp_path: Path) -> None:
    for args in (("locks",), ("locks", "release", "k", "--reason", "x")):
        result = sagakit("--db", str(tmp_path / "none.db"), *args, cwd=tmp_path)
        assert_one_error_line(result)
        assert "no saga database" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.mysql
def test_locks_and_a_release_on_mysql(mysql_url: str, tmp_path: Path) -> None:
    left_holding(mysql_url)
    listed = sagakit("--db", mysql_url, "locks", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "2 lock(s) held, 1 waiting" in listed.stdout
    assert [row[:2] for row in rows(listed.stdout)] == [
        ["seat:1A", "holder"],
        ["seat:2B", "other"],
        ["seat:1A", "waiter"],
    ]
    released = sagakit(
        "--db", mysql_url, "locks", "release", "seat:1A", "--reason", "desk",
        "--as", "ana", cwd=tmp_path,
    )  # fmt: skip
    assert released.returncode == 0, released.stderr
    assert "released seat:1A from saga holder (booking) by ana" in released.stdout
    after = sagakit("--db", mysql_url, "locks", "--prefix", "seat:1", cwd=tmp_path)
    assert [row[1] for row in rows(after.stdout)] == ["waiter"]
