"""``sagakit deploy-check MODULE[:ATTR]``: would deploying these definitions
strand a live instance? And ``sagakit migrate-instances MODULE[:ATTR]``,
which applies the migrations they declare.

deploy-check judges the sagas, workflow apps and choreographies MODULE
defines (those of its event buses too). Live saga instances are judged
always; workflow instances when MODULE defines at least one workflow app
(an app it lacks then strands its instances); choreographies only under the
names MODULE declares (a service that does not declare one handles its
events without a version check). It is read-only: it opens the store
without migrating it and never creates a database (a SQLite file that does
not exist is an error). Exit status: 0 when every live instance can
continue or be migrated, 1 when some must drain on their old version first,
2 with a one-line reason on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from sagakit.adapters.store import (
    applied_migrations,
    database_url,
    event_store_for,
    open_store_async,
    workflow_store_for,
)
from sagakit.adapters.store.database import (
    WORKFLOW_MIGRATION,
    is_server,
    schema_has,
    sqlite_path,
)
from sagakit.cli.admin import OperatorOption, ReasonOption, who_and_why
from sagakit.cli.common import (
    SagasArgument,
    db_of,
    err,
    fail,
    run_async,
    sagas_or_fail,
)
from sagakit.cli.loader import Definitions, LoadError, load_definitions
from sagakit.engine.status import SagaStatus
from sagakit.errors import SagaError

if TYPE_CHECKING:  # imported by the commands that use them
    from rich.console import Console
    from rich.table import Table

    from sagakit.definition.saga import Saga
    from sagakit.ports.event_store import LiveChoreographies
    from sagakit.ports.store import SagaStore
    from sagakit.ports.workflow_store import LiveWorkflows
    from sagakit.runtime.deploy import DeployPlan, DeployRow, LiveCounts

VERSIONS_MIGRATION = 8
"""The schema migration that records each instance's definition version."""
CHOREOGRAPHY_MIGRATION = 5
"""The schema migration that creates the choreography tables."""

DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Only say what would move.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the plan as JSON (for CI).")
]

_LIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
_STYLES = {"continue": "green", "migrate": "yellow", "drain": "bold red"}


def existing_database(url: str | None) -> str:
    """The URL of ``--db``, if it names a database that exists (opening a
    SQLite file that does not would create it)."""
    target = database_url(url)
    if not is_server(target) and target != "memory://":
        path = sqlite_path(target)
        if path != ":memory:" and not Path(path).is_file():
            raise SagaError(f"no database at {path!r}")
    return target


# a named tuple: a dataclass costs ~1 ms to build, at every command's start
class Live(NamedTuple):
    """Unfinished instances of each kind, by definition."""

    sagas: LiveCounts
    workflows: LiveWorkflows
    choreographies: LiveChoreographies


async def live_counts(target: str, sagas: list[Saga[Any]]) -> Live:
    """Unfinished instances by kind, name, version and fingerprint, read as
    the store is (a schema from before versions: all are v1 of unknown
    shape; one without workflow or choreography tables: none of those)."""
    store = await open_store_async(target, migrate=False)
    try:
        applied = await applied_migrations(store)
        if target == "memory://" or not applied:
            return Live({}, {}, {})  # sagakit never wrote here: nothing is live
        if await schema_has(store, VERSIONS_MIGRATION):
            sagas_live: LiveCounts = await store.live_definitions()
        else:
            sagas_live = await _counts_before_versions(store, sagas)
        workflows: LiveWorkflows = {}
        if await schema_has(store, WORKFLOW_MIGRATION):
            workflows = await workflow_store_for(store).live_workflows()
        choreographies: LiveChoreographies = {}
        if await schema_has(store, CHOREOGRAPHY_MIGRATION):
            choreographies = await event_store_for(store).live_choreographies()
        return Live(sagas_live, workflows, choreographies)
    finally:
        await store.close()


def plan_of(code: Definitions, live: Live) -> DeployPlan:
    """The verdicts on every live instance if ``code`` were deployed."""
    from sagakit.choreography import versions as choreography_versions
    from sagakit.runtime.deploy import deploy_plan
    from sagakit.workflow import versions as workflow_versions

    plan = deploy_plan(code.sagas, live.sagas)
    if code.workflows:
        plan.workflows = workflow_versions.deploy_rows(code.workflows, live.workflows)
    plan.choreographies = choreography_versions.deploy_rows(
        code.choreographies, live.choreographies
    )
    return plan


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


def plan_table(rows: list[DeployRow], kind: str, title: str) -> Table:
    """One kind's rows: ``kind`` names the first column (saga, app...)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"live instances per {title} version", title_justify="left")
    for column in (kind, "version", "live", "continue", "migrate", "drain"):
        justify = "left" if column == kind else "right"
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("why", overflow="fold")
    for row in rows:
        counts = [
            Text(str(n), style=_STYLES[verdict] if n else "dim")
            for verdict, n in row.counts.items()
        ]
        table.add_row(
            row.name, f"v{row.version}", str(row.live), *counts, "; ".join(row.reasons)
        )
    return table


def plan_tables(plan: DeployPlan) -> list[Table]:
    """A table per kind that has live instances."""
    kinds = (
        (plan.rows, "saga", "saga"),
        (plan.workflows, "app", "workflow app"),
        (plan.choreographies, "choreography", "choreography"),
    )
    return [plan_table(rows, kind, title) for rows, kind, title in kinds if rows]


async def migrate_instances(
    url: str | None,
    sagas: list[Saga[Any]],
    *,
    by: str,
    reason: str,
    dry_run: bool,
) -> tuple[list[str], list[str]]:
    """Apply the declared migrations to every live instance they cover, as
    operator ``by`` for ``reason`` (in each one's history): the ids moved,
    and one line per instance a migration refused."""
    from sagakit.runtime.clock import SystemClock
    from sagakit.runtime.migrate import migratable, migrate_instance
    from sagakit.runtime.registry import Registry

    registry = Registry(sagas)
    store = await open_store_async(url)
    moved: list[str] = []
    refused: list[str] = []
    try:
        for saga_id in await store.unfinished(registry.names(), limit=1_000_000):
            record = await store.get(saga_id)
            if not migratable(registry, record, auto_only=False):
                continue
            if dry_run:
                moved.append(saga_id)
                continue
            try:
                await migrate_instance(
                    store, registry, record, clock=SystemClock(), by=by, reason=reason
                )
            except SagaError as exc:
                refused.append(f"{saga_id}: {exc}")
            else:
                moved.append(saga_id)
    finally:
        await store.close()
    return moved, refused


def register(app: typer.Typer, out: Console) -> None:
    _add_deploy_check(app, out)
    _add_migrate_instances(app, out)


def _add_migrate_instances(app: typer.Typer, out: Console) -> None:
    @app.command("migrate-instances")
    def migrate(
        ctx: typer.Context,
        target: SagasArgument,
        dry_run: DryRunOption = False,
        operator: OperatorOption = None,
        reason: ReasonOption = None,
    ) -> None:
        """Move live instances of versions no longer in MODULE to the version
        that declares a migration from theirs: who (--as or
        $SAGAKIT_OPERATOR) and why (--reason), both needed unless --dry-run,
        go into their history. Exit 1 if a migration was refused."""
        if dry_run:
            by, why = "", ""
        else:
            by, why = who_and_why(operator, reason)
        sagas = sagas_or_fail(target)
        work = migrate_instances(db_of(ctx), sagas, by=by, reason=why, dry_run=dry_run)
        try:
            moved, refused = run_async(work)
        except SagaError as exc:
            fail(str(exc))
        verb = "would migrate" if dry_run else "migrated"
        out.print(f"{verb} {len(moved)} instance(s)")
        for saga_id in moved:
            out.print(f"  {saga_id}", highlight=False)
        for line in refused:
            err.print(f"refused: {line}", markup=False, highlight=False)
        if refused:
            raise typer.Exit(1)


def _add_deploy_check(app: typer.Typer, out: Console) -> None:
    @app.command("deploy-check")
    def check(
        ctx: typer.Context, target: SagasArgument, as_json: JsonOption = False
    ) -> None:
        """Compare the sagas, workflow apps and choreographies in MODULE with
        the live instances in the store: exit 1 if deploying them would
        strand an instance (it must drain on its old version first), 0
        otherwise. Read-only."""
        try:
            code = load_definitions(target)
            url = existing_database(db_of(ctx))
            live = run_async(live_counts(url, code.sagas))
            plan = plan_of(code, live)
        except (LoadError, SagaError) as exc:
            fail(str(exc))
        if as_json:
            typer.echo(json.dumps(plan.to_json(), indent=2))
        elif not plan.every_row:
            out.print("no live instances: nothing to strand")
        else:
            for table in plan_tables(plan):
                out.print(table)
            verdict = (
                "safe to deploy"
                if plan.safe
                else f"{plan.stranded} instance(s) would be stranded: keep their "
                "versions registered (or let them drain) before deploying"
            )
            out.print(verdict, style="green" if plan.safe else "bold red")
        if not plan.safe:
            raise typer.Exit(1)
