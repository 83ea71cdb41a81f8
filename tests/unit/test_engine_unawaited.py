"""Commands sent without a reply wait: fire-and-forget compensations and an
action's ``on_timeout`` command, in the definition and the engine."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from sagakit.definition import Parallel, Remote, RetryPolicy, Saga, Step
from sagakit.engine import (
    Compensate,
    CompensationAttemptFailed,
    CompensationSucceeded,
    DeadlinePassed,
    FinishSaga,
    PauseRequested,
    RunStep,
    SagaResumed,
    SagaStarted,
    SagaStatus,
    SendCancel,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    UnpauseRequested,
    decide,
    initial_state,
)
from sagakit.engine.commands import Decision
from sagakit.engine.state import ErrorInfo
from sagakit.engine.unawaited import sent, unawaited
from sagakit.errors import DefinitionError, StateError

NO = ErrorInfo("Declined", "no")


class Reply(BaseModel):
    ok: bool = True


def local(ctx: object) -> None:
    return None


def undo(ctx: object) -> None:
    return None


def payload(ctx: object) -> dict[str, int]:
    return {}


# -- definition ------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (
            lambda: Step("t", Remote("k.create", awaited=False)),
            "step 't': awaited=False is for compensations only",
        ),
        (
            lambda: Step(
                "t",
                local,
                compensate=Remote("k.undo", awaited=False),
                compensation_timeout=5,
            ),
            "step 't': the compensation 'k.undo' is not awaited",
        ),
        (
            lambda: Step(
                "t",
                Remote("k.create"),
                compensate=Remote("k.undo", on_timeout=Remote("k.cancel")),
            ),
            "step 't': on_timeout belongs to the step action",
        ),
        (
            lambda: Remote("k.undo", reply=Reply, awaited=False),
            "Remote 'k.undo': awaited=False reads no reply",
        ),
        (
            lambda: Remote("k.do", awaited=False, on_timeout=Remote("k.cancel")),
            "Remote 'k.do': awaited=False has no reply deadline",
        ),
        (
            lambda: Remote("k.do", awaited="no"),  # type: ignore[arg-type]
            "awaited must be True or False",
        ),
        (
            lambda: Remote("k.do", on_timeout="k.cancel"),  # type: ignore[arg-type]
            "Remote 'k.do': on_timeout must be a Remote command",
        ),
        (
            lambda: Remote("k.do", on_timeout=Remote("k.cancel", reply=Reply)),
            "its on_timeout command 'k.cancel' is fire and forget",
        ),
        (
            lambda: Remote(
                "k.do", on_timeout=Remote("k.cancel", on_timeout=Remote("k.x"))
            ),
            "its on_timeout command 'k.cancel' is fire and forget",
        ),
        (
            lambda: Step(
                "t",
                Remote(
                    "k.do", on_timeout=Remote("k.cancel", lambda ctx, more, most: {})
                ),
            ),
            "step 't': the on_timeout payload builder must take (ctx)",
        ),
    ],
)
def test_misplaced_options_fail_at_definition_time(make: Any, fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        make()
    assert fragment in str(info.value)


def test_defaults_await_the_reply_and_send_no_cancel() -> None:
    remote = Remote("k.do")
    assert remote.awaited is True
    assert remote.on_timeout is None
    step = Step("t", local, compensate=Remote("k.undo", payload, awaited=False))
    assert unawaited(Saga("s", [step]), Compensate("t", 1)) == step.compensate


def test_fingerprint_tells_fire_and_forget_but_not_on_timeout() -> None:
    def saga(compensate: Remote, action: Remote) -> Saga[Any]:
        return Saga("s", [Step("t", action, compensate=compensate)])

    plain = saga(Remote("k.undo"), Remote("k.do"))
    forget = saga(Remote("k.undo", awaited=False), Remote("k.do"))
    cancel = saga(Remote("k.undo"), Remote("k.do", on_timeout=Remote("k.cancel")))
    assert forget.fingerprint != plain.fingerprint
    assert cancel.fingerprint == plain.fingerprint


# -- fire-and-forget compensations -----------------------------------------

SAGA = Saga(
    "order",
    [
        Step("reserve", local, compensate=undo),
        Parallel(
            Step(
                "ticket",
                Remote("kitchen.create_ticket"),
                compensate=Remote("kitchen.reject_ticket", awaited=False),
                timeout=30,
            ),
            Step(
                "hold",
                Remote("bank.hold"),
                compensate=Remote("bank.release", awaited=False),
                timeout=30,
            ),
        ),
        Step("charge", Remote("accounting.charge"), timeout=5),
    ],
)


def failed_at_charge() -> Decision:
    d = decide(SAGA, initial_state(SAGA, "s1"), SagaStarted(100.0))
    d = decide(SAGA, d.state, StepSucceeded("reserve", None, 101.0))
    d = decide(SAGA, d.state, StepSucceeded("ticket", {"id": 7}, 102.0))
    d = decide(SAGA, d.state, StepSucceeded("hold", None, 103.0))
    return decide(SAGA, d.state, StepAttemptFailed("charge", NO, False, 104.0))


def test_a_fire_and_forget_compensation_starts_without_a_deadline() -> None:
    d = failed_at_charge()
    assert d.commands == (Compensate("hold", 1), Compensate("ticket", 1))
    assert d.state.step("ticket").status is StepStatus.COMPENSATING
    assert d.state.step("ticket").deadline is None
    assert d.state.next_deadline is None
    # no deadline to pass: nothing times out
    assert decide(SAGA, d.state, DeadlinePassed(10_000.0)) == Decision(d.state, ())


def test_sent_counts_it_done_and_the_rollback_goes_on() -> None:
    d = failed_at_charge()
    both = sent(SAGA, d, [Compensate("hold", 1), Compensate("ticket", 1)], 105.0)
    assert both.commands == (*d.commands, Compensate("reserve", 1))
    assert both.state.step("ticket").status is StepStatus.COMPENSATED
    assert both.state.step("hold").status is StepStatus.COMPENSATED
    assert both.state.step("reserve").status is StepStatus.COMPENSATING
    # one sent, the other not yet (its message could not be built): wait
    one = sent(SAGA, d, [Compensate("hold", 1)], 105.0)
    assert one.commands == d.commands
    assert one.state.step("ticket").status is StepStatus.COMPENSATING
    # a reply that comes anyway is stale: the step is compensated
    with pytest.raises(StateError, match="not being compensated"):
        decide(SAGA, both.state, CompensationSucceeded("ticket", 106.0, attempt=1))


def test_the_last_one_sent_ends_the_rollback() -> None:
    saga = Saga(
        "one",
        [
            Step("t", Remote("k.do"), compensate=Remote("k.undo", awaited=False)),
            Step("u", local),
        ],
    )
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(1.0))
    d = decide(saga, d.state, StepSucceeded("t", None, 2.0))
    d = decide(saga, d.state, StepAttemptFailed("u", NO, False, 3.0))
    assert d.commands == (Compensate("t", 1),)
    done = sent(saga, d, [Compensate("t", 1)], 4.0)
    assert done.state.status is SagaStatus.COMPENSATED
    assert done.commands == (Compensate("t", 1), FinishSaga(SagaStatus.COMPENSATED))


def test_resume_sends_an_unsent_one_again() -> None:
    d = failed_at_charge()
    resumed = decide(SAGA, d.state, SagaResumed(200.0))
    assert resumed.commands == (Compensate("hold", 1), Compensate("ticket", 1))
    assert resumed.state == d.state


def test_a_failure_to_send_counts_as_a_failed_attempt() -> None:
    d = failed_at_charge()
    error = ErrorInfo("ValueError", "bad payload")
    failed = decide(
        SAGA, d.state, CompensationAttemptFailed("ticket", error, False, 105.0, 0.0, 1)
    )
    assert failed.state.step("ticket").status is StepStatus.COMPENSATION_FAILED
    assert failed.commands == ()  # 'stop': hold's is still in flight


def test_a_paused_rollback_holds_it_and_unpausing_sends_it_without_a_deadline() -> None:
    d = decide(SAGA, initial_state(SAGA, "s1"), SagaStarted(100.0))
    d = decide(SAGA, d.state, StepSucceeded("reserve", None, 101.0))
    d = decide(SAGA, d.state, StepSucceeded("ticket", None, 102.0))
    d = decide(SAGA, d.state, StepSucceeded("hold", None, 103.0))
    d = decide(SAGA, d.state, PauseRequested(103.5))
    d = decide(SAGA, d.state, StepAttemptFailed("charge", NO, False, 104.0))
    assert d.commands == ()
    assert d.state.held == ("hold", "ticket")
    go = decide(SAGA, d.state, UnpauseRequested(105.0))
    assert go.commands == (Compensate("hold", 1), Compensate("ticket", 1))
    assert go.state.step("ticket").deadline is None
    assert go.state.step("hold").deadline is None


# -- on_timeout ------------------------------------------------------------


def cancelling(attempts: int = 1) -> Saga[Any]:
    return Saga(
        "cancelling",
        [
            Step("reserve", local, compensate=undo),
            Step(
                "ticket",
                Remote("kitchen.create_ticket", on_timeout=Remote("kitchen.cancel")),
                timeout=10,
                retry=RetryPolicy(attempts=attempts, backoff=2.0, jitter=0),
            ),
        ],
    )


def ticket_running(saga: Saga[Any]) -> Decision:
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(100.0))
    return decide(saga, d.state, StepSucceeded("reserve", None, 101.0))


def test_a_timeout_sends_the_cancel_before_the_step_fails() -> None:
    saga = cancelling()
    d = ticket_running(saga)
    assert decide(saga, d.state, DeadlinePassed(110.0)).commands == ()
    late = decide(saga, d.state, DeadlinePassed(111.0))
    assert late.commands == (SendCancel("ticket", 1), Compensate("reserve", 1))
    assert late.state.step("ticket").status is StepStatus.FAILED
    assert late.state.error is not None
    assert late.state.error.type == "ReplyTimeout"
    # the late reply to the cancelled attempt changes nothing
    with pytest.raises(StateError):
        decide(saga, late.state, StepSucceeded("ticket", {}, 112.0, attempt=1))


def test_each_timed_out_attempt_sends_its_own_cancel() -> None:
    saga = cancelling(attempts=2)
    d = ticket_running(saga)
    first = decide(saga, d.state, DeadlinePassed(111.0))
    assert first.commands == (SendCancel("ticket", 1), RunStep("ticket", 2, 2.0))
    assert first.state.step("ticket").status is StepStatus.RUNNING
    second = decide(saga, first.state, DeadlinePassed(123.0))
    assert second.commands == (SendCancel("ticket", 2), Compensate("reserve", 1))


def test_no_cancel_without_on_timeout_or_before_the_deadline() -> None:
    saga = Saga("plain", [Step("ticket", Remote("kitchen.create_ticket"), timeout=10)])
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(100.0))
    late = decide(saga, d.state, DeadlinePassed(110.0))
    assert not any(isinstance(c, SendCancel) for c in late.commands)
    saga = cancelling()
    d = ticket_running(saga)
    replied = decide(saga, d.state, StepSucceeded("ticket", {}, 105.0, attempt=1))
    assert replied.state.status is SagaStatus.SUCCEEDED
    assert not any(isinstance(c, SendCancel) for c in replied.commands)


def test_a_paused_saga_still_sends_the_cancel_of_a_timed_out_step() -> None:
    saga = cancelling(attempts=2)
    d = ticket_running(saga)
    d = decide(saga, d.state, PauseRequested(102.0))
    late = decide(saga, d.state, DeadlinePassed(111.0))
    # the retry is held back; the cancel of the timed-out attempt goes out
    assert late.commands == (SendCancel("ticket", 1),)
    assert late.state.held == ("ticket",)
