"""Arguments the CLI refuses, on one line, before doing anything: absurd
durations and counts, read-only commands on a database that is not there
(or not migrated: they migrate nothing), unknown queues (looked up, never
declared), and a dashboard that cannot or may not listen where it is told.

In-process (typer's CliRunner): what is checked is the refusal, not the
process around it (tests/e2e/test_cli.py runs the real command)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sagakit.cli.main import app

APP = "tests.e2e.recover_app:saga"
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
