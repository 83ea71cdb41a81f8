"""Arguments the CLI refuses, on one line, before doing anything: absurd
durations and counts, read-only commands on a database that is not there
(or not migrated: they migrate nothing), unknown queues (looked up, never
declared), and a dashboard that cannot or may not listen where it is told.

In-process (typer's CliRunner): what is checked is the refusal, not the
process around it (tests/e2e/test_cli.py runs the real command)."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from sagakit.cli import dashboard as dashboard_cli
from sagakit.cli.main import app

APP = "tests.e2e.recover_app:saga"
TOKEN = "a-long-enough-token-0123"  # noqa: S105 - a test token
RUNNER = CliRunner()


def sagakit(*args: str, **env: str) -> Result:
    return RUNNER.invoke(
        app,
        list(args),
        env={"SAGAKIT_TRANSPORT_URL": "", "SAGAKIT_DASHBOARD_TOKEN": "", **env},
    )


def refused(result: Result, *words: str) -> str:
    """The one error line of a command that exited 2."""
    shown = f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    assert result.exit_code == 2, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 1, shown
    assert lines[-1].startswith("error: "), shown
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    for word in words:
        assert word in lines[-1], shown
    return lines[-1]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert sagakit("db", "migrate").exit_code == 0
    return tmp_path / "sagakit.db"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["worker", APP, "--lease", "inf"], ["invalid --lease inf"]),
        (["worker", APP, "--lease", "nan"], ["invalid --lease nan"]),
        (["worker", APP, "--lease", "1e300"], ["at most 604800"]),
        (["worker", APP, "--lease", "0"], ["more than 0"]),
        (["worker", APP, "--store-retry", "-1"], ["invalid --store-retry"]),
        (["worker", APP, "--max-active", "9" * 20], ["at most 1000000"]),
        (["recover", APP, "--batch-size", "9" * 20], ["invalid --batch-size"]),
        (["recover", APP, "--limit", "9" * 20], ["invalid --limit"]),
        (["recover", APP, "--store-retry", "inf"], ["invalid --store-retry"]),
        (["list", "--older-than", "9" * 400 + "d"], ["--older-than", "100 years"]),
        (["--db", "", "list"], ["empty --db"]),
        (["--db", " ", "recover", APP], ["empty --db"]),
    ],
)
def test_absurd_values_are_refused(
    database: Path, args: list[str], words: list[str]
) -> None:
    refused(sagakit(*args), *words)  # the database is there: only the value is wrong


# -- read-only commands -----------------------------------------------------------

READ_ONLY = [
    ["list"],
    ["show", "abcdef"],
    ["db", "status"],
    ["workflows", "list"],
    ["workflows", "show", "abcdef"],
    ["dashboard"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_create_no_database(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "absent.db"
    refused(sagakit("--db", str(missing), *args), "no saga database", "absent.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["list"], ["show", "abcdef"]], ids=" ".join)
def test_read_only_commands_migrate_nothing(tmp_path: Path, args: list[str]) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    refused(sagakit("--db", str(empty), *args), "migration(s)", "sagakit db migrate")
    with sqlite3.connect(empty) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == []


# -- dead letters of a queue that is not there ---------------------------------


@pytest.mark.rabbitmq
def test_dlq_of_an_unknown_rabbitmq_queue_says_so(rabbitmq_url: str) -> None:
    import aio_pika  # noqa: PLC0415 - the RabbitMQ tests' driver

    queue = f"harden_absent_{uuid.uuid4().hex[:8]}"
    for action in ("list", "replay"):
        refused(
            sagakit("dlq", action, queue, "--transport", rabbitmq_url),
            f"no queue {queue!r}",
        )

    async def declared() -> list[str]:
        connection = await aio_pika.connect(rabbitmq_url)
        found = []
        try:
            for name in (f"sagakit.{queue}", f"sagakit.{queue}.dlq"):
                channel = await connection.channel()
                try:
                    await channel.declare_queue(name, passive=True)
                    found.append(name)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    pass
        finally:
            await connection.close()
        return found

    assert asyncio.run(declared()) == []


@pytest.mark.redis
def test_dlq_of_an_unknown_redis_queue_says_so(redis_url: str) -> None:
    import redis  # noqa: PLC0415 - the Redis tests' driver

    queue = f"harden_absent_{uuid.uuid4().hex[:8]}"
    refused(
        sagakit("dlq", "list", queue, "--transport", redis_url), f"no queue {queue!r}"
    )
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys(f"*{queue}*") == []
    finally:
        client.close()


@pytest.mark.rabbitmq
@pytest.mark.parametrize("queue", ["héllo", "q" * 300])
def test_dlq_names_amqp_cannot_carry(rabbitmq_url: str, queue: str) -> None:
    refused(sagakit("dlq", "list", queue, "--transport", rabbitmq_url), "queue name")


# -- the dashboard ---------------------------------------------------------------


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def test_a_port_in_use_is_one_line(database: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        refused(
            sagakit("dashboard", "--port", port),
            f"cannot listen on 127.0.0.1:{port}",
            "in use",
        )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", ""], ["empty --host"]),
        (["--host", "no-such-host.invalid"], ["cannot resolve --host"]),
        (["--host", "999.1.1.1"], ["cannot resolve --host"]),
        (["--host", "0.0.0.0"], ["not a loopback address", "--allow-remote"]),  # noqa: S104
        (["--host", "0.0.0.0", "--allow-remote"], ["needs a token"]),  # noqa: S104
        (
            ["--host", "0.0.0.0", "--allow-remote", "--token", TOKEN],  # noqa: S104
            ["--allowed-host"],
        ),
        (["--token", "too-short"], ["too short", "16"]),
        (["--token", TOKEN, "--tokens-file", "ops.txt"], ["not both"]),
        (["--tokens-file", "absent.txt"], ["--tokens-file"]),
        (["--port", "70000"], ["invalid --port"]),
        (["--db-pool", "0"], ["invalid --db-pool", "at least 1"]),
    ],
)
def test_the_dashboard_refuses_to_listen(
    database: Path, args: list[str], words: list[str]
) -> None:
    refused(sagakit("dashboard", *args), *words)


def test_what_the_dashboard_is_started_with(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loopback: the loopback names; remote (allowed): sign-in everywhere,
    the names given, and the tokens of a file, each with its operator."""
    started: list[dict[str, Any]] = []

    async def serve(*args: Any, **options: Any) -> None:
        args[3].close()  # the socket it was given, bound
        started.append({"token": args[2], **options})

    monkeypatch.setattr(dashboard_cli, "serve", serve)
    Path("ops.txt").write_text(f"# operators\nalice {TOKEN}\nbob {TOKEN}-b\n")

    local_run = sagakit("dashboard", "--port", free_port(), "--token", TOKEN)
    assert local_run.exit_code == 0, local_run.stderr
    remote = sagakit(
        "dashboard",
        "--port",
        free_port(),
        "--host",
        "0.0.0.0",  # noqa: S104 - listened on, with the flag, for the test
        "--allow-remote",
        "--allowed-host",
        "Dash.Example.com",
        "--tokens-file",
        "ops.txt",
        "--db-pool",
        "3",
    )
    assert remote.exit_code == 0, remote.stderr

    local, wide = started
    assert local["login_required"] is False
    assert local["hosts"] == {"localhost", "127.0.0.1", "::1"}
    assert local["token"] == TOKEN
    assert wide["login_required"] is True
    assert wide["hosts"] == {"localhost", "127.0.0.1", "::1", "dash.example.com"}
    assert wide["token"] == {"alice": TOKEN, "bob": f"{TOKEN}-b"}
    assert (local["pool"], wide["pool"]) == (10, 3)  # its store's connections
