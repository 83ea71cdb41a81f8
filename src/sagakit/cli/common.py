"""What the commands share: the one-line error exit, the saga definitions
argument, the root ``--db``, and consoles and an event loop that load when
a command uses them (``sagakit --help`` loads neither rich nor asyncio)."""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

from sagakit.adapters.transport import ENV_VAR as TRANSPORT_ENV
from sagakit.cli.loader import LoadError, load_sagas

if TYPE_CHECKING:
    from rich.console import Console

    from sagakit.definition.saga import Saga
    from sagakit.hooks import Hooks
    from sagakit.ports.store import SagaStore

T = TypeVar("T")

EXIT_ERROR = 2


class LazyConsole:
    """Stands for a rich ``Console(**options)`` made when first used."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._made: Console | None = None

    def real(self) -> Console:
        if self._made is None:
            from rich.console import Console

            self._made = Console(**self._options)
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)

    def __enter__(self) -> Console:  # rich's Live enters its console
        return self.real().__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.real().__exit__(kind, exc, tb)


def console(**options: Any) -> Console:
    """A rich ``Console(**options)``, made (and rich imported) on first use."""
    return cast("Console", LazyConsole(**options))


err = console(stderr=True, soft_wrap=True)  # one log line stays one line

PIPE_WIDTH = 160
"""The width of standard output when it is not a terminal, unless
``$COLUMNS`` says: not squeezed to rich's 80, so that ids survive a ``grep``."""

SagasArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODULE[:ATTR]",
        help="Where the saga definitions live: myapp.sagas or myapp.sagas:trip",
    ),
]

TransportOption = Annotated[
    str | None,
    typer.Option(
        "--transport",
        metavar="URL",
        help="Broker: amqp://, redis://, redis+cluster://, nats://, celery+amqp://, "
        f"celery+redis://  [default: ${TRANSPORT_ENV}]",
        show_default=False,
    ),
]

StoreRetryOption = Annotated[
    float,
    typer.Option(
        "--store-retry",
        metavar="SECONDS",
        help="How long a failing save is retried before its saga is left "
        "resumable (a read-only store: not at all).",
    ),
]


POOL_ENV = "SAGAKIT_DB_POOL"
"""Where ``--db-pool`` is read from when the option is not given."""

DbPoolOption = Annotated[
    int,
    typer.Option(
        "--db-pool",
        metavar="N",
        envvar=POOL_ENV,
        help="Most connections this process opens to a PostgreSQL or MySQL "
        "store at once (SQLite: ignored).",
    ),
]


def run_async(main: Coroutine[Any, Any, T], *, brief: bool = False) -> T:
    """Run ``main`` on sagakit's event loop (uvloop when installed; for a
    ``brief`` run, asyncio's unless uvloop is asked for): asyncio and the
    loop load here, when a command runs, not when the CLI starts. Unless
    ``brief``, the garbage collector (off while the CLI starts: see
    ``main.main``) is turned back on: a worker runs for days."""
    from sagakit.runtime import loop

    if not brief:
        gc.enable()
    return loop.run(main, brief=brief)


LimitOption = Annotated[
    int, typer.Option("--limit", metavar="N", help="At most this many.")
]

MOST = 1_000_000
"""Largest count an option takes (``--limit``, ``--max-active``): beyond it
a database's integers overflow (SQLite), and no process holds that many."""
MAX_SECONDS = 7 * 86400.0
"""Longest duration an option takes (``--lease``, ``--store-retry``): a week."""


def count_or_fail(option: str, value: int, most: int = MOST) -> int:
    """``value`` if it is 1 to ``most``; else the command ends saying so, in
    the same words for every count option."""
    if value < 1:
        fail(f"invalid {option} {value}: it must be at least 1")
    if value > most:
        fail(f"invalid {option} {value}: it must be at most {most}")
    return value


def seconds_or_fail(option: str, value: float, *, zero: bool = False) -> float:
    """``value`` if it is a finite number of seconds above 0 (or 0, with
    ``zero``) and at most :data:`MAX_SECONDS`; else the command ends saying
    so (``inf``, ``nan`` and ``1e300`` are refused)."""
    low = "0 or more" if zero else "more than 0"
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        fail(f"invalid {option} {value}: use a number of seconds, {low}")
    if value > MAX_SECONDS:
        fail(f"invalid {option} {value}: it must be at most {MAX_SECONDS:.0f} (a week)")
    return value


def run_read(url: str | None, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a read-only command's coroutine (``make()``) on the store of
    ``url``. A SQLite (or in-memory) store never waits: its coroutine runs to
    its end at once, with no event loop, and asyncio is not even imported
    (a sixth of ``sagakit list``'s start-up). Should one wait or want a
    running loop all the same, it is run again from the start on sagakit's
    loop: a read can be. PostgreSQL's run on a brief loop (asyncio's: a
    few statements do not pay uvloop's import back)."""
    from sagakit.adapters.store.database import database_url, is_server

    if is_server(database_url(url)):
        return run_async(make(), brief=True)
    work = make()
    try:
        work.send(None)
    except StopIteration as done:
        return cast("T", done.value)
    except RuntimeError:  # it wanted a running loop after all
        pass
    else:
        work.close()  # it waited
    return run_async(make())


def fail(reason: str) -> NoReturn:
    """End the command with ``error: <reason>`` (red on a terminal), status 2."""
    err.print(
        f"error: {reason}", markup=False, highlight=False, soft_wrap=True, style="red"
    )
    raise typer.Exit(EXIT_ERROR)


def fail_plain(reason: str) -> NoReturn:
    """End the command with ``error: <reason>`` on one plain line, status 2."""
    typer.echo(f"error: {' '.join(reason.split())}", err=True)
    raise typer.Exit(EXIT_ERROR)


def sagas_or_fail(target: str) -> list[Saga[Any]]:
    """The sagas ``target`` names, or the command ends with why not."""
    try:
        return load_sagas(target)
    except LoadError as exc:
        fail(str(exc))


def db_of(ctx: typer.Context) -> str | None:
    """The root ``--db`` (None: ``$SAGAKIT_DATABASE_URL`` or the default)."""
    value = getattr(ctx.find_root().obj, "db", None)
    return value if isinstance(value, str) else None


def existing_database_or_fail(url: str | None) -> None:
    """A read-only command's check: a SQLite file that is not there is a
    one-line error (exit 2), not a new empty database."""
    from pathlib import Path

    from sagakit.adapters.store.database import (
        database_url,
        is_server,
        sqlite_path,
    )
    from sagakit.errors import StoreError

    resolved = database_url(url)
    if resolved == "memory://" or is_server(resolved):
        return
    try:
        path = sqlite_path(resolved)
    except StoreError as exc:
        fail(str(exc))
    if path != ":memory:" and not Path(path).is_file():
        fail(f"no saga database at {path!r}: nothing to read (see --db)")


async def open_read_only(url: str | None) -> SagaStore:
    """The store of ``url`` as it is, for a read-only command: never
    migrated (call :func:`existing_database_or_fail` first: never created);
    a ``StoreError`` if its schema lacks migrations this sagakit needs."""
    from sagakit.adapters.store import (
        applied_migrations,
        database_url,
        open_store_async,
    )
    from sagakit.adapters.store.database import dialect
    from sagakit.adapters.store.sql import migration_versions
    from sagakit.errors import StoreError

    store = await open_store_async(url, migrate=False)
    target = database_url(url)
    if target == "memory://":
        return store
    try:
        applied = set(await applied_migrations(store))
        pending = [v for v in migration_versions(dialect(target)) if v not in applied]
    except BaseException:
        await store.close()
        raise
    if pending:
        await store.close()
        where = target.split("@")[-1]
        raise StoreError(
            f"{where} lacks {len(pending)} schema migration(s) this sagakit "
            "needs, and a read-only command applies none: sagakit db migrate"
        )
    return store


def with_store(
    url: str | None,
    work: Callable[[SagaStore], Awaitable[T]],
    *,
    read_only: bool = False,
    refused: tuple[type[Exception], ...] = (),
    pool: int | None = None,
) -> T:
    """Open the store of ``url`` (``--db``), run ``work`` on it, close it;
    a ``SagaError`` (or what ``refused`` adds) ends the command with one
    ``error: ...`` line (exit 2). ``read_only``: a SQLite file that does not
    exist is refused (exit 2), not created, and the schema is not migrated
    (:func:`open_read_only`). ``pool``: the most connections to a server
    (``--db-pool``; None: the store's default)."""
    from sagakit.adapters.store import open_store_async
    from sagakit.errors import SagaError

    if read_only:
        existing_database_or_fail(url)

    async def run() -> T:
        if read_only:
            store = await open_read_only(url)
        else:
            store = await open_store_async(url, max_size=pool)
        try:
            return await work(store)
        finally:
            await store.close()

    caught: tuple[type[Exception], ...] = (SagaError, LoadError, *refused)
    try:
        return run_read(url, run) if read_only else run_async(run())
    except caught as exc:
        fail(str(exc))


WEBHOOK_SECRET_ENV = "SAGAKIT_WEBHOOK_SECRET"  # noqa: S105 - a variable's name
"""Where ``--webhook`` finds the secret its requests are signed with."""


def webhook_hooks(url: str | None) -> Hooks | None:
    """``--webhook URL``: hooks posting to it, signed with the secret in
    ``$SAGAKIT_WEBHOOK_SECRET`` (never an option: ``ps`` would show it)."""
    if url is None:
        return None
    secret = os.environ.get(WEBHOOK_SECRET_ENV)
    if not secret:
        fail(f"--webhook needs ${WEBHOOK_SECRET_ENV}, the secret to sign with")
    from sagakit.hooks import Hooks

    return Hooks(webhook=url, secret=secret)
