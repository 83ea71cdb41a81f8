"""sagakit.compat.py_saga: py-saga's public behaviour, on sagakit's engine.

py-saga (``pysaga``) is not on PyPI, so these tests state its behaviour
themselves: every step starts at once with the arguments of ``run``, a step
succeeds when it returns a truthy value, and when one fails the succeeded
ones are compensated, at once; plus the fix for a step that raises.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sagakit.compat.py_saga import FuncStep, Saga, State, StatefulEntity, Step

BARRIER_WAIT = 30  # only a guard: a barrier nobody else reaches breaks, not hangs


class Trip:
    """The trip-to-Rio package of py-saga's README, with a log of effects."""

    def __init__(self, *, hotel_rooms: bool = True) -> None:
        self.log: list[str] = []
        self.hotel_rooms = hotel_rooms

    def book_plane(self, traveller: str) -> str:
        self.log.append(f"plane for {traveller}")
        return "PLANE-1"

    def cancel_plane(self, traveller: str) -> None:
        self.log.append(f"cancel plane for {traveller}")

    async def book_hotel(self, traveller: str) -> bool:
        self.log.append(f"hotel for {traveller}")
        return self.hotel_rooms

    async def cancel_hotel(self, traveller: str) -> None:
        self.log.append(f"cancel hotel for {traveller}")

    def buy_tickets(self, traveller: str) -> dict[str, int]:
        self.log.append(f"tickets for {traveller}")
        return {"tickets": 2}

    def cancel_tickets(self, traveller: str) -> None:
        self.log.append(f"cancel tickets for {traveller}")

    def saga(self) -> Saga:
        saga = Saga()
        saga.add_step(self.book_plane, self.cancel_plane)
        saga.add_step(self.book_hotel, self.cancel_hotel)
        saga.add_step(FuncStep(self.buy_tickets, self.cancel_tickets))
        return saga


def steps_of(saga: Saga) -> list[Step]:
    return list(saga._steps)


async def test_every_step_succeeds() -> None:
    trip = Trip()
    saga = trip.saga()
    assert saga.state is State.CREATED
    assert not saga.complete

    await saga.run("maria")

    assert saga.state is State.SUCCESS
    assert (saga.complete, saga.success, saga.failure) == (True, True, False)
    assert sorted(trip.log) == [
        "hotel for maria",
        "plane for maria",
        "tickets for maria",
    ]
    assert [s.state for s in steps_of(saga)] == [State.SUCCESS] * 3


async def test_a_falsy_step_fails_the_saga_and_the_others_are_compensated() -> None:
    trip = Trip(hotel_rooms=False)
    saga = trip.saga()

    await saga.run("kevin")  # no exception: a falsy result is a plain failure

    assert saga.state is State.FAILURE
    assert (saga.complete, saga.success, saga.failure) == (True, False, True)
    assert [s.state for s in steps_of(saga)] == [
        State.COMPENSATED,
        State.FAILURE,  # the failed step itself is not compensated
        State.COMPENSATED,
    ]
    assert "cancel hotel for kevin" not in trip.log
    assert sorted(trip.log[3:]) == [
        "cancel plane for kevin",
        "cancel tickets for kevin",
    ]


@pytest.mark.parametrize("value", [True, 1, "yes", [0], {"id": 1}, object()])
async def test_a_truthy_result_is_a_success(value: object) -> None:
    undone: list[str] = []
    saga = Saga()
    saga.add_step(lambda: value, lambda: undone.append("undo"))
    await saga.run()
    assert saga.state is State.SUCCESS
    assert undone == []


@pytest.mark.parametrize("value", [False, 0, "", None, [], {}])
async def test_a_falsy_result_is_a_failure(value: object) -> None:
    undone: list[str] = []

    async def falsy() -> object:
        return value

    saga = Saga()
    saga.add_step(lambda: True, lambda: undone.append("first"))
    saga.add_step(falsy, lambda: undone.append("falsy"))
    await saga.run()
    assert saga.state is State.FAILURE
    assert undone == ["first"]


@pytest.mark.parametrize("kind", ["async", "plain"])
async def test_steps_and_compensations_run_concurrently(kind: str) -> None:
    """Each step waits until all have started: it only ends if they run at once.
    The same for the compensations of the succeeded steps."""
    started = threading.Barrier(3, timeout=BARRIER_WAIT)
    compensating = threading.Barrier(2, timeout=BARRIER_WAIT)
    arrived: list[str] = []

    def step(name: str, result: bool) -> Callable[[], Any]:
        def plain() -> bool:
            started.wait()
            arrived.append(name)
            return result

        async def coroutine() -> bool:
            await asyncio.to_thread(started.wait)
            arrived.append(name)
            return result

        return coroutine if kind == "async" else plain

    def undo(name: str) -> Callable[[], Any]:
        def plain() -> None:
            compensating.wait()
            arrived.append(f"undo {name}")

        async def coroutine() -> None:
            await asyncio.to_thread(compensating.wait)
            arrived.append(f"undo {name}")

        return coroutine if kind == "async" else plain

    saga = Saga()
    saga.add_step(step("a", True), undo("a"))
    saga.add_step(step("b", False), undo("b"))
    saga.add_step(step("c", True), undo("c"))
    await saga.run()

    assert sorted(arrived[:3]) == ["a", "b", "c"]
    assert sorted(arrived[3:]) == ["undo a", "undo c"]
    assert saga.state is State.FAILURE


async def test_every_step_and_compensation_gets_the_run_arguments() -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def record(name: str, result: object) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> object:
            calls.append((name, args, kwargs))
            return result

        return call

    async def refuse(*args: Any, **kwargs: Any) -> bool:
        calls.append(("refuse", args, kwargs))
        return False

    saga = Saga()
    saga.add_step(record("plain", True), record("undo plain", None))
    saga.add_step(refuse, record("undo refuse", None))
    await saga.run("maria", 2, nights=5)

    expected = (("maria", 2), {"nights": 5})
    assert sorted(calls) == sorted(
        (name, *expected) for name in ("plain", "refuse", "undo plain")
    )


async def test_a_raising_step_fails_and_the_succeeded_ones_are_compensated() -> None:
    """The fix: py-saga lets the exception out at once, compensates nothing
    and leaves the saga CREATED."""
    trip = Trip()

    def no_rooms(traveller: str) -> bool:
        raise LookupError(f"no rooms for {traveller}")

    saga = Saga()
    saga.add_step(trip.book_plane, trip.cancel_plane)
    saga.add_step(no_rooms, trip.cancel_hotel)
    saga.add_step(trip.buy_tickets, trip.cancel_tickets)

    with pytest.raises(LookupError, match="no rooms for kevin") as caught:
        await saga.run("kevin")

    assert caught.value.__context__ is None
    assert saga.state is State.FAILURE
    assert [s.state for s in steps_of(saga)] == [
        State.COMPENSATED,
        State.FAILURE,
        State.COMPENSATED,
    ]
    assert sorted(trip.log[2:]) == [
        "cancel plane for kevin",
        "cancel tickets for kevin",
    ]


async def test_when_several_steps_raise_the_first_added_is_raised() -> None:
    def fail(message: str) -> Callable[[], bool]:
        def step() -> bool:
            raise ValueError(message)

        return step

    undone: list[str] = []
    saga = Saga()
    saga.add_step(lambda: True, lambda: undone.append("ok"))
    saga.add_step(fail("first"), lambda: None)
    saga.add_step(fail("second"), lambda: None)

    with pytest.raises(ValueError, match="first") as caught:
        await saga.run()

    assert caught.value.__notes__ == ["py_saga: step 2 raised ValueError('second') too"]
    assert undone == ["ok"]
    assert saga.state is State.FAILURE


async def test_a_raising_compensation_does_not_stop_the_others() -> None:
    undone: list[str] = []

    def broken_undo() -> None:
        raise ConnectionError("refund service down")

    saga = Saga()
    saga.add_step(lambda: True, broken_undo)
    saga.add_step(lambda: True, lambda: undone.append("second"))
    saga.add_step(lambda: False, lambda: undone.append("failed"))

    with pytest.raises(ConnectionError, match="refund service down"):
        await saga.run()

    assert undone == ["second"]
    assert saga.state is State.FAILURE
    assert [s.state for s in steps_of(saga)] == [
        State.SUCCESS,  # its compensation failed: still applied
        State.COMPENSATED,
        State.FAILURE,
    ]


async def test_the_saga_is_running_while_its_steps_run() -> None:
    seen: list[tuple[State, bool]] = []
    saga = Saga()

    def look() -> bool:
        seen.append((saga.state, saga.complete))
        return True

    saga.add_step(look, lambda: None)
    await saga.run()
    assert seen == [(State.RUNNING, False)]
    assert saga.state is State.SUCCESS


async def test_an_empty_saga_succeeds() -> None:
    saga = Saga([])
    await saga.run()
    assert saga.state is State.SUCCESS


@pytest.mark.parametrize(
    ("state", "complete", "success", "failure"),
    [
        (State.CREATED, False, False, False),
        (State.RUNNING, False, False, False),
        (State.SUCCESS, True, True, False),
        (State.COMPENSATED, True, True, False),
        (State.FAILURE, True, False, True),
    ],
)
def test_state_properties(
    state: State, complete: bool, success: bool, failure: bool
) -> None:
    entity = StatefulEntity()
    entity._state = state
    assert (entity.state, entity.complete, entity.success, entity.failure) == (
        state,
        complete,
        success,
        failure,
    )


def test_state_values_are_py_sagas() -> None:
    assert {s.name: s.value for s in State} == {
        "SUCCESS": 0,
        "COMPENSATED": 1,
        "FAILURE": 2,
        "CREATED": 3,
        "RUNNING": 4,
    }


class Reservation(Step):
    """A custom step, as py-saga users subclass ``Step``."""

    def __init__(self, seats: int, log: list[str]) -> None:
        super().__init__()
        self.seats = seats
        self.log = log

    async def run(self, *args: Any, **kwargs: Any) -> bool:
        self.log.append(f"reserve {self.seats}")
        return self.seats <= kwargs["available"]

    async def compensate(self, *args: Any, **kwargs: Any) -> None:
        self.log.append(f"release {self.seats}")

    @staticmethod
    def from_args(*args: Any, **kwargs: Any) -> Reservation | None:
        if "seats" in kwargs and "log" in kwargs:
            return Reservation(kwargs["seats"], kwargs["log"])
        return None


@pytest.fixture
def registered() -> Iterator[None]:
    Step.register_step_class(Reservation)
    yield
    Step._step_classes.discard(Reservation)


async def test_step_subclasses_in_the_constructor_and_registered() -> None:
    log: list[str] = []
    saga = Saga([Reservation(2, log), Reservation(9, log)])
    await saga.run(available=4)
    assert saga.failure
    assert sorted(log) == ["release 2", "reserve 2", "reserve 9"]


@pytest.mark.usefixtures("registered")
async def test_add_step_builds_registered_step_classes() -> None:
    log: list[str] = []
    saga = Saga()
    saga.add_step(seats=1, log=log)
    saga.add_step(lambda **_: True, lambda **_: None)
    await saga.run(available=4)
    assert saga.success
    assert log == ["reserve 1"]


def test_bad_steps_are_refused_with_value_error() -> None:
    with pytest.raises(ValueError, match="add_step"):
        Saga().add_step("not a function", "nor this")
    with pytest.raises(ValueError, match="add_step"):
        Saga().add_step(lambda: True)  # no compensation
    with pytest.raises(ValueError, match="steps"):
        Saga(steps=iter([]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compensation must be callable"):
        FuncStep(lambda: True, "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="func must be callable"):
        FuncStep("not callable", lambda: None)  # type: ignore[arg-type]
    assert FuncStep.from_args("a", "b") is None
    assert isinstance(FuncStep.from_args(print, print), FuncStep)


async def test_plain_functions_run_in_the_executor_given_to_run() -> None:
    threads: list[str] = []

    def where() -> bool:
        threads.append(threading.current_thread().name)
        return True

    saga = Saga()
    saga.add_step(where, where)
    with ThreadPoolExecutor(1, thread_name_prefix="trip-pool") as pool:
        await saga.run(executor=pool)
    assert len(threads) == 1
    assert threads[0].startswith("trip-pool")
