"""The long-running commands: ``worker`` (claim and run sagas from the
store) and ``participant`` (handle a service's commands from a broker).
Both run until SIGTERM or SIGINT; bad input prints one ``error: ...`` line
and exits with status 2."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from sagakit.adapters.transport import ENV_VAR as TRANSPORT_ENV
from sagakit.cli.common import (
    WEBHOOK_SECRET_ENV,
    DbPoolOption,
    SagasArgument,
    StoreRetryOption,
    TransportOption,
    count_or_fail,
    db_of,
    err,
    fail,
    sagas_or_fail,
    seconds_or_fail,
    webhook_hooks,
    with_store,
)
from sagakit.cli.loader import LoadError, load_participant

if TYPE_CHECKING:
    from sagakit.ports.store import SagaStore


def worker(
    ctx: typer.Context,
    target: SagasArgument,
    *,
    lease: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds before another worker may take over."
        ),
    ] = 30.0,
    max_active: Annotated[
        int, typer.Option(metavar="N", help="Sagas driven at once by this worker.")
    ] = 200,
    until_idle: Annotated[
        bool,
        typer.Option("--until-idle", help="Exit once there is nothing left to claim."),
    ] = False,
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="ID",
            help="Worker id.  [default: host:pid:random-start]",
            show_default=False,
        ),
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            "--transport",
            metavar="URL",
            help="Broker for remote steps: amqp://, redis://, redis+cluster://, "
            "nats://, celery+amqp://, celery+redis://  "
            f"[default: ${TRANSPORT_ENV}; none if unset]",
            show_default=False,
        ),
    ] = None,
    reply_queue: Annotated[
        str,
        typer.Option(metavar="QUEUE", help="Queue this service's replies arrive on."),
    ] = "sagakit.replies",
    store_retry: StoreRetryOption = 30.0,
    db_pool: DbPoolOption = 10,
    max_crash_attempts: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Takeovers finding a local step in flight (its process died "
            "running it) before its saga is parked for an operator; 0: never.",
        ),
    ] = 3,
    resend_after: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Send a remote step's command again (same message id: the "
            "participant deduplicates it) when its reply has not come after "
            "as many seconds, and again every as many; 0: never.",
        ),
    ] = 0.0,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            metavar="URL",
            help="POST signed JSON here when a saga ends failed or "
            f"compensation_failed or is stuck (secret: ${WEBHOOK_SECRET_ENV})",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Claim and run sagas from the store (many may run on one database).

    SIGTERM or SIGINT drains: no new saga is claimed, the steps in flight
    finish, every saga is released for another worker, and the worker exits
    0. A second signal stops it at once. With --until-idle, a store that
    stays unwritable past --store-retry (at once if read-only) is an error
    (exit 2)."""
    sagas = sagas_or_fail(target)
    hooks = webhook_hooks(webhook)
    seconds_or_fail("--lease", lease)
    seconds_or_fail("--store-retry", store_retry, zero=True)
    count_or_fail("--max-active", max_active)
    count_or_fail("--db-pool", db_pool)
    if max_crash_attempts:
        count_or_fail("--max-crash-attempts", max_crash_attempts)
    seconds_or_fail("--resend-after", resend_after, zero=True)

    import asyncio
    import signal
    from contextlib import nullcontext

    from sagakit.adapters.transport import open_transport
    from sagakit.cli.progress import Progress, live_progress
    from sagakit.runtime.worker import Worker

    broker = transport or os.environ.get(TRANSPORT_ENV)

    async def work(store: SagaStore) -> int:
        carrier = await open_transport(broker) if broker else None
        runner = Worker(
            store,
            sagas,
            worker_id=worker_id,
            lease=lease,
            max_active=max_active,
            transport=carrier,
            reply_queue=reply_queue,
            store_retry=store_retry,
            max_crash_attempts=max_crash_attempts or None,
            resend_after=resend_after or None,
            hooks=hooks,
        )
        running = asyncio.ensure_future(runner.run(until_idle=until_idle))
        signals = 0

        def on_signal() -> None:
            # first: drain (steps in flight finish, sagas are released);
            # second: stop now (leases run out, or the process is seen dead)
            nonlocal signals
            signals += 1
            if signals == 1:
                err.print("draining: finishing the steps in flight")
                runner.drain()
            else:
                running.cancel()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        err.print(
            f"worker {runner.worker_id} running {', '.join(s.name for s in sagas)}"
        )

        def describe() -> Progress:
            active = runner.orchestrator.active
            label = f"working until idle ({active} running)"
            return Progress(label, runner.claimed, unit="saga(s) claimed")

        try:
            with live_progress(err, describe) if until_idle else nullcontext():
                await running
        except asyncio.CancelledError:
            if signals <= 1:
                raise
            fail("stopped at once on a second signal; the sagas stay resumable")
        finally:
            if carrier is not None:
                await carrier.close()
        return runner.claimed

    claimed = with_store(db_of(ctx), work, pool=db_pool)
    err.print(f"worker stopped after claiming {claimed} saga(s)")


def participant(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:ATTR",
            help="The Participant object, e.g. kitchen.app:kitchen",
        ),
    ],
    *,
    transport: TransportOption = None,
    db_pool: DbPoolOption = 10,
) -> None:
    """Handle a participant service's commands until SIGTERM/SIGINT.

    The store of --db is the participant's own inbox (deduplication)."""
    count_or_fail("--db-pool", db_pool)
    try:
        service = load_participant(target)
    except LoadError as exc:
        fail(str(exc))
    broker = transport or os.environ.get(TRANSPORT_ENV)
    if not broker:
        fail(f"a participant needs a broker: --transport URL or ${TRANSPORT_ENV}")

    import asyncio
    import signal

    from sagakit.adapters.transport import open_transport

    async def work(store: SagaStore) -> int:
        carrier = await open_transport(broker)
        service.attach(carrier, store)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.start()
        err.print(
            f"participant {service.service} handling {', '.join(service.commands)} "
            f"from queue {service.queue}"
        )
        try:
            await stop.wait()
        finally:
            await service.stop()
            await carrier.close()
        return service.handled

    handled = with_store(db_of(ctx), work, pool=db_pool)
    err.print(f"participant stopped after {handled} command(s)")


def register(app: typer.Typer) -> None:
    """Attach ``worker`` and ``participant``."""
    app.command()(worker)
    app.command()(participant)
