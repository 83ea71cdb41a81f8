"""Definition versions: fingerprints and the registry of versions."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import Saga, Step
from sagakit.definition.migration import Migration
from sagakit.definition.remote import Remote
from sagakit.definition.saga import Parallel
from sagakit.engine.migrate import migrated_state
from sagakit.engine.state import SagaState, SagaStatus, StepState, StepStatus
from sagakit.errors import DefinitionError, DefinitionUnavailable, StateError
from sagakit.ports.store import SagaRecord
from sagakit.runtime.registry import Registry
from sagakit.testing.contracts.store import make_record


def act(ctx: object) -> str:
    """One docstring."""
    return "one body"


def act_changed(ctx: object) -> str:
    """Another docstring, another body: the shape is the same."""
    return str(ctx) + "another body"


def undo(ctx: object) -> None:
    return None


class Reply(BaseModel):
    """A reply."""

    ticket: str


class Payload(BaseModel):
    amount: int


def payload(ctx: object) -> Payload:
    return Payload(amount=1)


def order(*steps: Step | Parallel, version: int = 1, **kw: Any) -> Saga[Any]:
    return Saga("order", list(steps), version=version, **kw)


SHAPE = "import tests.unit.test_versions as t; print(t.order(*t.steps()).fingerprint)"


def steps() -> list[Step | Parallel]:
    return [
        Step("a", act, compensate=undo),
        Parallel(Step("b", act), Step("c", Remote("kitchen.cook", reply=Reply))),
        Step("d", act, pivot=True),
    ]


def test_the_fingerprint_is_stable_across_processes() -> None:
    here = order(*steps()).fingerprint
    runs = {
        subprocess.run(
            [sys.executable, "-c", SHAPE],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert runs == {here}
    assert len(here) == 16


def test_bodies_docstrings_tuning_and_group_order_do_not_change_it() -> None:
    same = order(
        Step("a", act_changed, compensate=undo, timeout=3.0),
        Parallel(
            Step("c", Remote("kitchen.cook", reply=Reply)), Step("b", act_changed)
        ),
        Step("d", act_changed, pivot=True),
    )
    assert same.fingerprint == order(*steps()).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        [Step("x", act), Step("a", act, compensate=undo), Step("d", act, pivot=True)],
        [Step("a", act), Parallel(Step("b", act), Step("c", act)), Step("d", act)],
        [
            Step("a", act, compensate=undo),
            Step("b", act),
            Step("c", act),
            Step("d", act),
        ],
        [Step("a", act, compensate=undo), Step("b", act), Step("d", act, pivot=True)],
    ],
    ids=["inserted", "no-compensation", "ungrouped", "removed"],
)
def test_a_change_of_shape_changes_it(changed: list[Step | Parallel]) -> None:
    assert order(*changed).fingerprint != order(*steps()).fingerprint


def test_remote_commands_and_their_schemas_are_in_it() -> None:
    def shape(remote: Remote) -> str:
        return order(Step("c", remote)).fingerprint

    class OtherReply(BaseModel):
        """Same fields, another docstring and name."""

        ticket: str

    class WiderReply(BaseModel):
        ticket: str
        eta: int

    base = shape(Remote("kitchen.cook", reply=Reply))
    assert shape(Remote("kitchen.cook", reply=OtherReply)) == base
    assert shape(Remote("kitchen.cook", reply=WiderReply)) != base
    assert shape(Remote("kitchen.bake", reply=Reply)) != base
    assert shape(Remote("kitchen.cook", reply=Reply, payload=payload)) != base


def test_the_version_must_be_a_positive_integer() -> None:
    for bad in (0, -1, "2", True):
        with pytest.raises(DefinitionError, match="version"):
            Saga("order", [Step("a", act)], version=bad)  # type: ignore[arg-type]
    assert repr(order(Step("a", act), version=2)) == "Saga('order' v2: a)"


def test_versions_register_side_by_side_and_the_newest_starts() -> None:
    one, two = order(*steps()), order(Step("x", act), *steps(), version=2)
    registry = Registry([two, one])
    assert registry.definition("order") is two
    assert registry.versions["order"] == {1: one, 2: two}
    registry.register(one)  # the same object again is fine
    with pytest.raises(DefinitionError, match="already registered as version 1"):
        registry.register(order(Step("a", act)))


def record(version: int, fingerprint: str | None) -> SagaRecord:
    return replace(
        make_record("s1"),
        definition_version=version,
        fingerprint=fingerprint,
    )


def test_an_instance_is_driven_only_by_its_own_definition() -> None:
    one, two = order(*steps()), order(Step("x", act), *steps(), version=2)
    registry = Registry([two])
    with pytest.raises(DefinitionUnavailable) as missing:
        registry.definition_of(record(1, one.fingerprint))
    assert missing.value.reason == "needs order v1, not registered here (have v2)"
    registry.register(one)
    assert registry.definition_of(record(1, one.fingerprint)) is one
    assert registry.definition_of(record(1, None)) is one  # unknown: trusted
    with pytest.raises(DefinitionUnavailable, match="order v2 changed shape"):
        registry.definition_of(record(2, one.fingerprint))


def state_of(saga: Saga[Any], **statuses: StepStatus) -> SagaState:
    steps = {s.name: StepState(statuses.get(s.name, StepStatus.PENDING)) for s in saga}
    return SagaState(saga_id="s1", saga_name=saga.name, steps=steps, stage=1)


def renaming_b(*inserted: Step) -> tuple[Saga[Any], Saga[Any]]:
    """v1 ``a, b, c``; v2 ``*inserted, a, b2, c`` with a migration from v1."""
    old = order(Step("a", act), Step("b", act), Step("c", act))
    new = order(
        *inserted,
        Step("a", act),
        Step("b2", act),
        Step("c", act),
        version=2,
        migrate_from={1: Migration(steps={"b": "b2"})},
    )
    return old, new


def test_a_migration_maps_steps_and_resumes_at_the_first_unfinished_one() -> None:
    old, new = renaming_b(Step("x", act))
    before = replace(
        state_of(old, a=StepStatus.SUCCEEDED, b=StepStatus.RUNNING), completed=("a",)
    )
    after = migrated_state(before, new, new.migrate_from[1])
    assert after.stage == 2
    assert {n: s.status for n, s in after.steps.items()} == {
        "x": StepStatus.PENDING,
        "a": StepStatus.SUCCEEDED,
        "b2": StepStatus.RUNNING,
        "c": StepStatus.PENDING,
    }
    assert after.completed == ("a",)


def test_a_migration_renames_what_a_pause_holds() -> None:
    old, new = renaming_b()
    before = replace(
        state_of(old, a=StepStatus.SUCCEEDED, b=StepStatus.RUNNING),
        completed=("a",),
        paused=True,
        held=("b",),
        held_due={"b": 12.5},
    )
    after = migrated_state(before, new, new.migrate_from[1])
    assert (after.paused, after.held, after.held_due) == (True, ("b2",), {"b2": 12.5})


def test_a_migration_refuses_what_it_cannot_move_safely() -> None:
    old = order(Step("a", act), Step("b", act))
    dropped = order(Step("a", act), version=2)
    with pytest.raises(StateError, match="in flight"):
        migrated_state(
            state_of(old, a=StepStatus.SUCCEEDED, b=StepStatus.RUNNING),
            dropped,
            Migration(),
        )
    mixed = order(Step("a", act), Parallel(Step("b", act), Step("n", act)), version=2)
    with pytest.raises(StateError, match="mixes"):
        migrated_state(
            state_of(old, a=StepStatus.SUCCEEDED, b=StepStatus.RUNNING),
            mixed,
            Migration(),
        )
    rolling_back = replace(state_of(old), status=SagaStatus.COMPENSATING)
    with pytest.raises(StateError, match="only a running instance"):
        migrated_state(rolling_back, mixed, Migration())


def test_migrate_from_is_checked_when_the_saga_is_built() -> None:
    with pytest.raises(DefinitionError, match="older versions"):
        order(Step("a", act), version=2, migrate_from={2: Migration()})
    with pytest.raises(DefinitionError, match="does not have"):
        order(Step("a", act), version=2, migrate_from={1: Migration(steps={"b": "z"})})
    saga = order(Step("a", act), version=3, migrate_from={2: lambda c: c})
    assert saga.migrate_from[2].context is not None
    assert saga.fingerprint == order(Step("a", act), version=3).fingerprint


def test_left_waiting_counts_what_a_release_cannot_drive_by_saga_and_version() -> None:
    from sagakit.runtime.migrate import LeftWaiting, left_waiting  # noqa: PLC0415

    old, new = renaming_b()
    trip = Saga("trip", [Step("go", act)])
    registry = Registry([new, trip])
    live = {
        ("order", 1, old.fingerprint): 3,
        ("order", 1, None): 1,
        ("order", 2, new.fingerprint): 2,
        ("order", 2, "changed"): 1,
        ("trip", 1, trip.fingerprint): 4,
        ("ghost", 1, None): 5,  # not this release's saga: not its business
    }
    declared = "; a migration is declared: sagakit migrate-instances"
    assert left_waiting(registry, live) == [
        LeftWaiting(
            "order", 1, 4, f"needs order v1, not registered here (have v2){declared}"
        ),
        LeftWaiting(
            "order",
            2,
            1,
            "order v2 changed shape since this instance started "
            f"(fingerprint changed, registered {new.fingerprint})",
        ),
    ]
    assert str(left_waiting(registry, live)[0]).startswith(
        "4 saga(s) of order v1 left waiting: needs order v1"
    )
    assert left_waiting(Registry([old, new, trip]), live)[0].version == 2
