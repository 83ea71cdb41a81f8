"""The driver's fast record builders make what the ports' constructors make."""

from __future__ import annotations

from dataclasses import fields

from sagakit.engine.state import ErrorInfo, SagaState, SagaStatus
from sagakit.ports.store import HistoryEntry, SagaRecord
from sagakit.ports.store import saga_line as port_saga_line
from sagakit.runtime.records import history_line, saga_line, saga_record


def _same(a: object, b: object) -> None:
    assert type(a) is type(b)
    for f in fields(a):  # type: ignore[arg-type]
        assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert a == b


def test_history_line_is_the_constructors_entry() -> None:
    error = ErrorInfo("Boom", "no")
    built = history_line("s1", "pay", "action", 2, "failed", 1.0, 2.5, {"x": 1}, error)
    made = HistoryEntry(
        saga_id="s1",
        step="pay",
        kind="action",
        attempt=2,
        outcome="failed",
        started_at=1.0,
        finished_at=2.5,
        result={"x": 1},
        error=error,
    )
    _same(built, made)
    assert built.duration == 1.5


def test_saga_line_is_the_ports_saga_line() -> None:
    _same(saga_line("s1", "started", 3.0), port_saga_line("s1", "started", 3.0))
    _same(
        saga_line("s1", "started", 3.0, {"trace": {}}),
        port_saga_line("s1", "started", 3.0, {"trace": {}}),
    )


def test_saga_record_is_the_constructors_record() -> None:
    state = SagaState("s1", "order")
    built = saga_record(
        "s1",
        "order",
        SagaStatus.RUNNING,
        3,
        state,
        {"a": 1},
        "k",
        1.0,
        2.0,
        None,
        2,
        "fp",
    )
    made = SagaRecord(
        saga_id="s1",
        saga_name="order",
        status=SagaStatus.RUNNING,
        version=3,
        state=state,
        context={"a": 1},
        idempotency_key="k",
        created_at=1.0,
        updated_at=2.0,
        deadline=None,
        definition_version=2,
        fingerprint="fp",
    )
    _same(built, made)
    assert built.waiting is None
    assert built.previous_owner is None
    assert built.definition_key == made.definition_key


def test_hot_path_builders_make_what_the_constructors_make() -> None:
    from sagakit.engine.commands import (  # noqa: PLC0415
        Decision,
        RunStep,
        make_decision,
        make_run_step,
    )
    from sagakit.engine.events import StepSucceeded  # noqa: PLC0415
    from sagakit.runtime.executor import StepOutcome, _outcome  # noqa: PLC0415
    from sagakit.runtime.records import step_succeeded  # noqa: PLC0415

    state = SagaState("s1", "order")
    _same(make_run_step("pay", 2), RunStep("pay", 2))
    _same(
        make_decision(state, (RunStep("pay", 1),)),
        Decision(state, (RunStep("pay", 1),)),
    )
    _same(step_succeeded("pay", {"id": 1}, 2.0), StepSucceeded("pay", {"id": 1}, 2.0))
    entry = saga_line("s1", "started", 1.0)
    event = StepSucceeded("pay", None, 2.0)
    _same(_outcome(event, entry), StepOutcome(event, entry))


def test_a_result_from_state_is_the_constructors_result() -> None:
    from sagakit import Saga, Step  # noqa: PLC0415
    from sagakit.engine.decide import initial_state  # noqa: PLC0415
    from sagakit.runtime.result import SagaResult  # noqa: PLC0415

    saga = Saga("order", [Step("pay", lambda ctx: None)])
    state = initial_state(saga, "s1").but(status=SagaStatus.SUCCEEDED)
    context = saga.context()
    built = SagaResult.from_state(state, context, saga=saga)
    made = SagaResult(
        saga_id="s1",
        saga_name="order",
        status=SagaStatus.SUCCEEDED,
        context=context,
        results={},
        compensation_errors=(),
    )
    _same(built, made)
    assert list(vars(built)) == list(vars(made))
    assert repr(built) == repr(made)
