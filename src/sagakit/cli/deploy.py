"""``sagakit deploy-check MODULE[:ATTR]``: would deploying these definitions
strand a live instance?

Read-only: it opens the store without migrating it and never creates a
database (a SQLite file that does not exist is an error). Exit status: 0 when
every live instance can continue or be migrated, 1 when some must drain on
their old version first, 2 with a one-line reason on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sagakit.adapters.store import applied_migrations, database_url, open_store_async
from sagakit.adapters.store.database import is_postgres, sqlite_path
from sagakit.cli.common import SagasArgument, db_of, fail, sagas_or_fail
from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaStatus
from sagakit.errors import SagaError
from sagakit.ports.store import SagaStore
from sagakit.runtime import loop as event_loop
from sagakit.runtime.deploy import DeployPlan, LiveCounts, deploy_plan

VERSIONS_MIGRATION = 8
"""The schema migration that records each instance's definition version."""

_LIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
_STYLES = {"continue": "green", "migrate": "yellow", "drain": "bold red"}


def existing_database(url: str | None) -> str:
    """The URL of ``--db``, if it names a database that exists (opening a
    SQLite file that does not would create it)."""
    target = database_url(url)
    if not is_postgres(target) and target != "memory://":
        path = sqlite_path(target)
        if path != ":memory:" and not Path(path).is_file():
            raise SagaError(f"no database at {path!r}")
    return target


async def live_counts(target: str, sagas: list[Saga[Any]]) -> LiveCounts:
    """Unfinished instances by saga, version and fingerprint, read as the
    store is (a schema from before versions: all are v1 of unknown shape)."""
    store = await open_store_async(target, migrate=False)
    try:
        applied = await applied_migrations(store)
        if target != "memory://" and not applied:
            return {}  # sagakit never wrote here: nothing is live
        if target == "memory://" or VERSIONS_MIGRATION in applied:
            return await store.live_definitions()
        return await _counts_before_versions(store, sagas)
    finally:
        await store.close()


async def _counts_before_versions(
    store: SagaStore, sagas: list[Saga[Any]]
) -> LiveCounts:
    counts: dict[tuple[str, int, str | None], int] = {}
    names = {saga.name for saga in sagas}
    for name in sorted(names):
        found = await store.count_by_status(name)
        live = sum(found.get(status, 0) for status in _LIVE)
        if live:
            counts[(name, 1, None)] = live
    every = await store.count_by_status()
    others = sum(every.get(status, 0) for status in _LIVE) - sum(counts.values())
    if others:
        counts[("(sagas not in the code)", 1, None)] = others
    return counts


def plan_table(plan: DeployPlan) -> Table:
    table = Table(title="live instances per saga version", title_justify="left")
    for column in ("saga", "version", "live", "continue", "migrate", "drain"):
        justify = "left" if column == "saga" else "right"
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("why", overflow="fold")
    for row in plan.rows:
        counts = [
            Text(str(n), style=_STYLES[verdict] if n else "dim")
            for verdict, n in row.counts.items()
        ]
        table.add_row(
            row.saga, f"v{row.version}", str(row.live), *counts, "; ".join(row.reasons)
        )
    return table


def register(app: typer.Typer, out: Console) -> None:
    @app.command("deploy-check")
    def deploy_check(
        ctx: typer.Context,
        target: SagasArgument,
        *,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the plan as JSON (for CI).")
        ] = False,
    ) -> None:
        """Compare the definitions in MODULE with the live instances in the
        store: exit 1 if deploying them would strand an instance (it must
        drain on its old version first), 0 otherwise. Read-only."""
        sagas = sagas_or_fail(target)
        try:
            target = existing_database(db_of(ctx))
            live = event_loop.run(live_counts(target, sagas))
        except SagaError as exc:
            fail(str(exc))
        plan = deploy_plan(sagas, live)
        if as_json:
            typer.echo(json.dumps(plan.to_json(), indent=2))
        elif not plan.rows:
            out.print("no live instances: nothing to strand")
        else:
            out.print(plan_table(plan))
            verdict = (
                "safe to deploy"
                if plan.safe
                else f"{plan.stranded} instance(s) would be stranded: keep their "
                "versions registered (or let them drain) before deploying"
            )
            out.print(verdict, style="green" if plan.safe else "bold red")
        if not plan.safe:
            raise typer.Exit(1)
