"""A delivery (a reply, a deadline) for an instance being taken over here:
its caller (the reply's transport) is answered once it is applied or refused,
never before."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from sagakit import Saga, SagaError, Step
from sagakit.engine.decide import initial_state
from sagakit.engine.events import DeadlinePassed
from sagakit.runtime.delivery import enqueue, refuse_queued
from sagakit.runtime.instance import Delivery, Instance


class Nothing(BaseModel):
    pass


def adopting() -> Instance:
    """An instance as ``adoption.adopt`` holds it while it commits the
    takeover: driven here (``active``), its task not started yet."""
    saga = Saga("s", [Step("one", lambda ctx: None)], context=Nothing)
    return Instance(
        saga=saga,
        state=initial_state(saga, "s1"),
        context=Nothing(),
        version=1,
        created_at=0.0,
        idempotency_key=None,
    )


async def test_a_delivery_waits_for_the_task_that_takes_the_instance_over() -> None:
    inst = adopting()
    waiting = asyncio.ensure_future(enqueue(inst, DeadlinePassed(1.0), [], None))
    await asyncio.sleep(0)
    # before: it returned at once, and a reply was acknowledged unapplied
    assert not waiting.done()
    queued = inst.queue.get_nowait()  # as the spawned task takes it
    assert isinstance(queued, Delivery)
    queued.handled.set_result(None)  # applied
    await asyncio.wait_for(waiting, 10)


async def test_a_delivery_for_a_takeover_that_failed_is_refused() -> None:
    inst = adopting()
    waiting = asyncio.ensure_future(enqueue(inst, DeadlinePassed(1.0), [], None))
    await asyncio.sleep(0)
    refuse_queued(inst, "another worker took it over")
    with pytest.raises(SagaError, match="another worker took it over"):
        await asyncio.wait_for(waiting, 10)
    assert inst.queue.empty()
