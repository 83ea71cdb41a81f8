"""Place one order: commit a CreateOrder saga for an order-service worker to run.

    python -m examples.create_order.place_order --consumer-id alice --amount 25

It prints the saga id, which is also the order id. With ``--wait SECONDS`` it
then waits for the saga to end and prints its status too. The database is
``--db`` or ``$SAGAKIT_DATABASE_URL``; no broker is needed, since the first
step is local and the worker sends every command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from examples.create_order.database import DATABASE_ENV
from examples.create_order.order_service import CreateOrder, create_order_saga
from sagakit.adapters.store import open_store_async
from sagakit.runtime import Orchestrator


async def place(args: argparse.Namespace) -> int:
    store = await open_store_async(args.db)
    try:
        orchestrator = Orchestrator(store, [create_order_saga])
        order_id = args.order_id or uuid.uuid4().hex
        context = CreateOrder(
            order_id=order_id, consumer_id=args.consumer_id, amount=args.amount
        )
        saga_id = await orchestrator.submit(
            create_order_saga, context, saga_id=order_id, idempotency_key=order_id
        )
        print(saga_id, flush=True)
        if args.wait is None:
            return 0
        try:
            async with asyncio.timeout(args.wait):
                result = await orchestrator.wait(saga_id)
        except TimeoutError:
            print(f"still running after {args.wait:g}s", file=sys.stderr)
            return 1
        print(result.status.value)
        return 0
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumer-id", required=True)
    parser.add_argument("--amount", type=int, required=True)
    parser.add_argument("--order-id", help="default: a new random id")
    parser.add_argument("--db", help=f"store URL [default: ${DATABASE_ENV}]")
    parser.add_argument("--wait", type=float, metavar="SECONDS")
    args = parser.parse_args(argv)
    return asyncio.run(place(args))


if __name__ == "__main__":
    sys.exit(main())
