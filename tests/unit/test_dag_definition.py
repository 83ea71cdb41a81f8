"""Dependencies between steps, Parallel options and the rollback policy, as
definitions: validation, the graph, display stages and fingerprints."""

from __future__ import annotations

from typing import Any

import pytest

from sagakit import DefinitionError, Parallel, Saga, Step


def act(ctx: Any) -> None:
    return None


def undo(ctx: Any) -> None:
    return None


def test_after_makes_a_graph_with_precomputed_relations() -> None:
    saga = Saga(
        "ship",
        [
            Step("reserve", act, undo),
            Step("pack", act, undo, after=("reserve",)),
            Step("pay", act, undo, after=()),
            Step("ship", act, after=("pack", "pay")),
        ],
    )
    graph = saga.graph
    assert graph.deps == {
        "reserve": (),
        "pack": ("reserve",),
        "pay": (),
        "ship": ("pack", "pay"),
    }
    assert graph.dependents["reserve"] == ("pack",)
    assert graph.descendants["reserve"] == {"pack", "ship"}
    assert graph.descendants["pay"] == {"ship"}
    assert graph.roots == ("reserve", "pay")
    assert graph.explicit
    assert not graph.linear
    # display stages: each step at its longest distance from a root
    assert [[s.name for s in g] for g in saga.stages] == [
        ["reserve", "pay"],
        ["pack"],
        ["ship"],
    ]
    assert repr(saga) == "Saga('ship': [reserve | pay] -> pack -> ship)"


def test_a_list_of_stages_keeps_its_stages_and_depends_on_the_previous_one() -> None:
    saga = Saga(
        "order",
        [Step("a", act), Parallel(Step("b", act), Step("c", act)), Step("d", act)],
    )
    assert not saga.graph.explicit
    assert not saga.graph.linear
    assert Saga("s", [Step("a", act), Step("b", act)]).graph.linear
    assert not Saga("s", [Step("a", act), Step("b", act, after=())]).graph.linear
    assert saga.graph.deps == {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
    assert [[s.name for s in g] for g in saga.stages] == [["a"], ["b", "c"], ["d"]]


def test_after_may_be_given_as_a_list_and_is_kept_as_a_tuple() -> None:
    step = Step("b", act, after=["a"])  # type: ignore[arg-type]
    assert step.after == ("a",)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [Step("a", act), Step("b", act, after=("a", "x", "y"))],
            r"unknown dependencies: 'b' after 'x', 'b' after 'y'",
        ),
        (
            [
                Step("a", act, after=("c",)),
                Step("b", act, after=("a",)),
                Step("c", act, after=("b",)),
            ],
            r"cycle: 'a' -> 'b' -> 'c' -> 'a'",
        ),
        (
            [Step("a", act, after=("b",)), Step("b", act)],
            r"cycle: 'a' -> 'b' -> 'a'",
        ),
        (
            [
                Step("a", act, undo),
                Step("b", act, undo, after=()),
                Step("p", act, pivot=True, after=("a",)),
            ],
            r"pivot 'p' must be a cut.*'b' run neither before nor after",
        ),
        (
            [
                Step("p", act, pivot=True),
                Step("b", act, undo, after=("p",)),
            ],
            r"step 'b' comes after the pivot 'p' and cannot have a compensation",
        ),
        (
            [
                Step("a", act),
                Step("p", act, pivot=True, after=("a",)),
                Step("b", act, after=("p",)),
                Step("c", act, undo, compensate_on_failure=True, after=("b",)),
            ],
            r"step 'c' comes after the pivot 'p'",
        ),
    ],
)
def test_invalid_graphs_are_named(steps: list[Step], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        Saga("bad", steps)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Step("a", act, after=("a",)), r"step 'a' cannot run after itself"),
        (
            lambda: Step("a", act, after=("b", "c", "b")),
            r"step 'a': after names 'b' more than once",
        ),
        (lambda: Step("a", act, after="b"), r"after must be a tuple of step names"),
        (lambda: Step("a", act, after=(1,)), r"after must name steps, got 1"),
        (
            lambda: Parallel(Step("a", act), on_failure="first"),
            r"Parallel\('a'\): on_failure must be 'wait_all' or 'fail_fast'",
        ),
        (
            lambda: Parallel(Step("a", act), on_failure="fail_fast", grace=-1),
            r"grace must be a number of seconds >= 0, got -1",
        ),
        (
            lambda: Parallel(Step("a", act), on_failure="fail_fast", grace=True),
            r"grace must be a number of seconds",
        ),
        (
            lambda: Parallel(Step("a", act), grace=2.0),
            r"grace applies to on_failure='fail_fast' only",
        ),
        (
            lambda: Saga("s", [Step("a", act)], on_compensation_failure="skip"),
            r"saga 's': on_compensation_failure must be 'stop' or 'continue'",
        ),
    ],
)
def test_invalid_options_are_rejected_at_definition_time(
    make: Any, message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()


def test_fingerprints_change_only_with_non_default_shapes() -> None:
    def stages(**options: Any) -> Saga[Any]:
        group = Parallel(Step("b", act, undo), Step("c", act, undo), **options)
        return Saga("s", [Step("a", act, undo), group, Step("d", act)])

    plain = stages()
    same = Saga(
        "s",
        [
            Step("a", act, undo),
            Parallel(Step("c", act, undo), Step("b", act, undo)),
            Step("d", act),
        ],
    )
    assert plain.fingerprint == same.fingerprint
    fail_fast = stages(on_failure="fail_fast")
    assert fail_fast.fingerprint != plain.fingerprint
    # the grace is tuning, like a timeout
    assert stages(on_failure="fail_fast", grace=3).fingerprint == fail_fast.fingerprint
    steps = [Step("a", act, undo), Step("b", act, undo), Step("d", act)]
    cont = Saga("s", steps, on_compensation_failure="continue")
    assert cont.fingerprint != Saga("s", steps).fingerprint
    # the same dependencies spelled with after differ from a plain stage list
    dag = Saga(
        "s",
        [
            Step("a", act, undo),
            Step("b", act, undo, after=("a",)),
            Step("c", act, undo, after=("a",)),
            Step("d", act, after=("b", "c")),
        ],
    )
    assert dag.fingerprint != plain.fingerprint
    other = Saga(
        "s",
        [
            Step("a", act, undo),
            Step("b", act, undo, after=("a",)),
            Step("c", act, undo, after=("a",)),
            Step("d", act, after=("b",)),
        ],
    )
    assert other.fingerprint != dag.fingerprint


def test_rebuilt_keeps_the_shape_and_the_options() -> None:
    saga = Saga(
        "s",
        [
            Step("a", act, undo),
            Parallel(
                Step("b", act, undo, after=("a",)),
                Step("c", act, undo),
                on_failure="fail_fast",
                grace=1.5,
            ),
        ],
        version=3,
        on_compensation_failure="continue",
    )
    copy = saga.rebuilt(lambda s: s)
    assert copy.fingerprint == saga.fingerprint
    assert copy.version == 3
    assert copy.on_compensation_failure == "continue"
    assert copy.graph.fail_fast["b"].grace == 1.5
