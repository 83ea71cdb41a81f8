"""``sagakit dlq list|replay``: a queue's dead letters on the broker, read
and moved back (:mod:`sagakit.admin`'s ``dead_letters`` and
``replay_dead_letters``). Thin: parse, call, render; bad input and
refusals print one ``error: ...`` line and exit with status 2."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from sagakit.adapters.transport import ENV_VAR as TRANSPORT_ENV
from sagakit.cli.common import (
    LimitOption,
    TransportOption,
    count_or_fail,
    fail,
    run_async,
)
from sagakit.cli.loader import LoadError
from sagakit.errors import SagaError

if TYPE_CHECKING:  # a command imports what it runs when it runs
    from rich.console import Console
    from rich.table import Table

    from sagakit import admin
    from sagakit.ports.transport import Transport

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Inspect and replay a queue's dead letters.",
    no_args_is_help=True,
    rich_markup_mode=None,  # as the sagakit command: see cli.main
)

DeadLetterQueue = Annotated[
    str, typer.Argument(metavar="QUEUE", help="The queue the letters came from.")
]


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return run_async(work())
    except (SagaError, LoadError) as exc:
        fail(str(exc))


def _with_transport(url: str | None, work: Callable[[Transport], Awaitable[T]]) -> T:
    broker = url or os.environ.get(TRANSPORT_ENV)
    if not broker:
        fail(f"dead letters live on a broker: --transport URL or ${TRANSPORT_ENV}")
    if broker.lower().startswith("memory:"):
        fail("the in-process transport's dead letters live only in its own process")

    from sagakit.adapters.transport import open_transport

    async def run() -> T:
        carrier = await open_transport(broker)
        try:
            return await work(carrier)
        finally:
            await carrier.close()

    return _run(run)


async def _known_queue(carrier: Transport, queue: str) -> None:
    """A SagaError if the broker says it has no such queue."""
    from sagakit import admin

    if await admin.has_queue(carrier, queue) is False:
        raise SagaError(
            f"no queue {queue!r} on the broker: nothing consumes it and "
            "nothing was dead-lettered from it (check the name)"
        )


def dead_letters_table(letters: Sequence[admin.DeadLetterInfo], queue: str) -> Table:
    from rich.table import Table
    from rich.text import Text

    from sagakit.views.format import local_time

    table = Table(
        title=f"{len(letters)} dead letter(s) of {queue}", title_justify="left"
    )
    table.add_column("#", justify="right")
    table.add_column("time", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("message id", no_wrap=True)
    table.add_column("saga", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for n, info in enumerate(letters, start=1):
        dead_at = info.letter.dead_at
        table.add_row(
            str(n),
            local_time(dead_at) if dead_at else "",
            info.message_type or Text("undecodable", style="red"),
            info.message_id or "",
            info.saga_id or "",
            info.letter.reason,
        )
    return table


def register(app: typer.Typer, out: Console) -> None:
    """Attach ``dlq list`` and ``dlq replay``."""

    @dlq_app.command("list")
    def dlq_list(
        queue: DeadLetterQueue,
        transport: TransportOption = None,
        limit: LimitOption = 100,
    ) -> None:
        """Show a queue's dead letters, oldest first (they stay where they are).
        A queue the broker does not have is an error (it is not created)."""
        from sagakit import admin

        count_or_fail("--limit", limit)

        async def read(carrier: Transport) -> list[admin.DeadLetterInfo]:
            await _known_queue(carrier, queue)
            return await admin.dead_letters(carrier, queue, limit=limit)

        out.print(dead_letters_table(_with_transport(transport, read), queue))

    @dlq_app.command("replay")
    def dlq_replay(
        queue: DeadLetterQueue,
        transport: TransportOption = None,
        limit: LimitOption = 100,
    ) -> None:
        """Move dead letters back to their queue, oldest first (fix the handler
        first)."""
        count_or_fail("--limit", limit)
        from rich.progress import Progress

        from sagakit import admin

        with Progress(console=out, transient=True) as bar:
            task = bar.add_task(f"replaying {queue}", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            async def replay(carrier: Transport) -> int:
                await _known_queue(carrier, queue)
                return await admin.replay_dead_letters(
                    carrier, queue, limit=limit, progress=step
                )

            moved = _with_transport(transport, replay)
        out.print(f"replayed {moved} dead letter(s) to {queue}", highlight=False)

    app.add_typer(dlq_app)
