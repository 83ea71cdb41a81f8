"""What the commands share: the one-line error exit, the saga definitions
argument, the root ``--db``, and consoles and an event loop that load when
a command uses them (``sagakit --help`` loads neither rich nor asyncio)."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

from sagakit.adapters.transport import ENV_VAR as TRANSPORT_ENV
from sagakit.cli.loader import LoadError, load_sagas

if TYPE_CHECKING:
    from rich.console import Console

    from sagakit.definition.saga import Saga
    from sagakit.hooks import Hooks

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
        help="Broker: amqp://, redis://, redis+cluster://, celery+amqp://, "
        f"celery+redis:// [default: ${TRANSPORT_ENV}]",
        show_default=False,
    ),
]


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on sagakit's event loop (uvloop when installed): asyncio
    and the loop load here, when a command runs, not when the CLI starts."""
    from sagakit.runtime import loop

    return loop.run(main)


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
        is_postgres,
        sqlite_path,
    )
    from sagakit.errors import StoreError

    resolved = database_url(url)
    if resolved == "memory://" or is_postgres(resolved):
        return
    try:
        path = sqlite_path(resolved)
    except StoreError as exc:
        fail(str(exc))
    if path != ":memory:" and not Path(path).exists():
        fail(f"no saga database at {path!r}: nothing to read (see --db)")


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
