"""The ``sagakit`` command: ``demo``, ``list``, ``show`` and ``recover``.

Thin by design: parse the options, call the library, render with rich. This is
the only place that configures logging. Expected failures (unknown id, bad
option value, unreachable store, any :class:`~sagakit.errors.SagaError`) print
one ``error: <reason>`` line to stderr and exit with status 2.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, NoReturn, TypeVar

import typer

from sagakit import __version__
from sagakit.adapters.store import ENV_VAR, database_url
from sagakit.cli import (
    admin,
    dashboard,
    db,
    deploy,
    docs,
    locks,
    recover,
    repair,
    serve,
    workflows,
)
from sagakit.cli.coercion import plain_values
from sagakit.cli.common import (
    EXIT_ERROR,
    PIPE_WIDTH,
    console,
    err,
    fail,
)
from sagakit.cli.common import with_store as with_store_at
from sagakit.cli.helpstyle import plain_metavars
from sagakit.cli.lazytree import LazyGroup, lazy_command
from sagakit.cli.loader import LoadError
from sagakit.engine.status import SagaStatus
from sagakit.errors import SagaError, SagaNotFound, StoreError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sagakit.ports.store import HistoryEntry, SagaRecord, SagaStore

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STATUSES = tuple(s.value for s in SagaStatus)

# Piped output is not squeezed to 80 columns (ids must survive a `grep`);
# $COLUMNS still wins.
out = console(
    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
)


def _error_line(reason: str) -> NoReturn:
    err.print(
        f"error: {' '.join(reason.split())}",
        markup=False,
        highlight=False,
        soft_wrap=True,
        style="red",
    )
    sys.exit(EXIT_ERROR)


class OneLineErrors(LazyGroup):
    """The ``sagakit`` group: every expected failure -- a usage error (unknown
    option, bad value, missing argument) as much as a refusal from the
    library -- is one ``error: ...`` line on stderr and exit status 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        plain_values(self)  # no pydantic to read "--limit 5"
        plain_metavars(self)  # "ID", not "{ID}" nor "ID <str>"
        try:
            code = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except typer.TyperException as exc:  # click's usage errors, Abort
            ctx: Any = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `sagakit`: help
                typer.echo(ctx.get_help() if ctx is not None else str(exc))
                code = 0
            else:
                shown: Any = getattr(exc, "format_message", None)
                reason = shown() if callable(shown) else str(exc) or "aborted"
                hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
                _error_line(f"{reason}{hint}")
        except (SagaError, LoadError) as exc:
            _error_line(str(exc))
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="sagakit",
    help="Run and inspect sagas stored by sagakit.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rich's costs 60-80 ms a --help
)


# a named tuple: a dataclass costs ~1 ms to build, at every command's start
class Settings(NamedTuple):
    db: str | None


# -- logging ---------------------------------------------------------------

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class ExtraFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...``: the fixed message, then the
    ``extra`` fields the library attaches to it."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(
            f"{k}={v}"
            for k, v in vars(record).items()
            if k not in _RECORD_FIELDS and not k.startswith("_")
        )
        return f"{line} {extras}" if extras else line


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(ExtraFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# -- store access ----------------------------------------------------------


def with_store(
    settings: Settings,
    work: Callable[[SagaStore], Awaitable[T]],
    *,
    read_only: bool = False,
) -> T:
    """:func:`sagakit.cli.common.with_store` on the configured store."""
    return with_store_at(settings.db, work, read_only=read_only)


def settings_of(ctx: typer.Context) -> Settings:
    obj: Any = ctx.obj
    return obj if isinstance(obj, Settings) else Settings(None)


# -- commands --------------------------------------------------------------


def _show_version(value: bool) -> None:
    if value:
        out.print(f"sagakit {__version__}", highlight=False)
        raise typer.Exit


@app.callback()
def cli(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help=f"Store URL or SQLite path.  [default: ${ENV_VAR}, else ./sagakit.db]",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help=f"Log to stderr from this level: {', '.join(LOG_LEVELS)}",
        ),
    ] = "WARNING",
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Run and inspect sagas stored by sagakit."""
    if db is not None and not db.strip():
        fail("empty --db: give a store URL or a SQLite path (or leave it out)")
    level = log_level.upper()
    if level not in LOG_LEVELS:
        fail(f"invalid --log-level {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    configure_logging(level)
    ctx.obj = Settings(db)


@app.command()
def demo(ctx: typer.Context) -> None:
    """Run the trip-booking saga twice: one succeeds, one compensates."""
    from rich.markup import escape
    from rich.rule import Rule

    from sagakit.examples.trip import fully_booked_trip, happy_trip, trip_saga
    from sagakit.runtime.orchestrator import Orchestrator

    settings = settings_of(ctx)
    target = database_url(settings.db)

    async def work(store: SagaStore) -> list[SagaRecord]:
        orchestrator = Orchestrator(store, [trip_saga])
        records = []
        for context in (happy_trip(), fully_booked_trip()):
            out.print(
                Rule(
                    f"trip for {context.traveller} to {context.destination}",
                    align="left",
                )
            )
            result = await orchestrator.run(trip_saga, context)
            record = await store.get(result.saga_id)
            history = await store.history(result.saga_id)
            _print_run(record, history)
            records.append(record)
        return records

    out.print(f"Running the trip saga twice on [bold]{target}[/bold]\n")
    records = with_store(settings, work)
    from sagakit.cli.invocation import invocation

    how = invocation()
    prefix = how.command if settings.db is None else f"{how.command} --db {settings.db}"
    failed = next((r for r in records if r.status is not SagaStatus.SUCCEEDED), None)
    example = (failed or records[0]).saga_id[:8]
    out.print(
        f"Next: [bold]{escape(prefix)} show {example}[/bold] for one saga, "
        f"[bold]{escape(prefix)} list[/bold] for all of them.",
        soft_wrap=True,
    )
    if how.activate is not None:
        out.print(
            f"(sagakit is not on your PATH: run [bold]source {escape(how.activate)}"
            "[/bold] once in this shell to type plain sagakit)",
            soft_wrap=True,
        )


def _print_run(record: SagaRecord, history: list[HistoryEntry]) -> None:
    from sagakit.cli import render

    out.print(render.timeline_table(record, history))
    out.print(render.summary(record, history), soft_wrap=True)
    out.print()


@app.command()
def show(
    ctx: typer.Context,
    saga_id: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="Saga id, or a unique prefix of it; or a choreography's "
            "correlation id.",
        ),
    ],
) -> None:
    """Show one saga (outcome, step timeline) or, given a choreography's
    correlation id, its status and event timeline."""
    from sagakit.admin import children_of
    from sagakit.admin import find as find_saga
    from sagakit.cli import render

    async def work(store: SagaStore) -> RenderableType:
        try:
            record = await find_saga(store, saga_id)
        except SagaNotFound:
            report = await choreography_report(store, saga_id)
            if report is None:
                raise
            return report
        history = await store.history(record.saga_id)
        return render.saga_report(record, history, await children_of(store, record))

    out.print(with_store(settings_of(ctx), work, read_only=True))


async def choreography_report(store: SagaStore, ident: str) -> RenderableType | None:
    """The events of correlation id ``ident``, or None if there are none."""
    from sagakit.adapters.store import event_store_for
    from sagakit.choreography import Tracker
    from sagakit.cli import render

    try:
        events = event_store_for(store)
    except StoreError:  # a store without choreography tables
        return None
    tracker = Tracker(events)
    timeline = await tracker.timeline(ident)
    tracked = await tracker.get(ident)
    if not timeline and tracked is None:
        return None
    return render.choreography_report(ident, tracked, timeline)


serve.register(app)
db.register(app, out, None)
admin.register(app, out)
repair.register(app, out)
locks.register(app, out)
recover.register(app, out)
deploy.register(app, out)
workflows.register(app, out)
docs.register(app)
dashboard.register(app)


def main() -> None:
    # what app() runs, each subcommand built when used (typer's excepthook
    # only reprints a traceback: pretty_exceptions_enable=False). A command's
    # imports (a driver, rich's tables) make objects that live until it ends:
    # no collection need walk them (a fiftieth of `sagakit list` on
    # PostgreSQL); a command running an event loop for long turns the
    # collector back on (common.run_async)
    gc.disable()
    try:
        lazy_command(app)(prog_name="sagakit", standalone_mode=True)
    finally:
        # the process ends here: the interpreter's last collection need not
        # walk every object the start-up made (a fifteenth of `sagakit list`)
        gc.freeze()


if __name__ == "__main__":
    main()
