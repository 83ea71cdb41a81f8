"""What a transition writes to the outbox for commands sent without a reply
wait (:mod:`sagakit.runtime.unawaited`)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from sagakit import Results
from sagakit.definition import Remote, Saga, Step
from sagakit.engine import (
    Compensate,
    DeadlinePassed,
    FinishSaga,
    SagaStarted,
    SagaStatus,
    SendCancel,
    StepAttemptFailed,
    StepStatus,
    StepSucceeded,
    decide,
    initial_state,
)
from sagakit.engine.state import ErrorInfo
from sagakit.errors import DefinitionError
from sagakit.messaging.envelope import Envelope, decode
from sagakit.runtime.unawaited import ignored_reply, outgoing


class Ctx(BaseModel):
    n: int = 4


def local(ctx: Ctx) -> None:
    return None


def undo(ctx: Ctx) -> None:
    return None


CHAIN = Saga(
    "chain",
    [
        Step("a", local, compensate=undo),
        Step(
            "b",
            Remote("k.b"),
            compensate=Remote("k.unb", lambda ctx: {"n": ctx.n}, awaited=False),
        ),
        Step("c", Remote("k.c"), compensate=Remote("k.unc", awaited=False)),
        Step(
            "d",
            Remote("k.d", on_timeout=Remote("k.cancel_d", lambda ctx: {"n": ctx.n})),
            timeout=10,
        ),
    ],
    context=Ctx,
)


def test_fire_and_forget_compensations_chain_in_one_transition() -> None:
    d = decide(CHAIN, initial_state(CHAIN, "s1"), SagaStarted(1.0))
    for name in ("a", "b", "c"):
        d = decide(CHAIN, d.state, StepSucceeded(name, None, 2.0))
    d = decide(CHAIN, d.state, StepAttemptFailed("d", ErrorInfo("X", "x"), False, 3.0))
    assert d.commands == (Compensate("c", 1),)
    out = outgoing(CHAIN, d, Ctx(), reply_to="replies", now=5.0)
    # c sent, so b starts and is sent, so a (local) starts: one commit
    assert out.decision.commands == (
        Compensate("c", 1),
        Compensate("b", 1),
        Compensate("a", 1),
    )
    assert out.decision.state.step("c").status is StepStatus.COMPENSATED
    assert out.decision.state.step("b").status is StepStatus.COMPENSATED
    assert out.decision.state.step("a").status is StepStatus.COMPENSATING
    sent = [decode(m.body) for m in out.messages]
    assert [(m.type, m.step, m.reply_to, m.id) for m in sent] == [
        ("k.unc", "c", None, "s1.c.c1"),
        ("k.unb", "b", None, "s1.b.c1"),
    ]
    assert sent[1].payload == {"n": 4}
    assert [(h.step, h.kind, h.outcome) for h in out.entries] == [
        ("c", "compensation", "sent"),
        ("b", "compensation", "sent"),
    ]
    assert out.unsendable == []


def test_the_last_one_sent_finishes_the_saga_in_the_same_transition() -> None:
    saga = Saga(
        "short",
        [
            Step("b", Remote("k.b"), compensate=Remote("k.unb", awaited=False)),
            Step("u", local),
        ],
        context=Ctx,
    )
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(1.0))
    d = decide(saga, d.state, StepSucceeded("b", None, 2.0))
    d = decide(saga, d.state, StepAttemptFailed("u", ErrorInfo("X", "x"), False, 3.0))
    out = outgoing(saga, d, Ctx(), reply_to="replies", now=4.0)
    assert out.decision.state.status is SagaStatus.COMPENSATED
    assert out.decision.commands == (
        Compensate("b", 1),
        FinishSaga(SagaStatus.COMPENSATED),
    )


def test_a_timeout_writes_the_cancel_with_the_step_and_attempt() -> None:
    d = decide(CHAIN, initial_state(CHAIN, "s1"), SagaStarted(1.0))
    for name in ("a", "b", "c"):
        d = decide(CHAIN, d.state, StepSucceeded(name, None, 2.0))
    d = decide(CHAIN, d.state, DeadlinePassed(20.0))
    assert d.commands[0] == SendCancel("d", 1)
    out = outgoing(CHAIN, d, Ctx(), reply_to="replies", now=20.0)
    cancel = decode(out.messages[0].body)
    assert (cancel.type, cancel.step, cancel.attempt) == ("k.cancel_d", "d", 1)
    assert (cancel.id, cancel.reply_to, cancel.compensation) == ("s1.d.t1", None, False)
    assert cancel.payload == {"n": 4}
    assert out.messages[0].destination == "k"
    assert (out.entries[0].kind, out.entries[0].outcome) == ("cancel", "sent")


def reply(step: str, type_: str, *, compensation: bool = False) -> Envelope:
    return Envelope(
        kind="reply",
        type=type_,
        correlation_id=f"s1:{step}:1",
        saga_id="s1",
        step=step,
        compensation=compensation,
        ok=True,
    )


def test_replies_to_commands_nobody_waits_for_are_ignored() -> None:
    assert ignored_reply(CHAIN, reply("b", "k.unb", compensation=True))
    assert ignored_reply(CHAIN, reply("d", "k.cancel_d"))
    assert not ignored_reply(CHAIN, reply("d", "k.d"))
    assert not ignored_reply(CHAIN, reply("b", "k.b"))
    assert not ignored_reply(CHAIN, reply("a", "k.a", compensation=True))
    assert not ignored_reply(CHAIN, reply("zz", "k.zz"))


def test_a_cancel_payload_builder_may_read_the_results() -> None:
    def cancel(ctx: Ctx, results: Results) -> dict[str, int]:
        return {"reserved": results["a"]}

    saga = Saga(
        "reads",
        [
            Step("a", lambda ctx: 41),
            Step(
                "d",
                Remote("k.d", on_timeout=Remote("k.cancel_d", cancel)),
                timeout=10,
            ),
        ],
        context=Ctx,
    )
    d = decide(saga, initial_state(saga, "s1"), SagaStarted(1.0))
    d = decide(saga, d.state, StepSucceeded("a", 41, 2.0))
    d = decide(saga, d.state, DeadlinePassed(20.0))
    out = outgoing(saga, d, Ctx(), reply_to="replies", now=20.0)
    assert decode(out.messages[0].body).payload == {"reserved": 41}


def test_an_on_timeout_builder_that_cannot_be_called_is_refused() -> None:
    def cancel(ctx: Ctx, *, other: int) -> dict[str, int]:
        return {}

    with pytest.raises(DefinitionError, match="the on_timeout payload builder"):
        Step("d", Remote("k.d", on_timeout=Remote("k.cancel_d", cancel)))
