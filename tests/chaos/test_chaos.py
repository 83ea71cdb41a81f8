"""Chaos with real processes: SIGKILLs, a database restart, a broker restart.

``chaos_app`` runs a three-step remote saga: orchestrator workers and the
``stock`` and ``payment`` participants, each a ``sagakit`` CLI process, over
RabbitMQ on one PostgreSQL database (a fresh one, and a queue prefix of its
own, per test). The test that restarts the servers runs on private ones
(:mod:`tests.private_services`): the shared servers are never stopped.
Whatever happens to the processes and services, every saga must end as meant
(every fifth is declined at ``ship`` and compensated), each effect must be
recorded once, by the command's first message id, and nothing may be
dead-lettered. The counts are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.chaos.chaos_app import SCHEMA
from tests.chaos.harness import (
    TERMINAL,
    Cluster,
    all_terminal,
    check,
    seconds_since,
    statuses,
    stuck,
    submit,
)
from tests.conftest import admin, delete_rabbitmq_queues, run_sync

if TYPE_CHECKING:
    from tests.private_services import PrivatePostgres, PrivateRabbit

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

DEADLINE = 150.0  # seconds for all sagas to end, from the first process start


@pytest.fixture
def db(pg_url: str) -> str:
    run_sync(admin(SCHEMA, url=pg_url))
    return pg_url


@pytest.fixture
def cluster(db: str, rabbitmq_url: str, tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(db, rabbitmq_url, tmp_path)
    try:
        yield group
    finally:
        try:
            group.stop_all()
        finally:
            run_sync(delete_rabbitmq_queues(*group.queues()))


@pytest.fixture
def private_cluster(
    private_pg_url: str, private_rabbitmq_url: str, tmp_path: Path
) -> Iterator[Cluster]:
    """A :func:`cluster` on the private servers (see the module)."""
    run_sync(admin(SCHEMA, url=private_pg_url))
    group = Cluster(private_pg_url, private_rabbitmq_url, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()  # its queues go with the private node


def wait_for_all(cluster: Cluster, count: int, began: float) -> None:
    """Until every saga is terminal, restarting processes that exited."""
    while not all_terminal(cluster.db, count):
        if time.monotonic() - began > DEADLINE:
            pytest.fail(
                f"not all sagas ended within {DEADLINE:g}s: "
                f"{dict(statuses(cluster.db))}; logged {cluster.logged()}; "
                f"stuck: {stuck(cluster.db)}"
            )
        cluster.supervise()
        time.sleep(0.25)


def finish(cluster: Cluster, count: int) -> str:
    """Check the outcome, stop the processes, and describe what happened."""
    dead = cluster.dead_letters()
    report = check(cluster.db, count)
    cluster.stop_all()
    logged = cluster.logged()
    assert sum(dead.values()) == 0, f"dead letters: {dead}"
    assert "internal_error" not in logged, cluster.logs_text()[-5000:]
    return (
        f"sagas by status: {dict(report.statuses)}\n"
        f"effects: {report.effects} (each once, by the command's first id); "
        f"handler re-runs absorbed by idempotency: {report.repeats} "
        f"{dict(report.repeats_by_step)}\n"
        f"inbox rows per consumer: {report.inbox}\n"
        f"logged: {logged}\n"
        f"dead letters: {sum(dead.values())}"
    )


EARLY_KILLS = (0.05, 0.15, 0.3)
"""Fractions of the sagas ended by which the first kills land at the latest."""


def test_chaos_kill(cluster: Cluster, db: str) -> None:
    count = int(os.environ.get("CHAOS_SAGAS", "1000"))
    kills = int(os.environ.get("CHAOS_KILLS", "8"))
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    began = time.monotonic()
    submit(db, count, cluster.env)
    submitted = seconds_since(began)
    cluster.start_all(workers=2, instances=2)
    running = time.monotonic()
    next_kill = running + rng.uniform(1, 3)
    killed: list[str] = []
    while True:
        ended = sum(statuses(db)[s] for s in TERMINAL)
        if ended == count:
            break
        now = time.monotonic()
        if now - running > DEADLINE:
            pytest.fail(
                f"not all sagas ended within {DEADLINE:g}s (seed {seed}, kills "
                f"{killed}): {dict(statuses(db))}; logged {cluster.logged()}; "
                f"stuck: {stuck(db)}"
            )
        cluster.supervise()
        # the first kills also come by progress, however quick the run
        # (on a quiet machine 1,000 sagas can end before three 1-3 s gaps)
        early = (
            len(killed) < len(EARLY_KILLS) and ended >= count * EARLY_KILLS[len(killed)]
        )
        if len(killed) < kills and (now >= next_kill or early):
            victim = rng.choice(sorted(cluster.procs))
            cluster.kill(victim)
            killed.append(f"{victim}@{now - running:.1f}s")
            next_kill = now + rng.uniform(1, 3)
        time.sleep(0.1)
    ran = seconds_since(running)
    summary = finish(cluster, count)
    assert len(killed) >= min(kills, 3), f"the sagas ended before the chaos: {killed}"
    print(
        f"\n[chaos kill] {count} sagas, seed {seed}; submit {submitted}, run {ran}\n"
        f"kills by role: {dict(cluster.kills)}: {', '.join(killed)}\n"
        f"exits restarted by the supervisor: {dict(cluster.exits)}\n{summary}"
    )


@pytest.mark.xdist_group("private_servers")  # one private pair per run
def test_chaos_restart_services(
    private_cluster: Cluster,
    private_servers: tuple[PrivatePostgres, PrivateRabbit],
) -> None:
    cluster, db = private_cluster, private_cluster.db
    postgres, rabbit = private_servers
    count = 300
    # slow enough for both restarts to land mid-run, and for sagas to be
    # left unfinished after the broker restart however quick the remote
    # path is (at 100-200 ms the batched path ended all 300 during it)
    cluster.max_active = 4
    cluster.env["CHAOS_DELAY_MS"] = "200-400"
    began = time.monotonic()
    submit(db, count, cluster.env)
    cluster.start_all(workers=2, instances=1)
    running = time.monotonic()

    def ended() -> int:
        done = statuses(db)
        return done["succeeded"] + done["compensated"]

    def wait_ended(n: int) -> None:
        while ended() < n:
            assert time.monotonic() - running < DEADLINE, dict(statuses(db))
            cluster.supervise()
            time.sleep(0.2)

    wait_ended(count // 5)
    pg_at, pg_before = seconds_since(running), ended()
    pg_took = postgres.restart(3.0)
    pg_after = ended()
    wait_ended(pg_after + count // 6)
    mq_at, mq_before = seconds_since(running), ended()
    mq_took = rabbit.restart_app()
    mq_after = ended()
    assert mq_after < count, "the run ended before the broker restart"
    restarted_before_end = dict(cluster.exits)
    wait_for_all(cluster, count, running)
    ran = seconds_since(running)
    summary = finish(cluster, count)
    print(
        f"\n[chaos restart] {count} sagas; total {seconds_since(began)}, run {ran}\n"
        f"PostgreSQL restart at {pg_at} took {pg_took:.1f}s "
        f"({pg_before} -> {pg_after} ended); RabbitMQ restart at {mq_at} took "
        f"{mq_took:.1f}s ({mq_before} -> {mq_after} ended)\n"
        f"processes that exited and were restarted: {restarted_before_end or 'none'}"
        f" (exit codes {cluster.exit_codes})\n{summary}"
    )
