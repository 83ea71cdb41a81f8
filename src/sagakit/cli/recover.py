"""``sagakit recover``: resume every unfinished saga of some definitions,
batch by batch, with a line per batch on stderr (and, on a terminal, a
progress bar of the sagas finished so far).

Each batch is claimed, run and finished (or parked, or left waiting for a
reply) before the next is claimed, so memory and open work stay bounded by
``--batch-size`` however many sagas are unfinished. ``--limit`` caps how
many are resumed; SIGINT or SIGTERM stops after the current batch (a second
signal stops at once: what is unfinished stays resumable). Either way the
command says how many are left.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from sagakit.cli.common import (
    SagasArgument,
    StoreRetryOption,
    count_or_fail,
    db_of,
    err,
    fail,
    sagas_or_fail,
    seconds_or_fail,
)

if TYPE_CHECKING:  # the command imports what it runs when it runs
    from rich.console import Console

    from sagakit.ports.store import SagaRecord, SagaStore
    from sagakit.runtime.migrate import LeftWaiting
    from sagakit.runtime.orchestrator import Orchestrator

SHOWN = 50
"""Resumed sagas listed in the table; beyond, a count and a hint."""

LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar="N",
        help="Resume at most this many (then say how many are left).",
        show_default=False,
    ),
]
BatchOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        metavar="N",
        help="Sagas claimed, run and finished before the next batch.  [default: 500]",
        show_default=False,
    ),
]


@dataclass
class Recovered:
    """What a ``sagakit recover`` did."""

    resumed: list[str] = field(default_factory=list)
    shown: list[SagaRecord] = field(default_factory=list)
    waiting: list[LeftWaiting] = field(default_factory=list)
    batches: int = 0
    complete: bool = False
    """Nothing was left to claim (not stopped by a limit or a signal)."""
    signal: int | None = None
    """The signal that stopped it."""
    left: int = 0
    """Unfinished sagas of these definitions after it (when not complete)."""


async def recover_sagas(
    store: SagaStore,
    orchestrator: Orchestrator,
    *,
    limit: int | None,
    batch: int,
    done: Recovered,
) -> None:
    """Resume batch by batch into ``done``; the first SIGINT or SIGTERM
    lets the current batch end, then stops (the second cancels this)."""
    import asyncio
    import contextlib
    import signal

    from sagakit.cli.progress import Progress, live_progress
    from sagakit.errors import SagaError, StoreError

    recovery = orchestrator.recovery(limit=limit, batch=batch)
    total = await orchestrator.unfinished()
    if limit is not None:
        total = min(total, limit)

    def describe() -> Progress:
        """Finished so far: resumed, less those still driven here."""
        finished = recovery.progress.resumed - orchestrator.active
        batch_no = recovery.progress.batches
        label = f"recovering (batch {batch_no})" if batch_no else "recovering"
        return Progress(label, max(finished, 0), total)

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if done.signal is None:
            done.signal = signum
            recovery.stop()
            err.print("stopping after this batch (again: stop now)")
        elif me is not None:
            me.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        with live_progress(err, describe):
            while not recovery.done:
                ids = await recovery.next_batch()
                await orchestrator.drain()  # paused sagas stay paused, released
                done.resumed += ids
                refused = orchestrator.driver.store_failure
                if refused is not None:  # past --store-retry, or read-only
                    raise StoreError(
                        "the store refused a save; the sagas left unfinished "
                        f"stay resumable: {refused}"
                    ) from refused
                progress = recovery.progress
                done.batches = progress.batches
                if progress.claimed or ids:
                    err.print(
                        f"batch {progress.batches}: resumed {len(ids)} saga(s), "
                        f"{progress.resumed} so far",
                        highlight=False,
                    )
        done.complete = recovery.exhausted
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        with contextlib.suppress(SagaError):
            await orchestrator.stop_driving()
    if not done.complete:
        done.left = await orchestrator.unfinished()
    done.shown = [await store.get(saga_id) for saga_id in done.resumed[:SHOWN]]
    done.waiting = await orchestrator.waiting()


def register(app: typer.Typer, out: Console) -> None:
    @app.command()
    def recover(
        ctx: typer.Context,
        target: SagasArgument,
        *,
        limit: LimitOption = None,
        batch_size: BatchOption = None,
        store_retry: StoreRetryOption = 30.0,
    ) -> None:
        """Resume every unfinished saga of these definitions whose owner is
        gone (lease expired, or a dead process on this host), batch by batch,
        and wait for them; say how many are left waiting for a definition
        version, and why. SIGINT/SIGTERM stops after the current batch (exit
        status 130/143) and says how many are left. A store that refuses a
        save past --store-retry (at once if it is read-only) stops it with
        an error (exit 2)."""
        import asyncio
        import signal

        from sagakit.adapters.store import open_store_async
        from sagakit.errors import SagaError
        from sagakit.runtime import loop as event_loop
        from sagakit.runtime.orchestrator import Orchestrator
        from sagakit.runtime.recovery import RECOVERY_BATCH

        if batch_size is None:
            batch_size = RECOVERY_BATCH
        sagas = sagas_or_fail(target)
        if limit is not None:
            count_or_fail("--limit", limit)
        count_or_fail("--batch-size", batch_size)
        seconds_or_fail("--store-retry", store_retry, zero=True)
        done = Recovered()

        async def work() -> None:
            store = await open_store_async(db_of(ctx))
            try:
                orchestrator = Orchestrator(store, sagas, store_retry=store_retry)
                await recover_sagas(
                    store, orchestrator, limit=limit, batch=batch_size, done=done
                )
            finally:
                await store.close()

        gc.enable()  # off while the CLI starts (see main.main); recovery is long
        try:
            event_loop.run(work())
        except SagaError as exc:
            fail(str(exc))
        except asyncio.CancelledError:  # a second signal
            err.print(
                f"stopped at once after {len(done.resumed)} resumed saga(s); "
                "the unfinished ones stay resumable: sagakit recover again"
            )
            raise typer.Exit(128 + (done.signal or signal.SIGINT)) from None
        report(out, done)
        if done.signal is not None:
            raise typer.Exit(128 + done.signal)


def report(out: Console, done: Recovered) -> None:
    import time

    from sagakit.cli import render

    out.print(f"resumed {len(done.resumed)} saga(s)")
    if done.shown:
        out.print(render.sagas_table(done.shown, time.time()))
    if len(done.resumed) > len(done.shown):
        more = len(done.resumed) - len(done.shown)
        out.print(f"(and {more} more: sagakit list)", highlight=False)
    if not done.complete:
        why = "stopped by a signal" if done.signal is not None else "limit reached"
        out.print(
            f"{why} after {done.batches} batch(es): {done.left} unfinished "
            "saga(s) of these definitions left (sagakit recover resumes them)",
            highlight=False,
        )
    for left in done.waiting:
        out.print(str(left), markup=False, highlight=False)
