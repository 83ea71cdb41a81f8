"""How soon a saga queued for a lock in one process goes on once another
process lets go of the key, on PostgreSQL: the waiter's driver listening
for the release (``LISTEN``/``NOTIFY``, the default there) against polling
alone (``lock_poll``, the only way on SQLite and MySQL).

Two orchestrators on two stores (two connection pools: two processes as the
database sees them) share one key; saga a holds it, b queues, a ends. The
figure is the time from a's end (its commit returned) to b's step starting.
Printed, never asserted.

    python benchmarks/lock_wake.py [--rounds 20] [--dsn URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from pydantic import BaseModel

from sagakit import Orchestrator, Saga, Step
from sagakit.adapters.store import open_store_async
from sagakit.runtime import lockwatch

DSN = os.environ.get(
    "SAGAKIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


class Seat(BaseModel):
    seat: str = "1A"


async def rounds(
    dsn: str, count: int, *, listen: bool, hold_s: float = 1.0
) -> list[float]:
    """Milliseconds from a's end to b's step start, per round."""
    gate, started = asyncio.Event(), {}

    async def hold(ctx: Seat) -> None:
        await gate.wait()

    async def take(ctx: Seat) -> None:
        started["b"] = time.perf_counter()

    held = Saga(
        "hold", [Step("reserve", hold, locks=["seat:{ctx.seat}"])], context=Seat
    )
    taken = Saga(
        "take", [Step("reserve", take, locks=["seat:{ctx.seat}"])], context=Seat
    )
    here_store, there_store = await open_store_async(dsn), await open_store_async(dsn)
    here = Orchestrator(here_store, [held], lease=5)
    there = Orchestrator(there_store, [taken], lease=5)
    if not listen:  # as on a store that cannot tell: polling alone
        there.driver.locks._listen = _not_listening  # type: ignore[method-assign]
    out = []
    try:
        for _ in range(count):
            gate.clear()
            a = await here.start(held, Seat())
            b = await there.start(taken, Seat())
            await asyncio.sleep(hold_s)  # b queued; its polls have backed off
            gate.set()
            await here.wait(a)
            ended = time.perf_counter()
            await there.wait(b)
            out.append((started["b"] - ended) * 1e3)
    finally:
        await here.close()
        await there.close()
        await here_store.close()
        await there_store.close()
    return out


async def _not_listening() -> Any:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dsn", default=DSN)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"lock wake-up across processes on PostgreSQL, {args.rounds} rounds; "
        f"lock_poll {lockwatch.FIRST_POLL}s doubling to 0.25s (the default)"
    )
    rows = {}
    for name, listen in (("listen", True), ("poll", False)):
        ms = asyncio.run(rounds(args.dsn, args.rounds, listen=listen))
        rows[name] = ms
        print(
            f"{name:7s} median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms"
        )
    ratio = statistics.median(rows["poll"]) / statistics.median(rows["listen"])
    print(f"poll/listen (medians): {ratio:.1f}x")
    print(f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
