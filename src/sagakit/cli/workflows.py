"""``sagakit workflows list | show``: the instances of workflow-style sagas
(:class:`~sagakit.workflow.WorkflowApp`) kept in the store.

Read-only: the store is opened as it is (never migrated), on ``--db`` or
``$SAGAKIT_DATABASE_URL`` like the other commands. Bad input (an unknown
status, an unknown or ambiguous id, a database without the workflow tables)
is one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from sagakit.adapters.store import (
    database_url,
    migrated_workflow_store,
    open_store_async,
)
from sagakit.cli.common import (
    count_or_fail,
    db_of,
    existing_database_or_fail,
    run_async,
)
from sagakit.errors import SagaNotFound, StoreError
from sagakit.ports.workflow_status import WorkflowStatus
from sagakit.views.input import BadInput

if TYPE_CHECKING:  # a command imports what it runs when it runs
    from rich.console import Console, RenderableType

    from sagakit.ports.store import SagaStore
    from sagakit.ports.workflow_store import WorkflowRecord, WorkflowStore

T = TypeVar("T")

MIN_PREFIX = 6
MAX_LIMIT = 10_000
SHOWN_MATCHES = 3
STATUSES = tuple(s.value for s in WorkflowStatus)

workflows_app = typer.Typer(
    name="workflows",
    help="Inspect workflow instances (WorkflowApp) in the store.",
    no_args_is_help=True,
    rich_markup_mode=None,  # as the sagakit command: see cli.main
)

AppOption = Annotated[
    str | None,
    typer.Option("--app", metavar="NAME", help="Only instances of this app."),
]
StatusOption = Annotated[
    str | None,
    typer.Option(
        "--status", metavar="STATUS", help=f"Only this status: {', '.join(STATUSES)}"
    ),
]


async def workflow_store_for(store: SagaStore, where: str) -> WorkflowStore:
    """The workflow tables of an open saga store, on its connection;
    ``BadInput`` if it has none."""
    try:
        return await migrated_workflow_store(store)
    except StoreError as exc:
        raise BadInput(f"{where} {exc}") from None


@asynccontextmanager
async def open_workflow_store(url: str | None) -> AsyncIterator[WorkflowStore]:
    """The workflow store of ``url`` (``--db``), as it is: never migrated."""
    where = database_url(url).split("@")[-1]
    store = await open_store_async(url, migrate=False)
    try:
        yield await workflow_store_for(store, where)
    finally:
        await store.close()


def _with_workflows(
    ctx: typer.Context, work: Callable[[WorkflowStore], Awaitable[T]]
) -> T:
    existing_database_or_fail(db_of(ctx))

    async def run() -> T:
        async with open_workflow_store(db_of(ctx)) as store:
            return await work(store)

    return run_async(run())


def parse_status(value: str | None) -> WorkflowStatus | None:
    if value is None:
        return None
    try:
        return WorkflowStatus(value.lower())
    except ValueError:
        raise BadInput(
            f"invalid --status {value!r}: use one of {', '.join(STATUSES)}"
        ) from None


async def resolve(
    store: WorkflowStore, ident: str, app: str | None = None
) -> WorkflowRecord:
    """The instance with this id, or with this unique id prefix (>= 6
    characters); an id used by two apps needs ``app``."""
    matches = await store.ids_with_prefix(ident, app=app, limit=SHOWN_MATCHES + 1)
    exact = [m for m in matches if m[1] == ident]
    if not exact and len(ident) < MIN_PREFIX:
        raise SagaNotFound(
            f"no workflow instance with id {ident!r} (an id prefix needs at "
            f"least {MIN_PREFIX} characters)"
        )
    found = exact or matches
    if not found:
        raise SagaNotFound(f"no workflow instance with id or id prefix {ident!r}")
    if len(found) > 1:
        shown = ", ".join(f"{a}/{i}" for a, i in found[:SHOWN_MATCHES])
        more = ", ..." if len(found) > SHOWN_MATCHES else ""
        hint = "; choose one with --app" if exact else ""
        raise BadInput(f"id {ident!r} is ambiguous: {shown}{more}{hint}")
    return await store.get(*found[0])


def register(app: typer.Typer, out: Console) -> None:
    """Attach ``workflows list`` and ``workflows show`` to the main app."""

    @workflows_app.command("list")
    def list_workflows(
        ctx: typer.Context,
        status: StatusOption = None,
        app_name: AppOption = None,
        limit: Annotated[
            int,
            typer.Option("--limit", metavar="N", help="At most this many."),
        ] = 50,
    ) -> None:
        """List workflow instances, newest first."""
        count_or_fail("--limit", limit, MAX_LIMIT)
        wanted = parse_status(status)

        from sagakit.cli import render

        async def work(store: WorkflowStore) -> RenderableType:
            records = await store.list_workflows(
                status=wanted, app=app_name, limit=limit
            )
            counts = await store.count_workflows_by_status(app_name)
            return render.workflows_table(records, counts, time.time())

        out.print(_with_workflows(ctx, work))

    @workflows_app.command("show")
    def show_workflow(
        ctx: typer.Context,
        instance_id: Annotated[
            str,
            typer.Argument(metavar="ID", help="Instance id, or a unique prefix of it."),
        ],
        app_name: AppOption = None,
    ) -> None:
        """Show one instance: its pending call and timer, state and history."""
        from sagakit.cli import render

        async def work(store: WorkflowStore) -> RenderableType:
            record = await resolve(store, instance_id, app_name)
            history = await store.history(record.app, record.instance_id)
            return render.workflow_report(record, history, time.time())

        out.print(_with_workflows(ctx, work))

    app.add_typer(workflows_app)
