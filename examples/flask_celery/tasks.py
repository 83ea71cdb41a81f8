"""The Celery side: the tasks that do the saga's work, in a Celery worker.

::

    celery -A examples.flask_celery.tasks worker -Q stock,payment --pool=solo

Each task gets the command as a sagakit ``Envelope`` (a JSON object: its only
argument), does its work, and answers with :func:`answer`: a reply task
``<command>.response.success`` (or ``.failure``) sent to the command's
``reply_to`` queue, as sagakit's Celery transport expects.

Celery delivers at least once (``task_acks_late``: a worker that dies
mid-task gets the message again), so every task is idempotent by saga id: it
records what it did in the ledger (a SQLite file, ``$FLASK_CELERY_LEDGER``)
with ``INSERT OR IGNORE``, and a repeat changes nothing and answers the same.
A card over ``$FLASK_CELERY_CARD_LIMIT`` (1000) is declined: a failure reply,
and the saga releases the stock again.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Any

from celery import Celery
from celery.utils.log import get_task_logger

from sagakit.messaging import Envelope

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
LEDGER = os.environ.get("FLASK_CELERY_LEDGER", "flask-celery-ledger.db")
CARD_LIMIT = int(os.environ.get("FLASK_CELERY_CARD_LIMIT", "1000"))

logger = get_task_logger(__name__)
app = Celery("shop", broker=BROKER_URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def record(saga_id: str, action: str) -> None:
    """Note that ``action`` was done for ``saga_id`` (once, however often)."""
    with closing(sqlite3.connect(LEDGER, timeout=10)) as db, db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS ledger ("
            "saga_id TEXT NOT NULL, action TEXT NOT NULL, "
            "PRIMARY KEY (saga_id, action))"
        )
        db.execute("INSERT OR IGNORE INTO ledger VALUES (?, ?)", (saga_id, action))


def answer(
    command: Envelope,
    *,
    ok: bool = True,
    payload: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Send the reply to ``command`` as the task sagakit waits for."""
    reply = command.reply(ok=ok, payload=payload, error=error)
    logger.info("reply %s to %s (%s)", reply.type, command.reply_to, command.headers)
    app.send_task(
        f"{command.type}.response.{'success' if ok else 'failure'}",
        args=[reply.model_dump(mode="json")],
        queue=command.reply_to,
        serializer="json",
    )


def reserve(envelope: dict[str, Any]) -> None:
    command = Envelope.model_validate(envelope)
    saga_id = command.saga_id or command.correlation_id
    record(saga_id, "reserve")
    answer(command, payload={"reservation_id": f"R-{saga_id}"})


def release(envelope: dict[str, Any]) -> None:
    command = Envelope.model_validate(envelope)
    record(command.saga_id or command.correlation_id, "release")
    answer(command)


def charge(envelope: dict[str, Any]) -> None:
    command = Envelope.model_validate(envelope)
    saga_id = command.saga_id or command.correlation_id
    amount = int(command.payload["amount"])
    if amount > CARD_LIMIT:
        message = f"card declined: {amount} is over the limit of {CARD_LIMIT}"
        answer(command, ok=False, error={"type": "CardDeclined", "message": message})
        return
    record(saga_id, "charge")
    answer(command, payload={"payment_id": f"P-{saga_id}"})


# registered by name: the task's name is the command's type
app.task(name="stock.reserve")(reserve)
app.task(name="stock.release")(release)
app.task(name="payment.charge")(charge)
