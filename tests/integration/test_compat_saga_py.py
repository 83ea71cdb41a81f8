"""sagakit.compat.saga_py against the real saga-py 1.1.0, scenario by scenario.

Each scenario builds the same actions for both libraries and compares what
ran, in which order, with which arguments, and what was raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import Mock, call

import pytest

from sagakit.compat import saga_py as ours
from sagakit.errors import SagaError as SagakitError

saga = pytest.importorskip("saga", reason="saga-py is the reference (bench extra)")

N = 4


def scenario(
    builder: Any,
    log: list[Any],
    *,
    fail_at: int | None = None,
    failing_compensations: frozenset[int] = frozenset(),
) -> Any:
    """N actions; action i gets the dict action i-1 returned."""

    def action(i: int) -> Callable[..., Any]:
        def run(**kwargs: Any) -> dict[str, Any] | None:
            log.append(("action", i, kwargs))
            if i == fail_at:
                raise ValueError(f"action {i} failed")
            return {"value": i} if i % 2 == 0 else None

        return run

    def compensation(i: int) -> Callable[..., Any]:
        def undo(**kwargs: Any) -> None:
            log.append(("compensation", i, kwargs))
            if i in failing_compensations:
                raise RuntimeError(f"compensation {i} failed")

        return undo

    for i in range(N):
        builder = builder.action(action(i), compensation(i))
    return builder.build()


def outcome(build: Callable[[list[Any]], Any]) -> tuple[list[Any], Any]:
    """What ran, and (type, action error, compensation errors) if it raised."""
    log: list[Any] = []
    built = build(log)
    try:
        built.execute()
    except (saga.SagaError, ours.SagaError) as exc:
        return log, (
            repr(exc.action),
            [repr(c) for c in exc.compensations],
        )
    return log, None


def both(**kwargs: Any) -> tuple[tuple[list[Any], Any], tuple[list[Any], Any]]:
    original = outcome(lambda log: scenario(saga.SagaBuilder.create(), log, **kwargs))
    compat = outcome(lambda log: scenario(ours.SagaBuilder.create(), log, **kwargs))
    return original, compat


def test_success_runs_the_same_actions_with_the_same_arguments() -> None:
    original, compat = both()
    assert compat == original
    assert original[1] is None
    assert [entry[2] for entry in original[0]] == [{}, {"value": 0}, {}, {"value": 2}]


@pytest.mark.parametrize("fail_at", range(N))
def test_a_failing_action_compensates_like_saga_py(fail_at: int) -> None:
    original, compat = both(fail_at=fail_at)
    assert compat == original
    compensated = [e[1] for e in original[0] if e[0] == "compensation"]
    assert compensated == list(range(fail_at, -1, -1))  # the failed one too


@pytest.mark.parametrize(
    ("fail_at", "failing"),
    [
        (3, frozenset({1})),
        (3, frozenset({3, 0})),
        (2, frozenset({0, 1, 2})),
        (0, frozenset({0})),
    ],
)
def test_failing_compensations_are_collected_and_the_rest_still_run(
    fail_at: int, failing: frozenset[int]
) -> None:
    original, compat = both(fail_at=fail_at, failing_compensations=failing)
    assert compat == original
    assert len(original[1][1]) == len(failing)


def test_saga_error_is_an_exception_unlike_saga_py() -> None:
    assert not issubclass(saga.SagaError, Exception)
    assert issubclass(ours.SagaError, Exception)
    assert issubclass(ours.SagaError, SagakitError)

    def fail() -> None:
        raise KeyError("nope")

    built = ours.SagaBuilder.create().action(fail, lambda: None).build()
    with pytest.raises(Exception, match="action_0 failed") as caught:
        built.execute()
    assert isinstance(caught.value, ours.SagaError)
    assert isinstance(caught.value.action, KeyError)
    assert caught.value.saga_id


def test_a_base_exception_in_an_action_is_caught_as_saga_py_does() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    undone: list[str] = []
    for lib in (saga, ours):
        built = (
            lib.SagaBuilder.create()
            .action(interrupted, lambda: undone.append("x"))
            .build()
        )
        with pytest.raises(lib.SagaError) as caught:
            built.execute()
        assert isinstance(caught.value.action, KeyboardInterrupt)
    assert undone == ["x", "x"]


def test_a_non_dict_return_is_compensated_here_and_not_in_saga_py() -> None:
    log: list[str] = []

    def build(lib: Any) -> Any:
        return (
            lib.SagaBuilder.create()
            .action(lambda: log.append("a0"), lambda: log.append("c0"))
            .action(lambda: "not a dict", lambda: log.append("c1"))
            .build()
        )

    with pytest.raises(TypeError):
        build(saga).execute()
    assert log == ["a0"]  # saga-py leaves action 0 (and 1) in place
    log.clear()
    with pytest.raises(ours.SagaError) as caught:
        build(ours).execute()
    assert isinstance(caught.value.action, TypeError)
    assert log == ["a0", "c1", "c0"]


def test_an_empty_saga_does_nothing_in_both() -> None:
    saga.SagaBuilder.create().build().execute()
    ours.SagaBuilder.create().build().execute()


async def test_execute_async_and_execute_inside_a_running_loop() -> None:
    log: list[Any] = []
    built = scenario(ours.SagaBuilder.create(), log)
    await built.execute_async()
    built.execute()  # a helper thread runs it
    assert len(log) == 2 * N


@pytest.mark.parametrize("lib", [saga, ours], ids=["saga-py", "compat"])
def test_saga_calls_act_and_compensate_on_action_doubles(lib: Any) -> None:
    """``Saga`` takes saga-py's ``Action`` interface, test doubles included."""
    first = Mock(spec=lib.Action)
    first.act.return_value = {"order_id": 7}
    second = Mock(spec=lib.Action)
    second.act.return_value = None
    third = Mock(spec=lib.Action)
    third.act.side_effect = ValueError("declined")
    last = Mock(spec=lib.Action)

    with pytest.raises(lib.SagaError) as caught:
        lib.Saga([first, second, third, last]).execute()

    assert first.act.call_args_list == [call()]
    assert second.act.call_args_list == [call(order_id=7)]
    assert third.act.call_args_list == [call()]  # None passes no arguments on
    assert last.act.call_count == 0
    for undone in (third, second, first):
        assert undone.compensate.call_args_list == [call()]
    assert last.compensate.call_count == 0
    assert isinstance(caught.value.action, ValueError)
    assert caught.value.compensations == []


def test_objects_shaped_like_an_action_are_run_in_order() -> None:
    log: list[str] = []

    class Booking:
        def __init__(self, name: str) -> None:
            self.name = name

        def act(self, **kwargs: Any) -> dict[str, Any]:
            log.append(f"{self.name}({sorted(kwargs)})")
            return {self.name: True}

        def compensate(self) -> None:
            log.append(f"undo {self.name}")

    ours.Saga([Booking("flight"), Booking("hotel")]).execute()
    assert log == ["flight([])", "hotel(['flight'])"]


def test_action_passes_its_arguments_to_its_compensation() -> None:
    got: list[dict[str, Any]] = []
    action = ours.Action(lambda **kw: {"n": kw["n"] + 1}, lambda **kw: got.append(kw))
    assert action.act(n=1) == {"n": 2}
    action.compensate()
    assert got == [{"n": 1}]
    bare = ours.Action(lambda: None, lambda: got.append({}))
    assert bare.act() is None
    bare.compensate()  # called with no arguments, as its action was
    assert got == [{"n": 1}, {}]


def test_a_non_dict_return_is_still_caught_as_a_type_error() -> None:
    undone: list[str] = []
    built = ours.SagaBuilder.create().action(lambda: 42, lambda: undone.append("c0"))
    with pytest.raises(TypeError) as caught:
        built.build().execute()
    assert isinstance(caught.value, ours.ActionReturnError)
    assert isinstance(caught.value, ours.SagaError)
    assert isinstance(caught.value.action, TypeError)
    assert "dict or None" in str(caught.value.action)
    assert undone == ["c0"]
