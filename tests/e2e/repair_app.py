"""Sagas for the compensation actions and forks from the CLI
(``tests/e2e/test_cli_repair.py``).

The CLI loads this module (``--sagas tests.e2e.repair_app``) but runs no
step: the test process runs them (``recover``), logging each call in
``LOG`` as ``<order> <what>``. What is *broken* fails until ``SWITCH.fixed``.

With ``$REPAIR_CRASH`` set, the process that imports this module kills
itself with SIGKILL at a point of an operator action: ``after_commit``
right after the action's transition is committed (before the saga is
handed over), ``before_fork`` after the source's fork line is committed,
before the fork is created.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from pydantic import BaseModel

from sagakit import RetryPolicy, Saga, Step

ONCE = RetryPolicy(attempts=1)
LOG: list[str] = []


class Switch:
    fixed = False


SWITCH = Switch()


class Order(BaseModel):
    order: str = "o-1"
    qty: int = 1


def act(name: str, *, broken: bool = False) -> Any:
    def action(ctx: Order) -> str:
        LOG.append(f"{ctx.order} {name} x{ctx.qty}")
        if broken and not SWITCH.fixed:
            raise OSError(f"{name}: service down")
        return f"{name}-{ctx.order}"

    return action


def undo(name: str, *, broken: bool = False) -> Any:
    def compensate(ctx: Order) -> None:
        LOG.append(f"{ctx.order} undo {name}")
        if broken and not SWITCH.fixed:
            raise OSError(f"undo {name}: service down")

    return compensate


def refuse(ctx: Order) -> None:
    LOG.append(f"{ctx.order} charge")
    raise ValueError("card declined")


undoing = Saga(
    "undoing",
    [
        Step("a", act("a"), compensate=undo("a"), compensation_retry=ONCE),
        Step("b", act("b"), compensate=undo("b", broken=True), compensation_retry=ONCE),
        Step("c", act("c"), compensate=undo("c", broken=True), compensation_retry=ONCE),
        Step("charge", refuse),  # rolls back; undo c fails: compensation_failed
    ],
    context=Order,
)

shipping = Saga(
    "shipping",
    [
        Step("reserve", act("reserve"), compensate=undo("reserve")),
        Step("charge", act("charge"), pivot=True),
        Step("ship", act("ship", broken=True), retry=ONCE),  # after the pivot: failed
    ],
    context=Order,
)


def _crash_at(point: str) -> None:
    from sagakit.runtime.client import SagaClient  # noqa: PLC0415 - a test hook
    from sagakit.runtime.driver import Driver  # noqa: PLC0415

    if point == "after_commit":
        committed = Driver.transition

        async def transition(self: Driver, *args: Any, **kwargs: Any) -> Any:
            await committed(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        Driver.transition = transition  # type: ignore[method-assign]
    elif point == "before_fork":

        async def begin(self: SagaClient, *args: Any, **kwargs: Any) -> Any:
            os.kill(os.getpid(), signal.SIGKILL)

        SagaClient.begin = begin  # type: ignore[method-assign]


if os.environ.get("REPAIR_CRASH"):
    _crash_at(os.environ["REPAIR_CRASH"])
