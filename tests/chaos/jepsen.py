"""A Jepsen-style run on one machine: a set workload under nemeses.

The workload (:mod:`tests.chaos.set_app`): each saga adds its own integer to
a participant-side set through remote steps over RabbitMQ; the odd ones are
declined and compensated (the element is marked removed). Several workers
and participants (a :class:`~tests.chaos.harness.Cluster`) reach PostgreSQL
and RabbitMQ each through routes of their own in one loopback TCP
:mod:`proxy <tests.chaos.proxy>`, so a partition cuts one process off one
service. A phase submits its sagas (those committed are *acknowledged*),
applies its nemesis while they run, heals, waits until every acknowledged
saga has ended, then checks:

- every acknowledged saga ended with its intended outcome (``wrong_outcome``,
  ``lost``);
- every effect happened exactly once, by its command's first message
  (``add_missing``, ``remove_missing``, ``removed_wrongly``, ``not_first``);
  handler re-runs the participant's idempotency absorbed are counted, not
  anomalies;
- nothing was invented: no element nor saga that no one submitted, no removal
  of an element never added (``invented``, ``phantom_remove``);
- nothing is left behind: no unfinished instance (owned by a dead process or
  not), no unsent outbox message (``unfinished``, ``outbox_left``).

Nemeses: ``kill`` (SIGKILL a random process; it starts again), ``pause``
(SIGSTOP a random process for longer than the lease, then SIGCONT: the woken
owner's writes must be fenced off by the version its lease claim bumped),
``partition`` (drop, black-hole or delay one process's connections to PostgreSQL
or RabbitMQ for a few seconds) and ``pg-crash`` (SIGKILL a worker so that
recovery runs, then stop PostgreSQL with ``-m immediate`` and start it again: a
private server, :mod:`tests.private_services`). The run (operations, nemesis
timeline, results) is written as JSON under ``artifacts/jepsen/`` (git-ignored).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from tests.chaos.harness import ROOT, Cluster, query
from tests.chaos.set_app import compensated, saga_id
from tests.conftest import free_ports

if TYPE_CHECKING:
    from tests.private_services import PrivatePostgres

NEMESES = ("kill", "pause", "partition", "pg-crash")
LEASE = 3.0  # the Cluster's worker --lease
RECORDS = ROOT / "artifacts" / "jepsen"


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{host}:{port}"))


class Proxy:
    """The proxy process and its routes: ``NAME.pg`` and ``NAME.mq``."""

    def __init__(self, names: list[str], db: str, amqp: str, where: Path) -> None:
        self.db, self.amqp = db, amqp
        ports = free_ports(2 * len(names))
        self.routes: dict[str, list[Any]] = {}
        for i, name in enumerate(names):
            pg, mq = urlsplit(db), urlsplit(amqp)
            self.routes[f"{name}.pg"] = [ports[2 * i], pg.hostname, pg.port or 5432]
            self.routes[f"{name}.mq"] = [ports[2 * i + 1], mq.hostname, mq.port or 5672]
        self.control = where / "proxy-control.json"
        config = where / "proxy.json"
        config.write_text(
            json.dumps({"routes": self.routes, "control": str(self.control)})
        )
        self.log = where / "proxy.log"
        with self.log.open("wb") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.proxy", str(config)],
                stdout=subprocess.PIPE,
                stderr=sink,
                cwd=ROOT,
            )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        self.popen.stdout.close()  # "ready" was all it had to say
        assert line.strip() == b"ready", self.log.read_text()

    def urls(self, name: str) -> tuple[str, str]:
        return (
            _with_port(self.db, self.routes[f"{name}.pg"][0]),
            _with_port(self.amqp, self.routes[f"{name}.mq"][0]),
        )

    def set(self, faults: dict[str, dict[str, Any]]) -> None:
        draft = self.control.with_suffix(".tmp")
        draft.write_text(json.dumps(faults))
        draft.replace(self.control)  # atomic: the proxy never reads half of it

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


@dataclass
class Run:
    """What a run records: operations, the nemesis timeline, the results."""

    seed: int
    began: float = field(default_factory=time.monotonic)
    operations: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)

    def at(self) -> float:
        return round(time.monotonic() - self.began, 3)

    def event(self, nemesis: str, **detail: Any) -> dict[str, Any]:
        entry = {"at": self.at(), "nemesis": nemesis, **detail}
        self.timeline.append(entry)
        return entry

    def save(self, extra: dict[str, Any]) -> Path:
        RECORDS.mkdir(parents=True, exist_ok=True)
        path = RECORDS / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{self.seed}.json"
        body = {
            "seed": self.seed,
            **extra,
            "phases": self.phases,
            "timeline": self.timeline,
            "operations": self.operations,
        }
        path.write_text(json.dumps(body, indent=1))
        return path


def submit(cluster: Cluster, first: int, count: int, run: Run) -> list[int]:
    """Submit sagas for ``first..first+count-1``: the acknowledged elements."""
    started = run.at()
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.set_app", "submit", cluster.db,
         str(first), str(count)],
        env=cluster.env, capture_output=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    acked = [int(line.split()[1]) for line in done.stdout.decode().splitlines()]
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    for element in acked:
        run.operations.append(
            {
                "op": "add",
                "element": element,
                "saga": saga_id(element),
                "intended": "compensated" if compensated(element) else "succeeded",
                "invoked": started,
                "acked": run.at(),
            }
        )
    return acked


def apply(
    nemesis: str,
    cluster: Cluster,
    proxy: Proxy,
    rng: random.Random,
    run: Run,
    *,
    postgres: PrivatePostgres | None = None,
) -> None:
    """Apply one ``nemesis`` event, and heal it (``pg-crash`` crashes
    ``postgres``, the cluster's private server)."""
    names = sorted(cluster.procs)
    if nemesis == "kill":
        victim = rng.choice(names)
        run.event("kill", target=victim)
        cluster.kill(victim)
    elif nemesis == "pause":
        victim = rng.choice(names)
        seconds = round(LEASE * rng.uniform(1.3, 1.8), 2)
        entry = run.event("pause", target=victim, seconds=seconds)
        popen = cluster.procs[victim].popen
        popen.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            popen.send_signal(signal.SIGCONT)
        entry["healed"] = run.at()
    elif nemesis == "partition":
        victim = rng.choice(names)
        route = f"{victim}.{rng.choice(('pg', 'mq'))}"
        mode = rng.choice(("drop", "blackhole", "delay"))
        seconds = round(rng.uniform(2, 4), 2)
        entry = run.event("partition", target=route, mode=mode, seconds=seconds)
        proxy.set({route: {"mode": mode, "ms": 300}})
        try:
            time.sleep(seconds)
        finally:
            proxy.set({})
        entry["healed"] = run.at()
    elif nemesis == "pg-crash":
        workers = [n for n in names if n.startswith("worker-")]
        victim = rng.choice(workers)
        cluster.kill(victim)  # its sagas are recovered by the others...
        time.sleep(rng.uniform(0.1, 0.5))
        entry = run.event("pg-crash", killed=victim)
        assert postgres is not None, "pg-crash needs the private PostgreSQL"
        took = postgres.restart(rng.uniform(0.5, 2.0), crash=True)  # ...meanwhile
        entry["healed"] = run.at()
        entry["outage"] = round(took, 2)
    else:
        raise ValueError(f"unknown nemesis {nemesis!r}")


def unfinished(db: str, ids: list[str]) -> int:
    rows = query(
        db,
        "SELECT count(*) FROM sagakit_saga WHERE saga_id = ANY($1::text[]) "
        "AND status IN ('running', 'compensating')",
        ids,
    )
    return int(rows[0]["count"])


def check(db: str, acked: list[int], first: int, count: int) -> dict[str, Any]:
    """The anomalies of one phase (see the module), by kind, with examples."""
    ids = [saga_id(e) for e in acked]
    found: dict[str, list[Any]] = collections.defaultdict(list)
    sagas = {
        r["saga_id"]: r["status"]
        for r in query(
            db,
            "SELECT saga_id, status FROM sagakit_saga WHERE saga_id >= $1 "
            "AND saga_id <= $2",
            saga_id(first),
            saga_id(first + count - 1),
        )
    }
    rows = {
        r["element"]: r
        for r in query(
            db,
            "SELECT element, saga_id, added_by, removed_by FROM jepsen.elements "
            "WHERE element >= $1 AND element < $2",
            first,
            first + count,
        )
    }
    wanted = set(acked)
    statuses: collections.Counter[str] = collections.Counter()
    for element in acked:
        sid = saga_id(element)
        status = sagas.get(sid)
        statuses[str(status)] += 1
        intended = "compensated" if compensated(element) else "succeeded"
        if status is None:
            found["lost"].append(sid)
            continue
        if status != intended:
            found["wrong_outcome"].append((sid, status))
        row = rows.get(element)
        if row is None:
            found["add_missing"].append(sid)
            continue
        if row["added_by"] != f"{sid}.add.a1":
            found["not_first"].append((sid, row["added_by"]))
        if intended == "compensated":
            if row["removed_by"] is None:
                found["remove_missing"].append(sid)
            elif row["removed_by"] != f"{sid}.add.c1":
                found["not_first"].append((sid, row["removed_by"]))
        elif row["removed_by"] is not None:
            found["removed_wrongly"].append(sid)
    found["invented"] += [e for e in rows if e not in wanted]
    found["invented"] += [s for s in sagas if s not in set(ids)]
    repeats = query(
        db,
        "SELECT kind, count(*) FROM jepsen.repeats WHERE element >= $1 "
        "AND element < $2 GROUP BY kind",
        first,
        first + count,
    )
    by_kind = {r["kind"]: int(r["count"]) for r in repeats}
    if by_kind.get("phantom"):
        found["phantom_remove"].append(by_kind["phantom"])
    left = unfinished(db, ids)
    if left:
        found["unfinished"].append(left)
    outbox = query(
        db,
        "SELECT count(*) FROM sagakit_outbox WHERE saga_id = ANY($1::text[])",
        ids,
    )
    if outbox[0]["count"]:
        found["outbox_left"].append(int(outbox[0]["count"]))
    return {
        "statuses": dict(statuses),
        "handler_repeats": {k: v for k, v in by_kind.items() if k != "phantom"},
        "anomalies": {
            k: {"count": len(v), "examples": v[:5]} for k, v in found.items() if v
        },
    }


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" tot")[0].rsplit(" ", 2)[0]


def table(phases: list[dict[str, Any]]) -> str:
    """The summary: one line per phase."""
    head = ("nemesis", "sagas", "events", "seconds", "succeeded", "compensated",
            "repeats", "anomalies")  # fmt: skip
    lines = [head]
    for p in phases:
        st = p["result"]["statuses"]
        lines.append(
            (
                p["nemesis"],
                str(p["sagas"]),
                str(p["events"]),
                f"{p['seconds']:.1f}",
                str(st.get("succeeded", 0)),
                str(st.get("compensated", 0)),
                str(sum(p["result"]["handler_repeats"].values())),
                ", ".join(
                    f"{k}={v['count']}" for k, v in p["result"]["anomalies"].items()
                )
                or "none",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    )


def settings() -> dict[str, Any]:
    """The run's size, from the environment (``make chaos`` sets a long one)."""
    # a PostgreSQL crash (of a private server: tests.private_services) costs
    # its WAL replay and a server start: in make chaos only
    nemeses = os.environ.get("JEPSEN_NEMESES", "kill,pause,partition").split(",")
    unknown = set(nemeses) - set(NEMESES)
    assert not unknown, f"JEPSEN_NEMESES: unknown {sorted(unknown)}; use {NEMESES}"
    return {
        "nemeses": nemeses,
        "sagas": int(os.environ.get("JEPSEN_SAGAS", "20")),
        "events": int(os.environ.get("JEPSEN_EVENTS", "1")),
        # each costs every user of the server an outage: a few are enough
        "pg_crashes": int(os.environ.get("JEPSEN_PG_CRASHES", "2")),
        "workers": int(os.environ.get("JEPSEN_WORKERS", "2")),
        "participants": int(os.environ.get("JEPSEN_PARTICIPANTS", "2")),
        "seed": int(os.environ.get("JEPSEN_SEED", time.time_ns() % 100_000)),
        "deadline": float(os.environ.get("JEPSEN_DEADLINE", "300")),
    }
