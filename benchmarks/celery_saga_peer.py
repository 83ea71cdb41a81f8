"""A Celery-based saga in the saga-framework style, for ``remote_throughput.py``.

No sagakit code here: only Celery, kombu and sqlite3. The flow of one saga:

1. The orchestrator's API side (the benchmark driver, :func:`start_saga`)
   inserts the saga's state row and sends the first step's task
   (``a.reserve``) to service ``a``'s queue.
2. A participant worker runs the task and, like saga-framework's
   ``saga_step_handler``, sends the task ``a.reserve.response.success`` (or
   ``.failure``) to the orchestrator's queue, with the saga id and the result.
3. The orchestrator's own Celery worker handles that response task: it loads
   the state row, records the result and the step reached in one SQLite
   transaction (like ``StatefulSaga``, which keeps state in a database), then
   sends the next step's task; after the last step it marks the saga
   succeeded and sends ``bench.saga_finished`` to the driver's queue, which is
   how the driver learns that a saga ended without polling the database.

State lives in one SQLite file (WAL, ``synchronous=NORMAL``, like sagakit's
default store); each thread opens its own connection. A failure response
marks the saga failed and notifies the driver: the benchmark saga defines no
compensations on either side. Messages are JSON (Celery's protocol 2), task
results are ignored, and Celery keeps its defaults otherwise (persistent
messages, acknowledged when received, no publisher confirms).

Run a worker with ``celery -A celery_saga_peer worker -Q <queue>``; the queue
names carry ``$SAGAKIT_BENCH_TAG`` and the state file is
``$SAGAKIT_BENCH_CELERY_DB``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any

from celery import Celery

BROKER_URL = os.environ.get(
    "SAGAKIT_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/"
)
TAG = os.environ.get("SAGAKIT_BENCH_TAG", "local")
STATE_DB = os.environ.get("SAGAKIT_BENCH_CELERY_DB", "celery_saga.db")
SERVICES = ("a", "b", "c")
FINISHED_TASK = "bench.saga_finished"


def queue_of(name: str) -> str:
    return f"celery-{TAG}-{name}"


REPLY_QUEUE = queue_of("orchestrator")
DONE_QUEUE = queue_of("done")
STEPS: list[tuple[str, str]] = [(f"{s}.reserve", queue_of(s)) for s in SERVICES]
"""The saga: (task name, queue) of each step, run in order."""

app = Celery("celery_saga_peer", broker=BROKER_URL, set_as_current=True)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_enable_remote_control=False,  # no pidbox queues left behind
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


# -- saga state (one row per saga) ----------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS saga_state (
    saga_id    TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    step       INTEGER NOT NULL,
    results    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    updated_at REAL NOT NULL
)
"""
_local = threading.local()


def connection() -> sqlite3.Connection:
    """This thread's connection to the state file."""
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(STATE_DB, isolation_level=None, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute(SCHEMA)
        _local.conn = conn
    return conn


def start_saga(saga_id: str, payload: dict[str, Any]) -> None:
    """Create the saga's state row, then send its first step."""
    conn = connection()
    conn.execute(
        "INSERT INTO saga_state VALUES (?, 'running', 0, '{}', ?, ?)",
        (saga_id, json.dumps(payload), time.time()),
    )
    name, queue = STEPS[0]
    app.send_task(name, args=[saga_id, payload], queue=queue)


def _advance(saga_id: str, index: int, result: dict[str, Any] | None) -> None:
    """Record the outcome of step ``index``, then send what comes next."""
    conn = connection()
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT status, step, results, payload FROM saga_state WHERE saga_id = ?",
            (saga_id,),
        ).fetchone()
        if row is None or row[0] != "running" or row[1] != index:
            conn.execute("ROLLBACK")
            return  # unknown saga, or a duplicate or late response
        results = json.loads(row[2])
        payload = json.loads(row[3])
        if result is None:
            status, step = "failed", index
        else:
            results[STEPS[index][0]] = result
            step = index + 1
            status = "succeeded" if step == len(STEPS) else "running"
        conn.execute(
            "UPDATE saga_state SET status = ?, step = ?, results = ?, updated_at = ?"
            " WHERE saga_id = ?",
            (status, step, json.dumps(results), time.time(), saga_id),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if status == "running":
        name, queue = STEPS[step]
        app.send_task(name, args=[saga_id, payload], queue=queue)
    else:
        app.send_task(FINISHED_TASK, args=[saga_id, status], queue=DONE_QUEUE)


# -- the orchestrator's response tasks ------------------------------------------


def _response_tasks(index: int) -> list[Any]:
    name = STEPS[index][0]

    def on_success(saga_id: str, result: dict[str, Any]) -> None:
        _advance(saga_id, index, result)

    def on_failure(saga_id: str, error: dict[str, Any]) -> None:
        _advance(saga_id, index, None)

    return [
        app.task(name=f"{name}.response.success")(on_success),
        app.task(name=f"{name}.response.failure")(on_failure),
    ]


# -- the participants' step tasks -----------------------------------------------


def _step_task(service: str) -> Any:
    """A step handler that answers with a response task, as saga_step_handler."""

    def reserve(self: Any, saga_id: str, payload: dict[str, Any]) -> None:
        try:
            result = {
                "service": service,
                "order_id": payload.get("order_id"),
                "ok": True,
            }
        except Exception as exc:
            error = {"type": type(exc).__name__, "message": str(exc)}
            app.send_task(
                f"{self.name}.response.failure",
                args=[saga_id, error],
                queue=REPLY_QUEUE,
            )
            raise
        app.send_task(
            f"{self.name}.response.success", args=[saga_id, result], queue=REPLY_QUEUE
        )

    return app.task(bind=True, name=f"{service}.reserve")(reserve)


TASKS = [_step_task(s) for s in SERVICES] + [
    task for index in range(len(STEPS)) for task in _response_tasks(index)
]
