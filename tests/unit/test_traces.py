from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sagakit.definition import (
    COMPENSATION_RETRY,
    NO_RETRY,
    Parallel,
    RetryPolicy,
    Saga,
    Step,
)
from sagakit.engine import (
    Command,
    CompensationAttemptFailed,
    CompensationSucceeded,
    ErrorInfo,
    Event,
    FinishSaga,
    SagaResumed,
    SagaStarted,
    SagaState,
    StepAttemptFailed,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.errors import DefinitionError, StateError

# Golden traces: a saga shape and an event list, replayed against ``decide``.
#
# Each ``traces/*.json`` file holds the saga shape (rebuilt here with dummy
# callables), the events fed in, the exact commands and status expected after
# each event, and the final state as ``SagaState.to_dict()``.
#
# ``cac7a3f-*.json`` were recorded from finished sagas of commit cac7a3f (see
# tests/fixtures/store_format/make_fixtures.py): histories written by an
# earlier release must replay to the state that release stored. A trace with
# an ``incompatible`` part is one whose definition no longer fits its events:
# the replay must stop with that error, naming that step, at that event.
# Traces with ``recorded_by`` are never regenerated: a new engine must fit them.
#
# After an intended engine change, regenerate the expected parts with::
#
#     SAGAKIT_REGEN_TRACES=1 .venv/bin/pytest tests/unit/test_traces.py
#
# and review the diff before committing it.

TRACES = Path(__file__).parent / "traces"
REGENERATE = os.environ.get("SAGAKIT_REGEN_TRACES") == "1"

# -- saga shapes from JSON ---------------------------------------------------


def _action(ctx: Any) -> None:
    return None


def _undo(ctx: Any) -> None:
    return None


def _undo_with_result(ctx: Any, result: Any) -> None:
    return None


_COMPENSATIONS = {None: None, "ctx": _undo, "ctx_result": _undo_with_result}
_POLICY_FIELDS = ("attempts", "backoff", "multiplier", "max_backoff", "jitter")


def policy_from_json(data: dict[str, Any] | None, default: RetryPolicy) -> RetryPolicy:
    if data is None:
        return default
    unknown = set(data) - set(_POLICY_FIELDS)
    assert not unknown, f"unknown retry fields {unknown}"
    return RetryPolicy(**data)


def step_from_json(data: dict[str, Any]) -> Step:
    known = {
        "name",
        "compensate",
        "pivot",
        "compensate_on_failure",
        "retry",
        "compensation_retry",
    }
    assert set(data) <= known, f"unknown step fields {set(data) - known}"
    return Step(
        data["name"],
        _action,
        _COMPENSATIONS[data.get("compensate")],
        retry=policy_from_json(data.get("retry"), NO_RETRY),
        compensation_retry=policy_from_json(
            data.get("compensation_retry"), COMPENSATION_RETRY
        ),
        pivot=data.get("pivot", False),
        compensate_on_failure=data.get("compensate_on_failure", False),
    )


def saga_from_json(data: dict[str, Any]) -> Saga[Any]:
    stages: list[Step | Parallel] = []
    for group in data["stages"]:
        steps = [step_from_json(s) for s in group]
        stages.append(steps[0] if len(steps) == 1 else Parallel(*steps))
    return Saga(data["name"], stages)


# -- events and commands as JSON ---------------------------------------------

_EVENTS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        SagaStarted,
        SagaResumed,
        StepSucceeded,
        StepAttemptFailed,
        CompensationSucceeded,
        CompensationAttemptFailed,
    )
}


def event_from_json(data: dict[str, Any]) -> Event:
    fields = dict(data)
    cls = _EVENTS[fields.pop("type")]
    if "error" in fields:
        fields["error"] = ErrorInfo.from_dict(fields["error"])
    event: Event = cls(**fields)
    return event


def command_to_json(command: Command) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(command).__name__}
    out.update(dataclasses.asdict(command))
    if isinstance(command, FinishSaga):
        out["status"] = command.status.value
    return out


# -- replay ----------------------------------------------------------------


def replay(trace: dict[str, Any]) -> tuple[list[dict[str, Any]], SagaState]:
    """Feed the trace's events; return what ``decide`` said after each one."""
    saga = saga_from_json(trace["saga"])
    state = initial_state(saga, trace["saga_id"])
    observed = []
    for entry in trace["events"]:
        decision = decide(saga, state, event_from_json(entry["event"]))
        state = decision.state
        observed.append(
            {
                "event": entry["event"],
                "commands": [command_to_json(c) for c in decision.commands],
                "status": state.status.value,
            }
        )
    return observed, state


def regenerate(path: Path) -> None:
    """Rewrite the expected parts of one trace from the current engine."""
    trace = json.loads(path.read_text(encoding="utf-8"))
    observed, final = replay(trace)
    trace["events"] = observed
    trace["final_state"] = final.to_dict()
    path.write_text(json.dumps(trace, indent=2) + "\n", encoding="utf-8")


def _incompatible(path: Path) -> bool:
    return "incompatible" in json.loads(path.read_text(encoding="utf-8"))


ALL_FILES = sorted(TRACES.glob("*.json"))
TRACE_FILES = [p for p in ALL_FILES if not _incompatible(p)]
INCOMPATIBLE_FILES = [p for p in ALL_FILES if _incompatible(p)]
_ERRORS: dict[str, type[Exception]] = {
    "StateError": StateError,
    "DefinitionError": DefinitionError,
}


def test_there_are_golden_traces() -> None:
    assert len(TRACE_FILES) >= 3
    assert [p for p in TRACE_FILES if p.stem.startswith("cac7a3f-")]
    assert INCOMPATIBLE_FILES


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_trace_replays_identically(path: Path) -> None:
    trace = json.loads(path.read_text(encoding="utf-8"))
    if REGENERATE and "recorded_by" not in trace:  # recorded ones stay as made
        regenerate(path)
        trace = json.loads(path.read_text(encoding="utf-8"))
    assert trace["description"]
    observed, final = replay(trace)
    assert len(observed) == len(trace["events"])
    for index, (got, expected) in enumerate(
        zip(observed, trace["events"], strict=True)
    ):
        assert got["commands"] == expected["commands"], f"event #{index}"
        assert got["status"] == expected["status"], f"event #{index}"
    assert final.to_dict() == trace["final_state"]
    assert SagaState.from_dict(trace["final_state"]) == final


@pytest.mark.parametrize(
    "path", INCOMPATIBLE_FILES, ids=[p.stem for p in INCOMPATIBLE_FILES]
)
def test_incompatible_trace_is_reported(path: Path) -> None:
    trace = json.loads(path.read_text(encoding="utf-8"))
    assert trace["description"]
    expected = trace["incompatible"]
    saga = saga_from_json(trace["saga"])
    state = initial_state(saga, trace["saga_id"])
    events = [event_from_json(entry["event"]) for entry in trace["events"]]
    at = expected["at_event"]
    for event in events[:at]:  # the events before still fit
        state = decide(saga, state, event).state
    with pytest.raises(_ERRORS[expected["error"]], match=repr(expected["step"])):
        decide(saga, state, events[at])
