"""``sagakit dashboard``: serve the web dashboard with uvicorn.

FastAPI, Jinja2 and uvicorn come with the ``dashboard`` extra and are imported
only when the command runs. Without a token (``--token``,
``$SAGAKIT_DASHBOARD_TOKEN`` or ``--tokens-file``) or without ``--sagas`` the
dashboard starts read-only and says so.

It listens on loopback unless ``--allow-remote`` is given, which needs a
token (every page then needs a signed-in operator) and, for a wildcard
address, the names clients use (``--allowed-host``): requests naming another
host are refused (DNS rebinding). Tokens shorter than 16 characters are
refused. The socket is bound before the server starts, so a port in use or
an address that does not resolve is one ``error: <reason>`` line (exit 2),
as is every other expected failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagakit.adapters.store import open_store_async
from sagakit.cli.common import (
    DbPoolOption,
    count_or_fail,
    db_of,
    existing_database_or_fail,
    run_async,
)
from sagakit.cli.common import fail_plain as _fail
from sagakit.cli.loader import LoadError, load_sagas
from sagakit.errors import SagaError

if TYPE_CHECKING:  # socket (and ipaddress) load when the dashboard starts
    import socket

    from sagakit.definition.saga import Saga

TOKEN_ENV = "SAGAKIT_DASHBOARD_TOKEN"  # noqa: S105 - a variable name, no secret
MIN_TOKEN = 16
MAX_PORT = 65535
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 - names to recognise, not to bind


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening; ``OSError`` (a name
    that does not resolve, a port in use) says why not."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def is_loopback(host: str) -> bool:
    """Every address ``host`` resolves to is a loopback one (``OSError``
    if it does not resolve)."""
    import ipaddress
    import socket

    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return all(ipaddress.ip_address(entry[4][0]).is_loopback for entry in found)


def read_tokens(path: Path) -> dict[str, str]:
    """``{operator: token}`` from a file of ``NAME TOKEN`` lines (``#``
    starts a comment)."""
    tokens: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, token = line.partition(" ")
        if not token.strip():
            raise SagaError(f"{path}:{n}: expected 'NAME TOKEN'")
        if name in tokens:
            raise SagaError(f"{path}:{n}: operator {name!r} is there twice")
        tokens[name] = token.strip()
    if not tokens:
        raise SagaError(f"{path} names no operator")
    return tokens


async def serve(
    db: str | None,
    sagas: list[Saga[Any]],
    token: str | dict[str, str] | None,
    listening: socket.socket,
    *,
    pool: int | None = None,
    **options: Any,
) -> None:
    """Open the store (at most ``pool`` connections to a server), serve the
    dashboard on ``listening`` until SIGINT/SIGTERM, close both.
    ``options`` go to ``create_app``."""
    import uvicorn  # the dashboard extra

    from sagakit.dashboard import create_app

    try:
        store = await open_store_async(db, max_size=pool)
        try:
            app = create_app(store, sagas, token=token, **options)
            # log_config=None: uvicorn logs through the handlers the CLI set up
            config = uvicorn.Config(app, log_config=None, access_log=True)
            await uvicorn.Server(config).serve(sockets=[listening])
        finally:
            await store.close()
    finally:
        listening.close()


def _definitions(sagas: str | None) -> list[Saga[Any]]:
    if sagas is None:
        return []
    try:
        return load_sagas(sagas)
    except LoadError as exc:
        _fail(str(exc))


def _tokens(token: str | None, tokens_file: Path | None) -> str | dict[str, str] | None:
    token = (token or "").strip() or None
    if token is not None and tokens_file is not None:
        _fail("give --token (or $SAGAKIT_DASHBOARD_TOKEN) or --tokens-file, not both")
    if tokens_file is not None:
        try:
            found = read_tokens(tokens_file)
        except (OSError, UnicodeDecodeError, SagaError) as exc:
            _fail(f"--tokens-file: {exc}")
        short = [name for name, value in found.items() if len(value) < MIN_TOKEN]
        if short:
            _fail(
                f"--tokens-file: the token of {short[0]!r} is too short: "
                f"use at least {MIN_TOKEN} random characters"
            )
        return found
    if token is not None and len(token) < MIN_TOKEN:
        _fail(f"the token is too short: use at least {MIN_TOKEN} random characters")
    return token


def _hosts(
    host: str, allow_remote: bool, allowed: list[str], token: object
) -> tuple[set[str], bool]:
    """The ``Host`` names to accept, and whether ``host`` is loopback; the
    command ends if ``host`` may not be listened on."""
    if not host.strip():
        _fail("empty --host: give an address to listen on, e.g. 127.0.0.1")
    try:
        local = is_loopback(host)
    except (OSError, UnicodeError, ValueError) as exc:
        _fail(f"cannot resolve --host {host!r}: {exc}")
    if not local and not allow_remote:
        _fail(
            f"--host {host!r} is not a loopback address: anyone who can reach it "
            "could read the dashboard; add --allow-remote (with a token) to mean it"
        )
    if not local and token is None:
        _fail(f"--allow-remote needs a token (--token, ${TOKEN_ENV} or --tokens-file)")
    if host in WILDCARDS and not allowed:
        _fail(
            f"--host {host} listens on every address: name the ones clients use "
            "with --allowed-host NAME (requests naming others are refused)"
        )
    names = {*LOOPBACK_NAMES, *([] if host in WILDCARDS else [host]), *allowed}
    return {name.strip("[]").lower() for name in names}, local


def dashboard(
    ctx: typer.Context,
    *,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", help="Port to listen on.")
    ] = 8080,
    sagas: Annotated[
        str | None,
        typer.Option(
            "--sagas",
            metavar="MODULE[:ATTR]",
            help="Saga definitions actions may apply to (without: read-only).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            metavar="TOKEN",
            help=f"Operator token for actions, at least {MIN_TOKEN} characters; "
            "prefer the variable (arguments show in ps).  "
            f"[default: ${TOKEN_ENV}; without: read-only]",
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            "--tokens-file",
            metavar="FILE",
            help="One 'NAME TOKEN' line per operator: each signs in as a name.",
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Listen on a non-loopback address (needs a token; every page "
            "then needs signing in).",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A host name clients use to reach the dashboard (repeatable); "
            "the Host header must be one of them, --host or localhost.",
        ),
    ] = None,
    db_pool: DbPoolOption = 10,
) -> None:
    """Serve the web dashboard: list, inspect, retry, resume and cancel sagas,
    and browse workflow instances."""
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        _fail(f"the dashboard needs {exc.name}: pip install 'sagakit[dashboard]'")
    if not 0 < port <= MAX_PORT:
        _fail(f"invalid --port {port}: use 1 to {MAX_PORT}")
    count_or_fail("--db-pool", db_pool)
    definitions = _definitions(sagas)
    tokens = _tokens(token, tokens_file)
    allowed = [h.strip().lower() for h in allowed_host or [] if h.strip()]
    hosts, local = _hosts(host, allow_remote, allowed, tokens)
    existing_database_or_fail(db_of(ctx))
    if tokens is None:
        typer.echo(
            f"read-only mode: no token (--token or ${TOKEN_ENV}), "
            "so retry, resume and cancel are disabled",
            err=True,
        )
    elif not definitions:
        typer.echo(
            "read-only mode: no saga definitions (--sagas MODULE), "
            "so retry, resume and cancel are disabled",
            err=True,
        )
    try:
        listening = listening_socket(host, port)
    except (OSError, UnicodeError) as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")
    names = ", ".join(s.name for s in definitions) or "none"
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"dashboard on http://{shown}:{port}/ (sagas with actions: {names})",
        err=True,
    )
    try:
        run_async(
            serve(
                db_of(ctx),
                definitions,
                tokens,
                listening,
                hosts=hosts,
                pool=db_pool,
                login_required=not local,
                worker_hint=sagas,
            )
        )
    except SagaError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles SIGINT itself
        pass


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` to the ``sagakit`` command."""
    app.command("dashboard")(dashboard)
