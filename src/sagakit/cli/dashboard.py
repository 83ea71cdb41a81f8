"""``sagakit dashboard``: serve the web dashboard with uvicorn.

FastAPI, Jinja2 and uvicorn come with the ``dashboard`` extra and are imported
only when the command runs. Without a token (``--token`` or
``$SAGAKIT_DASHBOARD_TOKEN``) or without ``--sagas`` the dashboard starts
read-only and says so. Expected failures print one ``error: <reason>`` line
and exit with status 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sagakit.adapters.store import open_store_async
from sagakit.cli.common import db_of, run_async
from sagakit.cli.common import fail_plain as _fail
from sagakit.cli.loader import LoadError, load_sagas
from sagakit.errors import SagaError

if TYPE_CHECKING:
    from sagakit.definition.saga import Saga

TOKEN_ENV = "SAGAKIT_DASHBOARD_TOKEN"  # noqa: S105 - a variable name, no secret
MIN_TOKEN = 16
MAX_PORT = 65535


async def serve(
    db: str | None,
    sagas: list[Saga[Any]],
    token: str | None,
    host: str,
    port: int,
    *,
    module: str | None = None,
) -> None:
    """Open the store, serve the dashboard until SIGINT/SIGTERM, close it."""
    import uvicorn  # the dashboard extra

    from sagakit.dashboard import create_app

    store = await open_store_async(db)
    try:
        app = create_app(store, sagas, token=token, worker_hint=module)
        # log_config=None: uvicorn logs through the handlers the CLI set up
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=True
        )
        await uvicorn.Server(config).serve()
    finally:
        await store.close()


def dashboard(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
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
            help=f"Operator token for actions [default: ${TOKEN_ENV}; "
            "without: read-only]. Prefer the variable: arguments show in ps.",
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
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
    definitions: list[Saga[Any]] = []
    if sagas is not None:
        try:
            definitions = load_sagas(sagas)
        except LoadError as exc:
            _fail(str(exc))
    token = (token or "").strip() or None
    if token is None:
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
    elif len(token) < MIN_TOKEN:
        typer.echo(
            f"warning: the token is short; use at least {MIN_TOKEN} random characters",
            err=True,
        )
    names = ", ".join(s.name for s in definitions) or "none"
    typer.echo(
        f"dashboard on http://{host}:{port}/ (sagas with actions: {names})", err=True
    )
    try:
        run_async(serve(db_of(ctx), definitions, token, host, port, module=sagas))
    except SagaError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles SIGINT itself
        pass


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` to the ``sagakit`` command."""
    app.command("dashboard")(dashboard)
