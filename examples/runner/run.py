"""The run itself: a database and a broker, the example's services, its
scenarios in order, a table of what each expected and got; everything
stopped at the end. Exit status 0 when every scenario went as expected, 1
when one did not, 2 when the run could not happen (a service did not start,
no database or broker)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from examples.runner.processes import RunFailed, Service, Services, base_env
from sagakit.adapters.store.scratch import create_database, drop_database
from sagakit.errors import StoreError

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"
EXAMPLE_DATABASES = "sagakit_example_"
OK, FAILED = 0, 1
CANNOT_RUN = 2


@dataclass
class Setup:
    """Where one run happens."""

    db: str
    broker: str
    logs: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    expected: str
    run: Callable[[], str]
    """Plays the scenario; what came of it (compared with ``expected``)."""


class Example(Protocol):
    name: str
    title: str

    def env(self, setup: Setup) -> dict[str, str]:
        """The example's own variables (queue prefix, ...)."""

    def services(self, setup: Setup) -> list[Service]:
        """In start order."""

    def scenarios(self, setup: Setup) -> list[Scenario]: ...


def say(text: str) -> None:
    print(text, flush=True)


def play(example: Example, setup: Setup, services: Services) -> list[bool]:
    """Start the services, run the scenarios; one bool per scenario."""
    services.start(example.services(setup))
    outcomes = []
    for scenario in example.scenarios(setup):
        began = time.monotonic()
        say(f"  scenario: {scenario.name} ...")
        try:
            got = scenario.run()
        except RunFailed:
            raise
        except Exception as exc:  # a scenario's failure is its outcome
            got = f"error: {exc}"
        services.check_all()
        passed = got == scenario.expected
        shown = (
            f"ok: {got}"
            if passed
            else f"FAILED: expected {scenario.expected}, got {got}"
        )
        say(f"    {shown} ({time.monotonic() - began:.1f}s)")
        outcomes.append(passed)
    return outcomes


def run_example(example: Example, db: str, broker: str, logs: Path) -> int:
    setup = Setup(db=db, broker=broker, logs=logs)
    setup.env = base_env(
        SAGAKIT_DATABASE_URL=db,
        SAGAKIT_TRANSPORT_URL=broker,
        **example.env(setup),
    )
    services = Services(logs, setup.env, say)
    try:
        outcomes = play(example, setup, services)
    except RunFailed as exc:
        say(f"error: {exc}")
        return CANNOT_RUN
    finally:
        if services.started:
            say(f"  stopping {len(services.started)} service(s) ...")
        services.stop()
    passed = sum(outcomes)
    say(f"{example.name}: {passed} of {len(outcomes)} scenario(s) as expected")
    return OK if passed == len(outcomes) else FAILED


def main(example: Example, argv: Sequence[str] = ()) -> int:
    """Run ``example`` on a throw-away database (dropped after) on the server
    of ``$SAGAKIT_DATABASE_URL``, or on the database ``--db`` names."""
    parser = argparse.ArgumentParser(prog=f"python -m examples.runner {example.name}")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="run on this database, kept [default: a new one, dropped after, "
        "on the server of $SAGAKIT_DATABASE_URL, else of " + DEFAULT_SERVER + "]",
    )
    parser.add_argument(
        "--transport",
        metavar="URL",
        help=f"the broker [default: $SAGAKIT_TRANSPORT_URL, else {DEFAULT_BROKER}]",
    )
    args = parser.parse_args(list(argv))
    broker = args.transport or os.environ.get("SAGAKIT_TRANSPORT_URL") or DEFAULT_BROKER
    say(f"{example.name}: {example.title}")
    logs = Path(tempfile.mkdtemp(prefix=f"sagakit-{example.name}-"))
    code = _on_a_database(example, args.db, broker, logs)
    if code == OK:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        say(f"the services' logs are kept in {logs}")
    return code


def _on_a_database(example: Example, db: str | None, broker: str, logs: Path) -> int:
    if db:
        return run_example(example, db, broker, logs)
    server = os.environ.get("SAGAKIT_DATABASE_URL") or DEFAULT_SERVER
    try:
        made = asyncio.run(create_database(server, EXAMPLE_DATABASES))
    except (StoreError, ImportError) as exc:
        say(f"error: no database for the example: {exc}")
        return CANNOT_RUN
    say(f"  database {made.rsplit('/', 1)[1]} (dropped at the end)")
    try:
        return run_example(example, made, broker, logs)
    finally:
        asyncio.run(drop_database(made, server))
