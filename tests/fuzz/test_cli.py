"""Fuzz the command line in-process (typer's CliRunner) against a temp SQLite db.

Whatever the arguments, a command exits 0 or 2, never with a traceback; on 2,
stderr is exactly one line starting ``error:``. Nothing here may block: the
dashboard's server is replaced by a no-op (its socket is still bound, so a
port in use is drawn too), workers run ``--until-idle``, and participant
targets never name a real Participant. ``dlq list|replay`` also run against
the real RabbitMQ and Redis with hostile queue names (long, non-ASCII): the
lookups are passive, so nothing is created there.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.cli import dashboard as dashboard_cli
from sagakit.cli.main import app
from sagakit.testing.contracts.workflow_store import line, make
from tests.fuzz.strategies import FUZZ

pytestmark = pytest.mark.fuzz

CLI = FUZZ.__class__(FUZZ, max_examples=12)

texts = st.text(max_size=20)
ids = st.one_of(texts, st.sampled_from(["", "abcdef", "abc", "%", "_", "*", "-x"]))
statuses = st.one_of(
    texts, st.sampled_from(["running", "FAILED", "compensated", "nope", ""])
)
durations = st.one_of(
    texts,
    st.sampled_from(["30s", "1h30m", "0s", "-1s", "1e9d", "9" * 400 + "d", "s", " "]),
)
limits = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from(["0", "-1", "abc", "1.5", "", "9" * 30]),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["0", "-1", "abc", "nan", "inf", "-inf", "1e400", "1e300"]),
)
HOSTS = ["", " ", "localhost", "::1", "0.0.0.0", "999.1.1.1", "[::1]"]  # noqa: S104
queue_names = st.one_of(
    texts,
    st.text(min_size=250, max_size=300),
    st.sampled_from(["héllo", "q" * 300, "", " ", "a/b", "x.dlq", "日本", "\x00"]),
)
urls = st.sampled_from(
    [
        "memory://",
        "MEMORY://",
        "nope://x",
        "",
        "amqp",
        "://",
        "redis+x://h",
        "celery+nope://x",
        "user:pw@host",
    ]
)
targets = st.one_of(
    st.sampled_from(
        [
            "sagakit.examples.trip",
            "sagakit.examples.trip:trip_saga",
            "sagakit.examples.trip:nope",
            "sagakit.examples.trip:happy_trip",
            "sagakit.examples.trip:trip_saga:extra",
            "sagakit.errors",
            "json",
            "",
            ":",
            ":x",
            ".",
            ".relative",
            "..x",
            "sagakit..x",
            "a\x00b",
            "zz fuzz",
            "zz_fuzz/x",
        ]
    ),
    texts.map(lambda t: f"zz_fuzz_{t}"),  # never importable: no side effects
)
db_urls = st.sampled_from(
    [
        None,
        "fuzz.db",
        "memory://",
        "no/such/dir/x.db",
        ".",
        "sqlite:///fuzz2.db",
        "weird://x",
        "",
    ]
)


def options(**spec: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """Some of the given options, each with a drawn value."""

    @st.composite
    def draw(draw_: st.DrawFn) -> list[str]:
        args: list[str] = []
        for name, values in spec.items():
            if draw_(st.booleans()):
                args += [name, draw_(values)]
        return args

    return draw()


def command(head: list[str], *rest: st.SearchStrategy[list[str]]) -> Any:
    return st.tuples(st.just(head), *rest).map(
        lambda parts: [arg for part in parts for arg in part]
    )


def arg(values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return values.map(lambda v: [v])


flags = st.lists(st.sampled_from(["--all-failed", "--until-idle"]), max_size=1)

COMMANDS: dict[str, st.SearchStrategy[list[str]]] = {
    "show": command(["show"], arg(ids)),
    "list": command(
        ["list"],
        options(
            **{
                "--status": statuses,
                "--saga": texts,
                "--older-than": durations,
                "--limit": limits,
            }
        ),
    ),
    "recover": command(
        ["recover"],
        arg(targets),
        options(**{"--limit": limits, "--batch-size": limits, "--store-retry": floats}),
    ),
    "worker": command(
        ["worker"],
        arg(targets),
        st.just(["--until-idle"]),
        options(
            **{
                "--lease": floats,
                "--max-active": limits,
                "--id": texts,
                "--transport": urls,
                "--reply-queue": texts,
                "--store-retry": floats,
            }
        ),
    ),
    "participant": command(
        ["participant"], arg(targets), options(**{"--transport": urls})
    ),
    "retry": command(
        ["retry"],
        st.lists(ids, max_size=1),
        options(
            **{
                "--sagas": targets,
                "--saga": texts,
                "--limit": limits,
                "--reason": texts,
                "--as": texts,
            }
        ),
        flags,
    ),
    "resume": command(
        ["resume"],
        arg(ids),
        options(**{"--sagas": targets, "--reason": texts, "--as": texts}),
    ),
    "cancel": command(
        ["cancel"],
        arg(ids),
        options(**{"--sagas": targets, "--reason": texts, "--as": texts}),
    ),
    "mark-compensated": command(
        ["mark-compensated"],
        arg(ids),
        arg(texts),
        options(**{"--sagas": targets, "--reason": texts, "--as": texts}),
    ),
    "fork": command(
        ["fork"],
        arg(ids),
        options(
            **{
                "--from": texts,
                "--context": texts,
                "--id": texts,
                "--sagas": targets,
                "--reason": texts,
                "--as": texts,
            }
        ),
    ),
    "dlq-list": command(
        ["dlq", "list"],
        arg(queue_names),
        options(**{"--transport": urls, "--limit": limits}),
    ),
    "dlq-replay": command(
        ["dlq", "replay"],
        arg(queue_names),
        options(**{"--transport": urls, "--limit": limits}),
    ),
    "workflows-list": command(
        ["workflows", "list"],
        options(
            **{
                "--status": st.one_of(
                    statuses, st.sampled_from(["pending", "SUCCEEDED", "failed"])
                ),
                "--app": texts,
                "--limit": limits,
            }
        ),
    ),
    "workflows-show": command(
        ["workflows", "show"], arg(ids), options(**{"--app": texts})
    ),
    "db-status": command(["db", "status"]),
    "db-migrate": command(["db", "migrate"]),
    "migrate": command(["migrate"]),
    "db-schema": command(
        ["db", "schema"],
        options(
            **{
                "--dialect": st.sampled_from(["sqlite", "postgres", "mysql", ""])
                | texts
            }
        ),
    ),
    "dashboard": command(
        ["dashboard"],
        options(
            **{
                "--port": st.one_of(limits, st.sampled_from(["0", "65536", "8080"])),
                "--host": st.one_of(
                    texts,
                    st.sampled_from(HOSTS),
                ),
                "--sagas": targets,
                "--token": st.one_of(texts, st.just("a-long-enough-token-0123")),
                "--tokens-file": st.sampled_from(["tokens.txt", "missing.txt", "."]),
                "--allowed-host": texts,
            }
        ),
        st.lists(st.just("--allow-remote"), max_size=1),
    ),
    "asyncapi": command(
        ["asyncapi"],
        arg(targets),
        options(
            **{
                "--format": st.sampled_from(["yaml", "json", "JSON", "xml", ""]),
                "--server": st.sampled_from(["a=amqp://h", "=", "a=", "x", "a=b=c"]),
                "--output": st.sampled_from(["out.yaml", ".", "no/such/dir/x"]),
            }
        ),
    ),
    "diagram": command(
        ["diagram"],
        arg(targets),
        options(**{"--output": st.sampled_from(["out.md", ".", "no/such/dir/x"])}),
    ),
}

global_options = options(
    **{
        "--db": db_urls.filter(lambda v: v is not None).map(str),
        "--log-level": st.sampled_from(["debug", "INFO", "loud", ""]),
    }
)


async def _no_server(*args: object, **kwargs: object) -> None:
    """Stands in for uvicorn: the dashboard command returns at once (and
    closes the socket it bound)."""
    for arg_ in args:
        if isinstance(arg_, socket.socket):
            arg_.close()


async def _seed_workflows() -> None:
    """Workflow instances in the databases the drawn ``--db`` may name (the
    workflow commands never migrate), so they reach their queries."""
    for path in ("sagakit.db", "fuzz.db"):
        store = SQLiteWorkflowStore(path)
        for instance_id in ("abcdef01", "abcdef02"):
            await store.create(make(instance_id), [line(instance_id, "started")])
        await store.create(make("abcdef01", app="other"), [])
        await store.close()


SETUP = {
    "workflows-list": _seed_workflows,
    "workflows-show": _seed_workflows,
}


@contextlib.contextmanager
def sandbox() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        Path("tokens.txt").write_text(
            "# operators\nalice an-alice-token-0123456\nbob short\n", "utf-8"
        )
        yield Path(tmp)


RUNNER = CliRunner()


def check(args: list[str]) -> None:
    result = RUNNER.invoke(app, args, env={"SAGAKIT_TRANSPORT_URL": ""})
    shown = f"sagakit {args!r} -> {result.exit_code}\n{result.stderr}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(shown) from result.exception
    assert result.exit_code in (0, 2), shown
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1, shown
        assert lines[-1] == errors[0], shown
        assert errors[0].strip() != "error:", shown


@pytest.mark.parametrize("name", sorted(COMMANDS))
@CLI
@given(data=st.data())
def test_any_arguments_exit_0_or_2_with_one_error_line(
    name: str, data: st.DataObject
) -> None:
    prefix = data.draw(global_options, label="global options")
    args = data.draw(COMMANDS[name], label="command")
    with sandbox(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(dashboard_cli, "serve", _no_server)
        if name in SETUP:
            asyncio.run(SETUP[name]())
        check(prefix + args)


BROKERS = {
    "rabbitmq": pytest.param("rabbitmq_url", marks=pytest.mark.rabbitmq),
    "redis": pytest.param("redis_url", marks=pytest.mark.redis),
}


@pytest.mark.parametrize("broker", list(BROKERS.values()), ids=list(BROKERS))
@CLI
@given(data=st.data())
def test_dead_letter_commands_on_a_real_broker(
    broker: str, request: pytest.FixtureRequest, data: st.DataObject
) -> None:
    """Any queue name: a table, or one error line (an unknown queue, a name
    the broker cannot carry); no queue is declared by a look."""
    url = request.getfixturevalue(broker)
    queue = data.draw(queue_names, label="queue")
    action = data.draw(st.sampled_from(["list", "replay"]), label="action")
    with sandbox():
        check(["dlq", action, queue, "--transport", url])
