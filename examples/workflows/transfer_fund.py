"""Transfer funds: debit one account, then credit the other.

``credit`` has a custom retry policy: it counts its failures in the
instance's state and calls itself again with an exponential delay (a durable
timer); after ``max_credit_tries`` failures it refunds the source account.
Exceptions it does not catch are retried by the app (``max_attempts``).

Run it: ``python examples/workflows/transfer_fund.py`` (in memory, with a
fake clock, so the backoff takes no real time).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sagakit.ports.workflow_store import WorkflowStore
from sagakit.workflow import WorkflowApp

APP = "transfer_fund"


class Transfer(BaseModel):
    source: str
    target: str
    amount: int


class BankUnavailable(Exception):
    """The bank did not answer; trying again later may work."""


@dataclass
class Bank:
    """Stand-in for the account service: balances and a log of effects.

    ``failing_credits``: how many of the next credits fail; ``broken``: every
    debit fails (a poison step)."""

    balances: dict[str, int] = field(default_factory=dict)
    effects: list[tuple[str, str, int]] = field(default_factory=list)
    failing_credits: int = 0
    broken: bool = False

    def debit(self, account: str, amount: int) -> None:
        if self.broken:
            raise BankUnavailable(f"cannot debit {account}")
        self.balances[account] = self.balances.get(account, 0) - amount
        self.effects.append(("debit", account, amount))

    def credit(self, account: str, amount: int) -> None:
        if self.failing_credits > 0:
            self.failing_credits -= 1
            raise BankUnavailable(f"cannot credit {account}")
        self.balances[account] = self.balances.get(account, 0) + amount
        self.effects.append(("credit", account, amount))


def build_app(
    store: WorkflowStore, bank: Bank, *, max_credit_tries: int = 5, **options: Any
) -> WorkflowApp:
    """The transfer app on ``store``; ``options`` go to :class:`WorkflowApp`."""
    app = WorkflowApp(APP, store, **options)

    @app.step
    async def debit(
        input: Transfer, state: dict[str, Any], set_state: Any, logger: Any
    ) -> Any:
        bank.debit(input.source, input.amount)
        logger.info("debited %s", input.source)
        return credit(input)

    @app.step
    def credit(
        input: Transfer, state: dict[str, Any], set_state: Any, logger: Any
    ) -> Any:
        try:
            bank.credit(input.target, input.amount)
        except BankUnavailable:
            failures = state.get("credit_failures", 0) + 1
            set_state({**state, "credit_failures": failures})
            if failures >= max_credit_tries:
                return refund(input)
            logger.warning("credit failed; retrying in %ss", 2**failures)
            return credit(input, delay=2**failures)
        logger.info("credited %s", input.target)
        return None

    @app.step
    def refund(input: Transfer, state: dict[str, Any], set_state: Any) -> None:
        bank.credit(input.source, input.amount)
        set_state({**state, "refunded": True})

    return app


async def main() -> None:
    from sagakit.adapters.store.workflow_memory import (  # noqa: PLC0415
        InMemoryWorkflowStore,
    )
    from sagakit.testing import FakeClock  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    bank = Bank(balances={"alice": 100, "bob": 0}, failing_credits=2)
    app = build_app(InMemoryWorkflowStore(), bank, clock=FakeClock())
    await app.start(
        "transfer-1", "debit", Transfer(source="alice", target="bob", amount=10)
    )
    await app.advance(60)
    record = await app.get("transfer-1")
    logging.getLogger(APP).info(
        "%s: %s %s, balances %s",
        record.instance_id,
        record.status,
        record.state,
        bank.balances,
    )


if __name__ == "__main__":
    asyncio.run(main())
