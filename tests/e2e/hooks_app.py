"""A worker process with a webhook, for the hook crash test.

Usage: python hooks_app.py DB WEBHOOK_URL

Runs a saga that fails after its pivot, and a notifier that POSTs its
notification to WEBHOOK_URL (holding it one second); the test SIGKILLs the
process while the webhook keeps that request hanging.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sagakit import Orchestrator, RetryPolicy, Saga, SQLiteStore, Step
from sagakit.hooks import Hooks, Notifier

SECRET = "whsec-crash-test-0123456789"  # noqa: S105 - a test secret


def ship(ctx: object) -> None:
    raise ConnectionError("carrier API unreachable")


saga: Saga[Any] = Saga(
    "shipping",
    [
        Step("charge", lambda ctx: "C-1", pivot=True),
        Step("ship", ship, retry=RetryPolicy(attempts=1)),
    ],
)


async def main(db: str, url: str) -> None:
    store = SQLiteStore(db)
    notifier = Notifier(store, Hooks(webhook=url, secret=SECRET, timeout=30), hold=1.0)
    orchestrator = Orchestrator(store, [saga], observer=notifier.observer)
    async with notifier.running():
        await orchestrator.run(saga, saga_id="crashing-order")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
