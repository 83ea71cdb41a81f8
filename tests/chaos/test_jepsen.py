"""The Jepsen-style set workload under nemeses (see :mod:`tests.chaos.jepsen`).

In ``make test``: a few dozen sagas and one event per nemesis; ``make
chaos`` runs thousands per nemesis (``JEPSEN_SAGAS``, ``JEPSEN_EVENTS``,
``JEPSEN_NEMESES``, ``JEPSEN_SEED``). The summary table is printed
(``pytest -s``), and the whole run is kept as JSON under
``artifacts/jepsen/``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.chaos import jepsen
from tests.chaos.harness import Cluster, stuck
from tests.chaos.set_app import SCHEMA, saga_id
from tests.conftest import admin, delete_rabbitmq_queues, run_sync

if TYPE_CHECKING:
    from tests.private_services import PrivatePostgres, PrivateRabbit

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
]

APP = "tests.chaos.set_app"


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> PrivatePostgres | None:
    """The private PostgreSQL server the ``pg-crash`` nemesis crashes (None
    without it: the shared server is never stopped)."""
    if "pg-crash" not in jepsen.settings()["nemeses"]:
        return None
    servers: tuple[PrivatePostgres, PrivateRabbit]
    servers = request.getfixturevalue("private_servers")
    return servers[0]


@pytest.fixture
def db(request: pytest.FixtureRequest, postgres: PrivatePostgres | None) -> str:
    url: str = request.getfixturevalue(
        "pg_url" if postgres is None else "private_pg_url"
    )
    run_sync(admin(SCHEMA, url=url))
    return url


@pytest.fixture
def jepsen_cluster(
    db: str, rabbitmq_url: str, tmp_path: Path
) -> Iterator[tuple[Cluster, jepsen.Proxy]]:
    size = jepsen.settings()
    names = [f"worker-{i}" for i in range(size["workers"])]
    names += [f"sets-{i}" for i in range(size["participants"])]
    proxy = jepsen.Proxy(names, db, rabbitmq_url, tmp_path)
    group = Cluster(
        db, rabbitmq_url, tmp_path, app=APP, participants=("sets",), routes=proxy.urls
    )
    group.max_active = 50
    try:
        yield group, proxy
    finally:
        try:
            proxy.set({})
            group.stop_all()
        finally:
            proxy.stop()
            run_sync(delete_rabbitmq_queues(*group.queues()))


def settle(cluster: Cluster, ids: list[str], deadline: float, what: str) -> None:
    """Until no saga of ``ids`` is unfinished and their outbox is empty,
    restarting what exited (a process manager's job)."""
    while True:
        left = jepsen.unfinished(cluster.db, ids)
        if not left:
            rows = jepsen.query(
                cluster.db,
                "SELECT count(*) FROM sagakit_outbox WHERE saga_id = ANY($1::text[])",
                ids,
            )
            if not rows[0]["count"]:
                return
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: {left} sagas unfinished at the deadline; logged "
                f"{cluster.logged()}; stuck: {stuck(cluster.db)}"
            )
        cluster.supervise()
        time.sleep(0.2)


def test_jepsen_set(
    jepsen_cluster: tuple[Cluster, jepsen.Proxy], postgres: PrivatePostgres | None
) -> None:
    cluster, proxy = jepsen_cluster
    size = jepsen.settings()
    rng = random.Random(size["seed"])
    run = jepsen.Run(seed=size["seed"])
    load_before = jepsen.loadavg()
    cluster.start_all(workers=size["workers"], instances=size["participants"])
    first = 0
    for nemesis in size["nemeses"]:
        began = time.monotonic()
        acked = jepsen.submit(cluster, first, size["sagas"], run)
        ids = [saga_id(e) for e in acked]
        events = 0
        budget = size["pg_crashes" if nemesis == "pg-crash" else "events"]
        deadline = began + size["deadline"]
        # the first event at once (a small phase may end within a second),
        # the others while sagas are still unfinished
        while events < budget:
            cluster.supervise()
            jepsen.apply(nemesis, cluster, proxy, rng, run, postgres=postgres)
            events += 1
            if not jepsen.unfinished(cluster.db, ids):
                break
            time.sleep(rng.uniform(0.2, 1.5))
        settle(cluster, ids, deadline, f"after {nemesis}")
        result = jepsen.check(cluster.db, acked, first, size["sagas"])
        run.phases.append(
            {
                "nemesis": nemesis,
                "sagas": len(acked),
                "events": events,
                "seconds": round(time.monotonic() - began, 2),
                "result": result,
            }
        )
        first += size["sagas"]
    logged = cluster.logged()
    dead = cluster.dead_letters()
    cluster.stop_all()
    summary = jepsen.table(run.phases)
    path = run.save(
        {
            "settings": size,
            "load_average": {"start": load_before, "end": jepsen.loadavg()},
            "logged": logged,
            "dead_letters": dead,
            "kills": dict(cluster.kills),
            "restarts": dict(cluster.exits),
            "exit_codes": cluster.exit_codes,
        }
    )
    print(
        f"\n[jepsen] seed {size['seed']}, load {load_before} -> {jepsen.loadavg()}, "
        f"record {path}\n{summary}\nlogged: {logged}\ndead letters: {dead}"
    )
    anomalies = {p["nemesis"]: p["result"]["anomalies"] for p in run.phases}
    assert not any(anomalies.values()), f"anomalies (see {path}): {anomalies}"
    assert sum(dead.values()) == 0, f"dead letters: {dead}"
