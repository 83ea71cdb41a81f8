"""A Celery service that knows nothing of sagakit, for the interop test.

``kitchen.create_ticket`` reads the command envelope as a plain dict and
answers the way a Celery participant would: by sending the task
``kitchen.create_ticket.response.success`` (or ``.failure``) whose only
argument is the reply envelope, to the command's ``reply_to`` queue. Run it
with ``celery -A tests.integration.celery_app worker -Q <queue>``; the broker
is ``$SAGAKIT_TEST_CELERY_BROKER_URL`` (RabbitMQ or Redis), else
``$SAGAKIT_TEST_RABBITMQ_URL``.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from celery import Celery

BROKER_URL = os.environ.get("SAGAKIT_TEST_CELERY_BROKER_URL") or os.environ.get(
    "SAGAKIT_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)

app = Celery("kitchen", broker=BROKER_URL, set_as_current=True)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_enable_remote_control=False,  # no pidbox queues left behind
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="kitchen.create_ticket")
def create_ticket(envelope: dict[str, Any]) -> str:
    """Open a ticket, or refuse when the payload asks for it."""
    ok = not envelope["payload"].get("refuse", False)
    reply = {
        "v": 1,
        "id": uuid.uuid4().hex,
        "kind": "reply",
        "type": envelope["type"],
        "correlation_id": envelope["correlation_id"],
        "saga_id": envelope["saga_id"],
        "step": envelope["step"],
        "attempt": envelope["attempt"],
        "compensation": envelope["compensation"],
        "ok": ok,
        "payload": {"ticket_id": f"T-{envelope['saga_id']}", "worker_pid": os.getpid()}
        if ok
        else {},
        "error": None if ok else {"type": "KitchenFull", "message": "no room"},
        "headers": envelope["headers"],
    }
    outcome = "success" if ok else "failure"
    app.send_task(
        f"{envelope['type']}.response.{outcome}",
        args=[reply],
        queue=envelope["reply_to"],
        serializer="json",
    )
    return str(reply["id"])
