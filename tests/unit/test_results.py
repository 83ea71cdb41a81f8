"""Data flow between steps: which functions ask for ``results`` (read from
their signatures when the definition is built), ``Step(output=...)``, and the
``Results`` view over a saga state."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from pydantic import BaseModel

from sagakit import DefinitionError, ResultError, Results, Saga, Step
from sagakit.definition import Remote
from sagakit.definition.signature import UNKNOWN, call_shape
from sagakit.engine.results import results_kwargs
from sagakit.engine.state import SagaState, StepState, StepStatus


class Ticket(BaseModel):
    ticket_id: int


class Other(BaseModel):
    name: str


def act(ctx: Any) -> None:
    return None


# -- signatures -----------------------------------------------------------------


def with_results(ctx: Any, results: Results) -> None:
    return None


def with_keyword_results(ctx: Any, *, results: Results) -> None:
    return None


def undo_with_both(ctx: Any, result: Any, results: Results) -> None:
    return None


def results_in_the_middle(ctx: Any, results: Results, result: Any) -> None:
    return None


def results_first(results: Results) -> None:
    return None


def results_only_positionally(ctx: Any, results: Results, /) -> None:
    return None


def unknown_keyword(ctx: Any, *, tenant: str) -> None:
    return None


def with_kwargs(ctx: Any, **extra: Any) -> None:
    return None


class Service:
    def run(self, ctx: Any, results: Results) -> None:
        return None


def test_call_shape_reads_results_and_positional_arguments() -> None:
    assert call_shape(act).results is False
    assert call_shape(with_results).results is True
    assert call_shape(with_results).accepts(1)
    assert not call_shape(with_results).accepts(2)  # results is not positional
    assert call_shape(with_keyword_results).results is True
    assert call_shape(undo_with_both).accepts(2)
    assert call_shape(results_only_positionally).results is False
    assert call_shape(unknown_keyword).unsuppliable == ("tenant",)
    assert call_shape(results_in_the_middle).unsuppliable == ("result",)
    assert call_shape(with_kwargs).results is False  # **kwargs asks for nothing
    assert call_shape(min) is UNKNOWN  # no signature to read


@pytest.mark.parametrize(
    ("action", "wants"),
    [
        (act, False),
        (with_results, True),
        (with_keyword_results, True),
        (lambda ctx, results: None, True),
        (functools.partial(undo_with_both, result=None), True),
        (functools.partial(with_results, results=None), True),
        (Service().run, True),
        (with_kwargs, False),
        (min, False),  # unreadable signature: called with the context only
    ],
)
def test_actions_asking_for_results_are_detected_once(action: Any, wants: bool) -> None:
    step = Step("a", action)
    assert step.action_wants_results is wants
    assert step.compensation_wants_results is False


def test_compensations_may_take_their_result_and_results() -> None:
    both = Step("a", act, undo_with_both)
    assert both.compensation_takes_result is True
    assert both.compensation_wants_results is True
    only = Step("a", act, with_keyword_results)
    assert only.compensation_takes_result is False
    assert only.compensation_wants_results is True
    # a parameter named ``results`` is never the step's own result
    assert Step("a", act, with_results).compensation_takes_result is False


def test_payload_builders_may_ask_for_results() -> None:
    step = Step(
        "a",
        Remote("svc.do", with_results),
        compensate=Remote("svc.undo", undo_with_both),
    )
    assert step.action_wants_results is True
    assert step.compensation_wants_results is True
    assert step.compensation_takes_result is True
    plain = Step("b", Remote("svc.do"), compensate=Remote("svc.undo"))
    assert plain.action_wants_results is False
    assert plain.compensation_wants_results is False


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: Step("s", unknown_keyword), ("'tenant'", "action must take")),
        (lambda: Step("s", act, unknown_keyword), ("'tenant'", "compensate must")),
        (lambda: Step("s", results_first), ("action must take", "'results'")),
        (lambda: Step("s", act, results_in_the_middle), ("'result'",)),
        (lambda: Step("s", results_only_positionally), ("action must take",)),
        (
            lambda: Step("s", Remote("svc.do", unknown_keyword)),
            ("action payload builder", "'tenant'"),
        ),
        (
            lambda: Step("s", act, Remote("svc.undo", results_in_the_middle)),
            ("compensation payload builder", "'result'"),
        ),
    ],
)
def test_parameters_nothing_can_fill_are_rejected(
    build: Any, expected: tuple[str, ...]
) -> None:
    with pytest.raises(DefinitionError) as info:
        build()
    message = str(info.value)
    assert message.startswith("step 's': ")
    for part in expected:
        assert part in message


# -- output models ----------------------------------------------------------------


def test_output_declares_the_result_model() -> None:
    assert Step("a", act, output=Ticket).output_model is Ticket
    assert Step("a", act).output_model is None
    assert Step("a", Remote("svc.do", reply=Ticket)).output_model is Ticket


def test_invalid_outputs_are_rejected() -> None:
    with pytest.raises(DefinitionError, match="step 'a': output must be a pydantic"):
        Step("a", act, output=dict)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="reply=") as info:
        Step("a", Remote("svc.do"), output=Ticket)
    assert "step 'a'" in str(info.value)


def test_an_output_model_changes_the_fingerprint_only_when_declared() -> None:
    plain = Saga("s", [Step("a", act)])
    same = Saga("s", [Step("a", act, output=None)])
    typed = Saga("s", [Step("a", act, output=Ticket)])
    other = Saga("s", [Step("a", act, output=Other)])
    assert plain.fingerprint == same.fingerprint
    assert len({plain.fingerprint, typed.fingerprint, other.fingerprint}) == 3


# -- the Results view ------------------------------------------------------------

SAGA = Saga(
    "flow",
    [
        Step("ticket", Remote("kitchen.create", reply=Ticket)),
        Step("plain", act),
        Step("none", act),
        Step("undone", act, act),
        Step("failed", act, act, compensate_on_failure=True),
        Step("running", act),
        Step("later", act),
    ],
)


def state(**steps: StepState) -> SagaState:
    return SagaState("id-1", "flow", steps=dict(steps))


STATE = state(
    ticket=StepState(StepStatus.SUCCEEDED, attempts=1, result={"ticket_id": 7}),
    plain=StepState(StepStatus.SUCCEEDED, attempts=1, result=[1, 2]),
    none=StepState(StepStatus.SUCCEEDED, attempts=1),
    undone=StepState(StepStatus.COMPENSATED, attempts=1, result="u"),
    failed=StepState(StepStatus.COMPENSATED, attempts=1),
    running=StepState(StepStatus.RUNNING, attempts=1),
)


def test_results_see_the_steps_whose_action_succeeded() -> None:
    results = Results(SAGA, STATE)
    assert list(results) == ["ticket", "plain", "none", "undone"]
    assert len(results) == 4
    assert "none" in results
    assert "failed" not in results  # failed, compensated on failure: no result
    assert "running" not in results
    assert "later" not in results
    assert 42 not in results
    assert dict(results) == {
        "ticket": {"ticket_id": 7},
        "plain": [1, 2],
        "none": None,
        "undone": "u",
    }
    assert repr(results) == "Results(ticket, plain, none, undone)"


def test_typed_access_validates_the_recorded_json() -> None:
    results = Results(SAGA, STATE)
    ticket = results.get("ticket", Ticket)
    assert ticket == Ticket(ticket_id=7)
    assert results.get("ticket") == ticket  # the declared reply model
    assert results.get("plain") == [1, 2]  # no model: the JSON
    assert results.get("plain", list[int]) == [1, 2]
    assert results.get("plain", tuple) == (1, 2)
    assert results["ticket"] == {"ticket_id": 7}


@pytest.mark.parametrize(
    ("step", "why"),
    [
        ("later", "step 'later' has not run yet"),
        ("running", "step 'running' has no result: it is running"),
        ("failed", "step 'failed' has no result: it is compensated"),
        ("nope", "saga 'flow' has no step 'nope'"),
    ],
)
def test_missing_results_name_the_step(step: str, why: str) -> None:
    results = Results(SAGA, STATE)
    for ask in (lambda: results[step], lambda: results.get(step, Ticket)):
        with pytest.raises(ResultError) as info:
            ask()
        assert str(info.value) == (
            f"saga id-1: {why} (steps with results: "
            "'ticket', 'plain', 'none', 'undone')"
        )
        assert info.value.step == step
        assert info.value.saga_id == "id-1"
        assert isinstance(info.value, LookupError)


def test_a_result_that_does_not_validate_names_the_step_and_the_field() -> None:
    results = Results(SAGA, STATE)
    with pytest.raises(ResultError) as info:
        results.get("ticket", Other)
    assert str(info.value) == (
        "saga id-1: the result of step 'ticket' is not a valid Other "
        "(name: Field required)"
    )
    with pytest.raises(ResultError, match="step 'plain' is not a valid int"):
        results.get("plain", int)


def test_building_the_view_copies_nothing_and_is_skipped_when_not_asked() -> None:
    results = Results(SAGA, STATE)
    assert results._state is STATE
    assert results_kwargs(SAGA, STATE, wanted=False) == {}
    (view,) = results_kwargs(SAGA, STATE, wanted=True).values()
    assert isinstance(view, Results)
    assert list(view) == list(results)
