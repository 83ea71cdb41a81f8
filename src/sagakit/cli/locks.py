"""``sagakit locks``: who holds which semantic lock, who queues for it and
for how long (read-only: it creates nothing); ``sagakit locks release KEY
--reason TEXT [--as OPERATOR]`` takes a key from the saga that holds it,
the reason and the operator in that saga's history.

Thin: parse, call :mod:`sagakit.admin`, render. Bad input and refusals print
one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from sagakit.cli.admin import operator_name
from sagakit.cli.common import count_or_fail, db_of, fail, with_store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from sagakit.ports.locks import LockTable
    from sagakit.ports.store import SagaStore


T = TypeVar("T")

OPERATOR_ENV = "SAGAKIT_OPERATOR"

locks_app = typer.Typer(
    name="locks",
    help="List semantic locks: holders, waiters and ages (or release one).",
    invoke_without_command=True,
    rich_markup_mode=None,  # as the sagakit command: see cli.main
)


def locks_table(view: dict[str, Any]) -> Table:
    """Holders, then waiters (place 1 is next), by key."""
    from rich.markup import escape
    from rich.table import Table

    holders, waiters = view["holders"], view["waiters"]
    table = Table(
        title=f"{len(holders)} lock(s) held, {len(waiters)} waiting",
        title_justify="left",
    )
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("saga", no_wrap=True)
    table.add_column("step")
    table.add_column("state", no_wrap=True)
    table.add_column("for", justify="right", no_wrap=True)
    for h in holders:
        queued = f" ({h['waiting']} waiting)" if h["waiting"] else ""
        held = f"held{queued}"
        if h["held_up"]:  # the queue waits for an operator
            held = f"[red]{escape(held)}, {escape(h['held_up'])}[/red]"
        table.add_row(h["key"], h["saga_id"], h["step"], held, h["age"])
    for w in waiters:
        place = f"waiting #{w['place']}"
        table.add_row(w["key"], w["saga_id"], w["step"], place, w["age"])
    return table


def register(app: typer.Typer, out: Console) -> None:
    """Attach ``sagakit locks`` (and ``locks release``)."""

    @locks_app.callback()
    def listing(
        ctx: typer.Context,
        prefix: Annotated[
            str | None,
            typer.Option("--prefix", metavar="TEXT", help="Only keys starting so."),
        ] = None,
        saga: Annotated[
            str | None,
            typer.Option("--saga", metavar="ID", help="Only this saga's locks."),
        ] = None,
        limit: Annotated[
            int,
            typer.Option("--limit", metavar="N", help="At most this many of each."),
        ] = 100,
    ) -> None:
        """List the holders and waiters of semantic locks, by key."""
        if ctx.invoked_subcommand is not None:
            return
        count_or_fail("--limit", limit)
        from sagakit import admin
        from sagakit.views.locks import locks_json

        async def look(store: SagaStore) -> tuple[LockTable, dict[str, str]]:
            found = await admin.locks(store, prefix=prefix, saga_id=saga, limit=limit)
            return found, await admin.held_up(store, found)

        found, held_up = with_store(db_of(ctx), look, read_only=True)
        out.print(locks_table(locks_json(found, time.time(), held_up)))

    @locks_app.command("release")
    def release(
        ctx: typer.Context,
        key: Annotated[str, typer.Argument(metavar="KEY", help="The locked key.")],
        *,
        reason: Annotated[
            str,
            typer.Option("--reason", metavar="TEXT", help="Why (kept in the history)."),
        ],
        operator: Annotated[
            str | None,
            typer.Option(
                "--as",
                metavar="OPERATOR",
                help=f"Who releases it (default: ${OPERATOR_ENV}, else user@cli).",
            ),
        ] = None,
    ) -> None:
        """Take KEY from the saga that holds it (it goes on without it)."""
        if not reason.strip():
            fail("--reason must say why (it is kept in the saga's history)")
        by = operator or os.environ.get(OPERATOR_ENV) or operator_name()
        from sagakit import admin

        done = with_store(
            db_of(ctx),
            lambda store: admin.release_lock(store, key, reason=reason, by=by),
            read_only=True,
        )
        out.print(
            f"released {key} from saga {done.record.saga_id} "
            f"({done.record.saga_name}) by {by}",
            highlight=False,
            soft_wrap=True,
        )

    app.add_typer(locks_app)
