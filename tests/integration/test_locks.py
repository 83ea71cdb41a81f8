"""Semantic locks on a real store (SQLite, PostgreSQL, MySQL): sagas on one key
take it one at a time, in the order they asked; a busy key fails a step
(``mode="fail"``) or times it out; a deadlock between two sagas fails one
of them; ``until`` frees a key early; an operator's release, a participant's
check, and ``check_saga`` over a saga with locks. Worker processes killed
while holding locks: ``tests/e2e/test_lock_crash.py`` and
``tests/chaos/test_lock_contention.py``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from sagakit import Lock, Orchestrator, Saga, SagaStatus, Step, admin, locks
from sagakit.adapters.store import open_store_async
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.dashboard import create_app
from sagakit.errors import StateError
from sagakit.messaging.envelope import Envelope
from sagakit.participant import CommandRejected, require_lock
from sagakit.ports.locks import LockHolder, LockTable
from sagakit.ports.store import SagaStore
from sagakit.runtime import lockwatch
from sagakit.testing import check_saga
from sagakit.testing.contracts.store_locks import _sagas, _save, queue, take
from sagakit.views.locks import locks_json


class Seat(BaseModel):
    seat: str = "1A"
    other: str = "2B"
    fail: bool = False


def url_of(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database of this test's store (the same on every call)."""
    kind = request.node.callspec.params["store"]
    if kind == "sqlite":
        return str(tmp_path / "locks.db")
    return str(request.getfixturevalue({"postgres": "pg_url"}.get(kind, f"{kind}_url")))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SagaStore]:
    opened = await open_store_async(url_of(request, tmp_path))
    yield opened
    await opened.close()


class Ledger:
    """What the steps did, in order: ``(saga_id, what)``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def began(self, name: str) -> asyncio.Event:
        return self.started.setdefault(name, asyncio.Event())

    def step(self, what: str, *, gated: bool = False, fails: bool = False) -> Any:
        async def run(ctx: Seat, results: Any = None) -> str:
            saga_id = ctx_id(ctx)
            self.lines.append((saga_id, what))
            self.began(f"{saga_id}:{what}").set()
            if gated:
                await self.gate(f"{saga_id}:{what}").wait()
            await asyncio.sleep(0)
            if fails and ctx.fail:
                raise RuntimeError("declined")
            return what

        return run


def ctx_id(ctx: Seat) -> str:
    return f"{ctx.seat}/{ctx.other}/{int(ctx.fail)}"


def exclusive(lines: list[tuple[str, str]], begin: str, end: set[str]) -> None:
    """Between a saga's ``begin`` and the last of its ``end`` lines no other
    saga began: the key was never held by two."""
    holder: str | None = None
    for saga_id, what in lines:
        if what == begin:
            assert holder is None, f"{saga_id} began while {holder} held the key"
            holder = saga_id
        elif what in end and saga_id == holder:
            holder = None


async def eventually(check: Any, what: str) -> None:
    """Until ``check()`` (an awaitable's truth) holds; fails after ~10 s."""
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never: {what}")


async def test_sagas_on_one_key_take_it_one_at_a_time(store: SagaStore) -> None:
    ledger = Ledger()

    async def reserve(ctx: Seat) -> str:
        if ctx.other == "0":  # the first holds the key until all queue
            await ledger.gate("all queued").wait()
        return str(await ledger.step("reserve")(ctx))

    saga = Saga(
        "booking",
        [
            Step(
                "reserve",
                reserve,
                compensate=ledger.step("release"),
                locks=["seat:{ctx.seat}"],
            ),
            Step("pay", ledger.step("pay", fails=True)),
        ],
        context=Seat,
    )
    orch = Orchestrator(store, [saga])
    contexts = [Seat(other=str(n), fail=n % 3 == 1) for n in range(9)]
    ids = []
    for n, context in enumerate(contexts):
        ids.append(await orch.start(saga, context, saga_id=ctx_id(context)))

        async def queued(n: int = n) -> bool:
            # the first holds the key before the next starts: started in
            # the background, it could otherwise ask for it after another
            table = await store.list_locks()
            holders = [h.saga_id for h in table.holders]
            return holders == ids[:1] and len(table.waiters) == n

        await eventually(queued, f"the first holding the key, {n} sagas queued")
    ledger.gate("all queued").set()
    results = [await orch.wait(i) for i in ids]
    assert [r.status for r in results] == [
        SagaStatus.COMPENSATED if c.fail else SagaStatus.SUCCEEDED for c in contexts
    ]
    exclusive(ledger.lines, "reserve", {"pay", "release"})
    began = [s for s, what in ledger.lines if what == "reserve"]
    assert began == ids  # first come, first served
    assert await store.list_locks() == ([], [])
    kinds = [
        (h.outcome, h.result) for h in await store.history(ids[1]) if h.kind == "lock"
    ]
    assert kinds == [
        ("waiting", {"keys": ["seat:1A"], "holders": {"seat:1A": ids[0]}}),
        ("acquired", {"keys": ["seat:1A"]}),
        ("released", {"keys": ["seat:1A"]}),
    ]


async def refused_behind_a_holder(store: SagaStore, lock: Lock) -> Any:
    """Saga ``a`` holds the seat (its step waits); saga ``b`` asks for it
    with ``lock`` after a first step, and ends: its result. ``a`` then ends."""
    ledger = Ledger()
    saga = Saga(
        "booking",
        [
            Step("quote", ledger.step("quote"), compensate=ledger.step("unquote")),
            Step("reserve", ledger.step("reserve", gated=True), locks=[lock]),
        ],
        context=Seat,
    )
    orch = Orchestrator(store, [saga])
    first = await orch.start(saga, Seat(other="a"), saga_id="a")
    await ledger.began("1A/a/0:reserve").wait()
    result = await orch.run(saga, Seat(other="b"), saga_id="b")
    table = await store.list_locks()
    assert [(h.key, h.saga_id) for h in table.holders] == [("seat:1A", "a")]
    assert table.waiters == []  # b left the queue, if it was in it
    ledger.gate("1A/a/0:reserve").set()
    assert (await orch.wait(first)).status is SagaStatus.SUCCEEDED
    assert result.status is SagaStatus.COMPENSATED
    assert ("1A/b/0", "unquote") in ledger.lines
    assert ("1A/b/0", "reserve") not in ledger.lines  # it never ran
    return result


async def test_a_busy_key_in_fail_mode_compensates_at_once(store: SagaStore) -> None:
    result = await refused_behind_a_holder(store, Lock("seat:{ctx.seat}", mode="fail"))
    assert result.error is not None
    assert result.error.type == "LockUnavailable"
    assert "seat:1A is held by saga a" in result.error.message
    outcomes = [h.outcome for h in await store.history("b") if h.kind == "lock"]
    assert outcomes == ["failed"]


async def test_a_wait_longer_than_the_timeout_fails_the_step(store: SagaStore) -> None:
    result = await refused_behind_a_holder(store, Lock("seat:{ctx.seat}", timeout=0.2))
    assert result.error is not None
    assert result.error.type == "LockTimeout"
    outcomes = [h.outcome for h in await store.history("b") if h.kind == "lock"]
    assert outcomes == ["waiting", "timed_out"]


async def test_two_sagas_waiting_for_each_other_one_gives_way(
    store: SagaStore,
) -> None:
    ledger = Ledger()
    both = asyncio.Event()

    async def first(ctx: Seat) -> str:
        ledger.lines.append((ctx_id(ctx), "first"))
        if sum(what == "first" for _, what in ledger.lines) == 2:
            both.set()
        await both.wait()
        return "first"

    saga = Saga(
        "crossing",
        [
            Step(
                "first", first, compensate=ledger.step("undo"), locks=["k:{ctx.seat}"]
            ),
            Step("second", ledger.step("second"), locks=["k:{ctx.other}"]),
        ],
        context=Seat,
    )
    orch = Orchestrator(store, [saga])
    a = await orch.start(saga, Seat(seat="x", other="y"), saga_id="a")
    b = await orch.start(saga, Seat(seat="y", other="x"), saga_id="b")
    results = {r.saga_id: r for r in [await orch.wait(a), await orch.wait(b)]}
    statuses = sorted(r.status.value for r in results.values())
    assert statuses == ["compensated", "succeeded"]
    loser = next(r for r in results.values() if r.status is SagaStatus.COMPENSATED)
    assert loser.error is not None
    assert loser.error.type == "LockDeadlock"
    other = "a" if loser.saga_id == "b" else "b"
    assert f"{loser.saga_id} -> {other} -> {loser.saga_id}" in loser.error.message
    assert await store.list_locks() == ([], [])


async def test_until_frees_the_key_before_the_saga_ends(store: SagaStore) -> None:
    ledger = Ledger()
    saga = Saga(
        "booking",
        [
            Step(
                "reserve",
                ledger.step("reserve"),
                locks=[Lock("seat:{ctx.seat}", until="reserve")],
            ),
            Step("pay", ledger.step("pay", gated=True)),
        ],
        context=Seat,
    )
    orch = Orchestrator(store, [saga])
    a = await orch.start(saga, Seat(other="a"), saga_id="a")
    await ledger.began("1A/a/0:pay").wait()
    b = await orch.start(saga, Seat(other="b"), saga_id="b")
    await ledger.began("1A/b/0:pay").wait()  # b took the seat while a pays
    for saga_id in ("a", "b"):
        ledger.gate(f"1A/{saga_id}/0:pay").set()
    assert (await orch.wait(a)).status is SagaStatus.SUCCEEDED
    assert (await orch.wait(b)).status is SagaStatus.SUCCEEDED


async def freed_elsewhere(here_store: SagaStore, there_store: SagaStore) -> None:
    """Saga a holds a key through ``here_store``; b, driven through
    ``there_store`` (another process's connection), queues for it and takes
    it once a lets go."""
    ledger = Ledger()
    saga = Saga(
        "booking",
        [
            Step(
                "reserve", ledger.step("reserve", gated=True), locks=["seat:{ctx.seat}"]
            )
        ],
        context=Seat,
    )
    here = Orchestrator(here_store, [saga], lease=5)
    there = Orchestrator(there_store, [saga], lease=5)
    there.driver.lock_poll = lockwatch.FIRST_POLL * 2
    a = await here.start(saga, Seat(other="a"), saga_id="a")
    await ledger.began("1A/a/0:reserve").wait()
    b = await there.start(saga, Seat(other="b"), saga_id="b")

    async def queued() -> bool:
        return [w.saga_id for w in (await here_store.list_locks()).waiters] == ["b"]

    await eventually(queued, "b queues")
    await asyncio.sleep(0.1)  # b's driver has looked once and found the key busy
    ledger.gate("1A/a/0:reserve").set()
    ledger.gate("1A/b/0:reserve").set()
    assert (await here.wait(a)).status is SagaStatus.SUCCEEDED
    async with asyncio.timeout(30):
        assert (await there.wait(b)).status is SagaStatus.SUCCEEDED
    await there.stop_driving()


async def test_a_key_freed_in_another_process_wakes_the_waiter(
    store: SagaStore,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The waiter's driver looks at the store again within its lock_poll."""
    monkeypatch.setattr(lockwatch, "FIRST_POLL", 0.025)
    second = await open_store_async(url_of(request, tmp_path))
    try:
        await freed_elsewhere(store, second)
    finally:
        await second.close()


@pytest.mark.postgres
async def test_a_key_freed_in_another_process_wakes_the_waiter_at_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a waiter's driver listens for lock releases: with its
    polls pushed an hour away, only the notice of the other process's
    commit can wake it (``LISTEN``/``NOTIFY``, migration 0019)."""
    monkeypatch.setattr(lockwatch, "FIRST_POLL", 1800.0)
    first, second = await open_store_async(pg_url), await open_store_async(pg_url)
    try:
        await freed_elsewhere(first, second)
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
async def test_a_driver_listens_for_releases_only_while_a_saga_queues(
    pg_url: str,
) -> None:
    """The listening connection is opened when a saga driven here queues,
    not for every saga that takes a free key."""
    first, second = await open_store_async(pg_url), await open_store_async(pg_url)
    listened: list[str] = []
    real = second.listen_lock_releases  # type: ignore[attr-defined]

    async def counted(wake: Any) -> Any:
        listened.append("listen")
        return await real(wake)

    second.listen_lock_releases = counted  # type: ignore[attr-defined]
    try:
        step = Step("reserve", Ledger().step("reserve"), locks=["seat:{ctx.seat}"])
        alone = Saga("alone", [step], context=Seat)
        orch = Orchestrator(second, [alone], lease=5)
        assert (await orch.run(alone, Seat(seat="9Z"))).status is SagaStatus.SUCCEEDED
        await orch.stop_driving()
        assert listened == []
        await freed_elsewhere(first, second)  # b queues through second
        assert listened == ["listen"]
    finally:
        await first.close()
        await second.close()


async def a_pays_b_queues(
    store: SagaStore, ledger: Ledger, *after: Step
) -> tuple[Orchestrator, Any, Any]:
    """Saga ``a`` holds seat 1A and is in its gated ``pay`` step; ``b``
    queues for the seat. The orchestrator and both handles."""
    steps = [
        Step("reserve", ledger.step("reserve"), locks=["seat:{ctx.seat}"]),
        Step("pay", ledger.step("pay", gated=True)),
        *after,
    ]
    saga = Saga("booking", steps, context=Seat)
    orch = Orchestrator(store, [saga], lease=5)
    a = await orch.start(saga, Seat(other="a"), saga_id="a")
    await ledger.began("1A/a/0:pay").wait()
    b = await orch.start(saga, Seat(other="b"), saga_id="b")

    async def queued() -> bool:
        return [w.saga_id for w in (await admin.locks(store)).waiters] == ["b"]

    await eventually(queued, "b queues")
    return orch, a, b


async def test_an_operator_releases_a_key_from_a_running_saga(
    store: SagaStore,
) -> None:
    ledger = Ledger()
    orch, a, b = await a_pays_b_queues(store, ledger)
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
        shown = (await web.get("/api/locks", params={"prefix": "seat:"})).json()
        listed = (await web.get("/locks", params={"prefix": "seat:"})).text
        waiter = (await web.get("/sagas/b")).text
    assert [(h["key"], h["saga_id"], h["waiting"]) for h in shown["holders"]] == [
        ("seat:1A", "a", 1)
    ]
    assert [(w["saga_id"], w["place"]) for w in shown["waiters"]] == [("b", 1)]
    for saga_id in ("a", "b"):  # the locks page links each saga
        assert f'<a href="/sagas/{saga_id}">{saga_id}</a>' in listed
    # b's page: the key it queues for, and who holds it (a link to a)
    assert '<a href="/locks?prefix=seat%3A1A">seat:1A</a>' in waiter
    assert '<a href="/sagas/a">a</a>' in waiter
    released = await admin.release_lock(store, "seat:1A", reason="stuck", by="ana")
    assert released.record.saga_id == "a"
    assert released.record.state.locks is None
    await ledger.began("1A/b/0:pay").wait()  # b goes on while a still pays
    for saga_id in ("a", "b"):
        ledger.gate(f"1A/{saga_id}/0:pay").set()
    assert (await orch.wait(a)).status is SagaStatus.SUCCEEDED
    assert (await orch.wait(b)).status is SagaStatus.SUCCEEDED
    lines = [h for h in await store.history("a") if h.outcome == "lock_released"]
    assert [line.result for line in lines] == [
        {"key": "seat:1A", "step": "reserve", "by": "ana", "reason": "stuck"}
    ]
    with pytest.raises(StateError, match="no saga holds lock 'seat:1A'"):
        await admin.release_lock(store, "seat:1A", reason="again", by="ana")


async def test_locks_say_why_a_holder_does_not_go_on(store: SagaStore) -> None:
    """A holder paused by an operator keeps its keys, and its queue waits:
    ``admin.held_up`` (``sagakit locks``, the dashboard) says so, until it
    is unpaused."""
    ledger = Ledger()
    orch, a, b = await a_pays_b_queues(store, ledger, Step("ship", ledger.step("ship")))
    assert await admin.held_up(store, await admin.locks(store)) == {}
    await orch.pause("a", reason="checking the card", by="ana")
    ledger.gate("1A/a/0:pay").set()  # pay ends; ship waits for the unpause

    async def paused() -> bool:
        held = await admin.held_up(store, await admin.locks(store))
        return held == {"a": "paused by an operator"}

    await eventually(paused, "a paused")
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
        shown = (await web.get("/api/locks")).json()
        listed = (await web.get("/locks")).text
    assert [(h["saga_id"], h["held_up"]) for h in shown["holders"]] == [
        ("a", "paused by an operator")
    ]
    assert [w["saga_id"] for w in shown["waiters"]] == ["b"]
    assert "paused by an operator</span>" in listed
    await orch.unpause("a", by="ana")
    assert (await orch.wait(a)).status is SagaStatus.SUCCEEDED
    await ledger.began("1A/b/0:pay").wait()
    ledger.gate("1A/b/0:pay").set()
    assert (await orch.wait(b)).status is SagaStatus.SUCCEEDED
    assert (await admin.locks(store)) == ([], [])


async def test_held_up_names_parked_ended_and_missing_holders() -> None:
    """The other reasons a key's queue cannot move: a holder parked as
    poison (the reason it gave), one that ended still holding (a store
    edited by hand), and one that does not exist."""
    store = InMemoryStore()
    saga = Saga("booking", [Step("reserve", Ledger().step("reserve"))], context=Seat)
    orch = Orchestrator(store, [saga])
    for saga_id, changes in (
        ("p", {"paused": True, "parked": "poison: step 'reserve' was in flight"}),
        ("e", {"status": SagaStatus.SUCCEEDED}),
    ):
        await orch.submit(saga, Seat(), saga_id=saga_id)
        record = await store.get(saga_id)
        state = record.state.but(**changes)
        changed = dataclasses.replace(
            record, state=state, status=state.status, version=record.version + 1
        )
        await store.save(changed, record.version, [])
    holders = [LockHolder(f"k{i}", s, "reserve", 0.0) for i, s in enumerate("pepx")]
    assert await admin.held_up(store, LockTable(holders, [])) == {
        "p": "parked: poison: step 'reserve' was in flight",
        "e": "ended (succeeded) without letting go",
        "x": "no such saga: release the key",
    }
    shown = locks_json(LockTable(holders[:1], []), 0.0, {"p": "parked: x"})
    assert shown["holders"][0]["held_up"] == "parked: x"
    assert locks_json(LockTable(holders[:1], []), 0.0)["holders"][0]["held_up"] is None


class SlowGets:
    """A store whose reads take a few turns of the loop, counting how many
    are in flight at once."""

    def __init__(self, store: SagaStore) -> None:
        self.store = store
        self.in_flight = self.most = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def get(self, saga_id: str) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return await self.store.get(saga_id)
        finally:
            self.in_flight -= 1


async def test_held_up_reads_holders_side_by_side_a_few_at_a_time() -> None:
    store = InMemoryStore()
    saga = Saga("booking", [Step("reserve", Ledger().step("reserve"))], context=Seat)
    orch = Orchestrator(store, [saga])
    for n in range(20):
        saga_id = await orch.submit(saga, Seat(), saga_id=f"s{n:02}")
        if n % 2 == 0:
            record = await store.get(saga_id)
            paused = dataclasses.replace(
                record, state=record.state.but(paused=True), version=record.version + 1
            )
            await store.save(paused, record.version, [])
    holders = [LockHolder(f"k{n}", f"s{n:02}", "reserve", 0.0) for n in range(20)]
    holders.append(LockHolder("k20", "gone", "reserve", 0.0))
    slow = SlowGets(store)
    why = await admin.held_up(slow, LockTable(holders, []))  # type: ignore[arg-type]
    assert why == {
        **{f"s{n:02}": "paused by an operator" for n in range(0, 20, 2)},
        "gone": "no such saga: release the key",
    }
    assert slow.most == admin.lock_actions.READS_AT_ONCE


async def test_a_participant_checks_the_sender_holds_the_key(
    store: SagaStore,
) -> None:
    saga = Saga(
        "booking",
        [
            Step("reserve", lambda ctx: None, locks=["seat:{ctx.seat}"]),
            Step("pay", lambda ctx: None, pivot=True),
        ],
        context=Seat,
    )
    orch = Orchestrator(store, [saga])
    gate = asyncio.Event()

    def message(saga_id: str) -> Envelope:
        return Envelope(
            kind="command",
            type="stock.reserve",
            correlation_id=f"{saga_id}:reserve:1",
            saga_id=saga_id,
        )

    assert await locks.holder(store, "seat:1A") is None
    with pytest.raises(CommandRejected, match="nobody holds it"):
        await require_lock(store, "seat:1A", message("a"))

    async def wait(ctx: Seat) -> None:
        await gate.wait()

    paused = Saga(
        "held",
        [
            Step("reserve", lambda ctx: None, locks=["seat:{ctx.seat}"]),
            Step("wait", wait),
        ],
        context=Seat,
    )
    a = await orch.start(paused, Seat(), saga_id="a")

    async def taken() -> bool:
        return await locks.holder(store, "seat:1A") is not None

    await eventually(taken, "a holds the seat")
    held = await require_lock(store, "seat:1A", message("a"))
    assert (held.saga_id, held.step) == ("a", "reserve")
    assert await locks.holds(store, "seat:1A", "a")
    with pytest.raises(CommandRejected, match="saga a holds it"):
        await require_lock(store, "seat:1A", message("b"))
    gate.set()
    assert (await orch.wait(a)).status is SagaStatus.SUCCEEDED
    assert saga.lock_steps == {"reserve"}


async def test_check_saga_finds_every_lock_released() -> None:
    saga = Saga(
        "booking",
        [
            Step("quote", lambda ctx: 1, compensate=lambda ctx: None),
            Step(
                "reserve",
                lambda ctx: 2,
                compensate=lambda ctx: None,
                locks=["seat:{ctx.seat}", Lock("row:{ctx.other}", until="pay")],
            ),
            Step("pay", lambda ctx: 3, pivot=True, locks=["card:{ctx.seat}"]),
            Step("ship", lambda ctx: 4),
        ],
        context=Seat,
    )
    report = await check_saga(saga, Seat(), store_factory=InMemoryStore)
    report.assert_ok()
    assert report.outcomes["compensated"] > 0
    assert report.outcomes["succeeded"] > 0


async def test_an_operator_releases_a_key_on_the_dashboard(store: SagaStore) -> None:
    await _sagas(store, "holder", "waiter")
    await _save(store, "holder", take("seat:9C"))
    await _save(store, "waiter", queue("seat:9C"))
    token = "a-token-of-24-characters"  # noqa: S105 - a test token
    app = create_app(store, token=token)
    bearer = {"Authorization": f"Bearer {token}", "X-Sagakit-Operator": "ana"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
        page = (await web.get("/locks")).text
        assert 'action="/locks/release"' in page
        why = await web.post("/locks/release", json={"key": "seat:9C"}, headers=bearer)
        assert why.status_code == 400  # no reason: nothing released
        assert await store.lock_holders(["seat:9C"]) != {}
        nobody = await web.post(
            "/locks/release", json={"key": "seat:9C", "reason": "x"}
        )
        assert nobody.status_code == 401
        done = await web.post(
            "/locks/release",
            json={"key": "seat:9C", "reason": "holder is stuck"},
            headers=bearer,
        )
        assert done.json() == {
            "key": "seat:9C", "saga_id": "holder", "by": "ana", "released": True
        }  # fmt: skip
        again = await web.post(
            "/locks/release", json={"key": "seat:9C", "reason": "x"}, headers=bearer
        )
        assert again.status_code == 409
        assert "no saga holds lock 'seat:9C'" in again.json()["detail"]
        read_only = create_app(store)
        transport = httpx.ASGITransport(app=read_only)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as web:
        refused = await web.post(
            "/locks/release", json={"key": "seat:9C", "reason": "x"}, headers=bearer
        )
        assert refused.status_code == 403
    assert await store.lock_holders(["seat:9C"]) == {}  # the waiter takes it next
    assert [w.saga_id for w in (await store.list_locks()).waiters] == ["waiter"]
    lines = [h for h in await store.history("holder") if h.outcome == "lock_released"]
    assert [line.result for line in lines] == [
        {"key": "seat:9C", "step": "reserve", "by": "ana", "reason": "holder is stuck"}
    ]
