"""pg-saga's API (``from saga import ...``) on sagakit's workflow engine.

Each test drives sagas only through pg-saga's public API (``Saga``,
``@saga.step``, ``start``, ``call``, ``get_state``, ``start_event_loop``
with a ``log_handler``, ``SagaError``, ``SagaReturn``), on SQLite and on
PostgreSQL, and reads sagakit's workflow record where pg-saga has nothing
to read (the status, the error, the history). pg-saga's own doctests run
in ``test_pg_saga_doctests.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from sagakit.compat.pg_saga import (
    LogEntry,
    LogLevel,
    Saga,
    SagaError,
    SagaReturn,
    activerecord,
)
from sagakit.compat.pg_saga.codec import decode, encode
from sagakit.errors import ConcurrencyError, SagaAlreadyExists, SagaNotFound, StateError
from sagakit.ports.workflow_store import WorkflowRecord, WorkflowStatus

WAIT = 30.0
"""Seconds a condition gets to come true (generous: the machine is shared)."""


@dataclasses.dataclass
class TransferInput:
    amount: float


class Currency(enum.Enum):
    EUR = "EUR"


@dataclasses.dataclass
class Payment:
    amount: decimal.Decimal
    currency: Currency
    at: datetime.datetime
    lines: tuple[str, ...]


class Receipt(BaseModel):
    number: int
    payment: Payment


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sagas.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def make(dsn: str) -> AsyncIterator[Callable[..., Saga]]:
    """``make(name, **options)``: a Saga on this test's database, closed after."""
    made: list[Saga] = []

    def saga(name: str = "transfer_fund", **options: Any) -> Saga:
        made.append(Saga(name, dsn=dsn, **options))
        return made[-1]

    yield saga
    for loop in Running.started:
        if not loop.task.done():
            loop.task.cancel()
            await asyncio.gather(loop.task, return_exceptions=True)
    Running.started.clear()
    for each in made:
        await each.close()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Running:
    """``start_event_loop`` in a task, with the log entries it handed out."""

    started: ClassVar[list[Running]] = []

    def __init__(self, saga: Saga) -> None:
        Running.started.append(self)
        self.saga = saga
        self.entries: list[LogEntry] = []
        self.handler_ended = False

        async def handler(log: Any) -> None:
            async for entry in log:
                self.entries.append(entry)
            self.handler_ended = True

        self.task = asyncio.create_task(
            saga.start_event_loop(10, 10, 0.05, 4, 1, 5, log_handler=handler)
        )

    async def stop(self) -> None:
        self.task.cancel()
        assert await self.task is None  # as pg-saga: a cancelled loop returns


async def record(saga: Saga, instance: str) -> WorkflowRecord:
    await saga.init_db()
    return await saga._app.store.get(saga.name, instance)


async def ended(saga: Saga, instance: str) -> bool:
    return (await record(saga, instance)).status.terminal


async def test_the_readme_transfer_runs_step_to_step(make: Callable[..., Saga]) -> None:
    accounts = {"first": 100.0, "second": 0.0}
    saga = make()

    @saga.step
    async def debit(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        accounts["first"] -= input.amount  # the dataclass came back as itself
        return credit(input)

    @saga.step
    async def credit(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        accounts["second"] += input.amount
        return {"moved": input.amount}

    await saga.init_db()
    await saga.start("my example", debit, TransferInput(amount=10), None)
    loop = Running(saga)
    await until(lambda: ended(saga, "my example"), "the transfer")
    await loop.stop()
    assert accounts == {"first": 90.0, "second": 10.0}
    assert await saga.get_state("my example") == {"moved": 10}  # what it returned
    done = await record(saga, "my example")
    assert done.status is WorkflowStatus.SUCCEEDED
    assert done.fingerprint is None  # any process registering the steps runs it


async def test_a_webhook_call_replaces_the_pending_call(
    make: Callable[..., Saga],
) -> None:
    saga = make("deposit")
    seen: list[Any] = []

    @saga.step
    def deposit(input, state, set_state):  # type: ignore[no-untyped-def]
        return webhook("TIME_OUT", delay=300)  # waits 5 minutes unless called

    @saga.step
    def webhook(input, state, set_state):  # type: ignore[no-untyped-def]
        seen.append(input)
        if input == "DECLINED":
            raise SagaError("card declined")
        return SagaReturn("done", input, state={"paid": True})

    @saga.step
    def done(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        return None  # ends; the state stays as it was

    loop = Running(saga)
    for instance in ("paid", "declined"):
        await saga.start(instance, deposit, None, {"order": instance})

    async def waiting_on_webhook() -> bool:
        records = [await record(saga, i) for i in ("paid", "declined")]
        return all(r.step == "webhook" for r in records)

    await until(waiting_on_webhook, "both deposits to wait")
    await saga.call("paid", "webhook", "CONFIRMED")
    await saga.call("declined", webhook, "DECLINED")
    await until(lambda: ended(saga, "paid"), "the paid one")
    await until(lambda: ended(saga, "declined"), "the declined one")
    await loop.stop()
    assert sorted(seen) == ["CONFIRMED", "DECLINED"]
    assert await saga.get_state("paid") == {"paid": True}
    failed = await record(saga, "declined")
    assert failed.status is WorkflowStatus.FAILED
    assert failed.error == "step webhook failed: SagaError: card declined"
    assert await saga.get_state("declined") == {"order": "declined"}


async def test_call_changes_pending_sagas_only(make: Callable[..., Saga]) -> None:
    saga = make("calls")
    release = asyncio.Event()

    @saga.step
    async def hold(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        await release.wait()

    @saga.step
    async def other(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        return {"got": input}

    await saga.start("later", hold, None, None, delay=3600)
    await saga.call("later", other, 7)  # any step, as pg-saga allows
    await saga.start("busy", hold, None, None)
    with pytest.raises(SagaAlreadyExists, match="exists already"):
        await saga.start("busy", hold, None, None)
    loop = Running(saga)

    async def busy() -> bool:
        return (await record(saga, "busy")).status is WorkflowStatus.RUNNING

    await until(busy, "the busy one to run")
    with pytest.raises(ConcurrencyError, match="running step hold"):
        await saga.call("busy", other, 1)
    release.set()
    await until(lambda: ended(saga, "busy"), "the busy one to end")
    await until(lambda: ended(saga, "later"), "the called one to end")
    await loop.stop()
    assert await saga.get_state("later") == {"got": 7}
    with pytest.raises(StateError, match="has finished"):
        await saga.call("busy", other, 1)
    with pytest.raises(SagaNotFound):
        await saga.call("nobody", other, 1)
    with pytest.raises(SagaNotFound):
        await saga.get_state("nobody")


async def test_a_failing_step_is_retried_with_a_growing_delay(
    make: Callable[..., Saga],
) -> None:
    # pg-saga puts a failed step back as due at once: it spins on the error
    saga = make("flaky", retry_delay=0.05, max_retry_delay=0.1)
    calls: list[int] = []

    @saga.step
    async def call_api(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        calls.append(len(calls))
        if len(calls) < 4:
            raise ConnectionError(f"down (call {len(calls)})")
        return "up"

    await saga.start("api", call_api, None, None)
    loop = Running(saga)
    await until(lambda: ended(saga, "api"), "the step to succeed")
    await loop.stop()
    assert await saga.get_state("api") == "up"
    lines = await saga._app.store.history("flaky", "api")
    retries = [line.detail["delay"] for line in lines if line.outcome == "retrying"]
    assert retries == [0.05, 0.1, 0.1]  # doubling, capped
    errors = [e for e in loop.entries if e.log_level is LogLevel.ERROR]
    assert [str(e.error) for e in errors[:3]] == [
        "down (call 1)",
        "down (call 2)",
        "down (call 3)",
    ]


async def test_a_retry_long_after_the_first_keeps_the_longest_delay(
    make: Callable[..., Saga],
) -> None:
    saga = make("stubborn", retry_delay=1.0, max_retry_delay=300.0)

    @saga.step
    async def never(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        raise OSError("still down")

    await saga.start("x", never, None, None)
    store = saga._app.store
    fresh = await record(saga, "x")
    # as after days of failures: 2 ** 5000 seconds would overflow a float
    await store.save(
        dataclasses.replace(fresh, attempts=5000, version=fresh.version + 1),
        fresh.version,
        [],
    )
    loop = Running(saga)

    async def retried() -> bool:
        return (await record(saga, "x")).error == "OSError: still down"

    await until(retried, "the retry")
    await loop.stop()
    lines = await store.history("stubborn", "x")
    assert [line.detail["delay"] for line in lines if line.outcome == "retrying"] == [
        300.0
    ]


async def test_an_unknown_step_waits_for_a_process_that_has_it(
    make: Callable[..., Saga],
) -> None:
    # pg-saga takes it and leaves it in progress for ever
    here = make("split")

    @here.step
    async def known(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        return None

    await here.start("ghostly", "ghost", {"n": 1}, None)
    loop = Running(here)

    async def marked() -> bool:
        return (await record(here, "ghostly")).waiting

    await until(marked, "the instance to be marked waiting")
    await loop.stop()
    waiting = await record(here, "ghostly")
    assert waiting.status is WorkflowStatus.PENDING
    assert waiting.error is not None
    assert "step 'ghost' is not registered" in waiting.error

    there = make("split")  # another process's saga of the same name

    @there.step
    async def ghost(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        return {"ran": input["n"]}

    other = Running(there)
    await until(lambda: ended(there, "ghostly"), "the other process to run it")
    await other.stop()
    assert await there.get_state("ghostly") == {"ran": 1}


async def test_a_step_returning_an_unregistered_step_fails_with_the_reason(
    make: Callable[..., Saga],
) -> None:
    saga = make("typo")

    @saga.step
    async def first(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        return SagaReturn("secnod", input)

    await saga.start("t", first, None, None)
    loop = Running(saga)
    await until(lambda: ended(saga, "t"), "the instance to fail")
    await loop.stop()
    failed = await record(saga, "t")
    assert failed.status is WorkflowStatus.FAILED
    assert failed.error is not None
    assert "'secnod' is not registered" in failed.error


async def test_state_is_json_and_comes_back_typed(make: Callable[..., Saga]) -> None:
    saga = make("typed")
    got: list[Any] = []
    payment = Payment(
        decimal.Decimal("10.50"),
        Currency.EUR,
        datetime.datetime(2024, 5, 1, 12, 30),
        ("a", "b"),
    )

    @saga.step
    async def pay(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        got.append((input, state))
        await set_state({"receipt": Receipt(number=1, payment=input)})
        return confirm(input, state={"receipt": Receipt(number=2, payment=input)})

    @saga.step
    async def confirm(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        got.append((input, state))
        set_state({"not": "awaited"})  # pg-saga's set_state is awaited; either works
        raise SagaError("stop here")

    await saga.start("p", pay, payment, {"ids": {1, 2}})
    loop = Running(saga)
    await until(lambda: ended(saga, "p"), "the payment")
    await loop.stop()
    assert got[0] == (payment, {"ids": {1, 2}})
    assert got[1] == (payment, {"receipt": Receipt(number=2, payment=payment)})
    assert await saga.get_state("p") == {"receipt": Receipt(number=2, payment=payment)}
    stored = await record(saga, "p")
    assert stored.state["value"]["receipt"]["value"]["number"] == 2  # plain JSON


def test_the_codec_round_trips_and_never_unpickles() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    values = [
        None,
        [1, "a", 2.5, True],
        {"k": (1, 2), "s": frozenset({3})},
        TransferInput(amount=1.5),
        Currency.EUR,
        uuid.UUID(int=7),
        datetime.date(2024, 1, 2),
    ]
    for value in values:
        assert decode(encode(value)) == value
    assert decode(encode(Local(3))) == {"x": 3}  # a local class: plain JSON
    forged = {"__pg_saga__": "typed", "type": "os:system", "value": "echo hi"}
    assert decode(forged) == "echo hi"  # not a dataclass, model or value type


async def test_the_log_handler_gets_pg_saga_entries(make: Callable[..., Saga]) -> None:
    saga = make("logs")

    @saga.step
    async def work(input, state, set_state, logger):  # type: ignore[no-untyped-def]
        logger.log_info("working", size=3)
        logger.log_warn("careful")

    await saga.start("w", work, None, None)
    loop = Running(saga)
    await until(lambda: ended(saga, "w"), "the work")
    await loop.stop()
    assert loop.handler_ended  # the stream ends with the loop
    mine = [e for e in loop.entries if e.saga_instance == "w"]
    assert [(e.log_level, e.message) for e in mine] == [
        (LogLevel.INFO, "Starting saga"),
        (LogLevel.INFO, "Started"),
        (LogLevel.INFO, "Executing"),
        (LogLevel.INFO, "working"),
        (LogLevel.WARN, "careful"),
        (LogLevel.INFO, "Updating Saga"),
    ]
    working = mine[3]
    assert (working.saga_name, working.saga_step, working.meta) == (
        "logs",
        "work",
        {"size": 3},
    )
    assert working.saga_runner == saga.runner
    assert loop.entries[-1].message == "Event loop ended"


def test_activerecord_records_what_changed() -> None:
    @activerecord
    @dataclasses.dataclass
    class Account:
        owner: str
        balance: int

    account = Account("ann", 1)
    assert account.changes() == []
    account.balance = 5
    account.balance = 6
    assert (account.balance, account.changes()) == (6, ["balance"])
    account.clear()
    assert account.changes() == []
