"""``sagakit db migrate | status | schema`` (and the ``sagakit migrate`` alias)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

from sagakit.adapters.store import applied_migrations, database_url, open_store_async
from sagakit.cli.common import existing_database_or_fail, run_async
from sagakit.errors import SagaError

if TYPE_CHECKING:
    from rich.console import Console

    from sagakit.adapters.store.sql import Migration

db_app = typer.Typer(
    name="db",
    help="Inspect and migrate the store's schema.",
    no_args_is_help=True,
    rich_markup_mode=None,  # as the sagakit command: see cli.main
)


# a named tuple: a dataclass costs ~1 ms to build, at every command's start
class SchemaStatus(NamedTuple):
    dialect: str
    applied: list[int]
    available: tuple[Migration, ...]

    @property
    def pending(self) -> list[Migration]:
        return [m for m in self.available if m.version not in self.applied]


DIALECTS = ("sqlite", "postgres", "mysql")


def dialect_of(url: str) -> str:
    if url == "memory://":
        raise SagaError("the memory:// store has no schema")
    from sagakit.adapters.store.database import dialect

    return dialect(url)


async def schema_status(url: str | None) -> SchemaStatus:
    from sagakit.adapters.store.sql import migrations

    target = database_url(url)
    dialect = dialect_of(target)
    store = await open_store_async(target, migrate=False)
    try:
        return SchemaStatus(
            dialect, await applied_migrations(store), migrations(dialect)
        )
    finally:
        await store.close()


async def migrate(url: str | None, out: Console) -> list[int]:
    """Apply every pending migration, one progress step each."""
    target = database_url(url)
    dialect = dialect_of(target)
    from rich.progress import Progress

    from sagakit.adapters.store.sql import migrations

    store = await open_store_async(target, migrate=False)
    try:
        pending = [
            m
            for m in migrations(dialect)
            if m.version not in await applied_migrations(store)
        ]
        with Progress(console=out, transient=True) as bar:
            task = bar.add_task("migrating", total=len(pending))

            def step(done: Migration) -> None:
                bar.update(
                    task, advance=1, description=f"{done.version:04d}_{done.name}"
                )

            applied = store.migrate(progress=step)  # type: ignore[attr-defined]
            if inspect.isawaitable(applied):
                applied = await applied
        return list(applied)
    finally:
        await store.close()


def run_migrate(url: str | None, out: Console) -> None:
    applied = run_async(migrate(url, out))
    where = database_url(url).split("@")[-1]
    if applied:
        names = ", ".join(f"{v:04d}" for v in applied)
        out.print(f"applied {len(applied)} migration(s) to {where}: {names}")
    else:
        out.print(f"{where} is up to date")


def register(app: typer.Typer, out: Console, settings_db: object) -> None:
    """Attach ``db`` and the ``migrate`` alias to the main app."""

    def db_of(ctx: typer.Context) -> str | None:
        value = getattr(ctx.find_root().obj, "db", None)
        return value if isinstance(value, str) else None

    @db_app.command("migrate")
    def db_migrate(ctx: typer.Context) -> None:
        """Apply pending schema migrations."""
        run_migrate(db_of(ctx), out)

    @db_app.command("status")
    def db_status(ctx: typer.Context) -> None:
        """Show applied and pending migrations (a SQLite file that does not
        exist is an error, not created)."""
        existing_database_or_fail(db_of(ctx))
        status = run_async(schema_status(db_of(ctx)))
        for m in status.available:
            mark = "applied" if m.version in status.applied else "pending"
            out.print(f"{m.version:04d}_{m.name}  {mark}", highlight=False)
        out.print(
            f"{status.dialect}: {len(status.applied)} applied, "
            f"{len(status.pending)} pending",
            highlight=False,
        )

    @db_app.command("schema")
    def db_schema(
        ctx: typer.Context,
        dialect: Annotated[
            str | None,
            typer.Option(
                metavar="DIALECT",
                help="sqlite, postgres or mysql.  [default: that of --db]",
            ),
        ] = None,
    ) -> None:
        """Print the full current schema (schema.sql)."""
        chosen = dialect or dialect_of(database_url(db_of(ctx)))
        if chosen not in DIALECTS:
            raise SagaError(
                f"unknown dialect {chosen!r}: use sqlite, postgres or mysql"
            )
        from sagakit.adapters.store.sql import schema

        out.print(schema(chosen), markup=False, highlight=False)

    @app.command("migrate")
    def migrate_alias(ctx: typer.Context) -> None:
        """Apply pending schema migrations (same as: sagakit db migrate)."""
        run_migrate(db_of(ctx), out)

    app.add_typer(db_app)
