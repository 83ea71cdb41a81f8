"""The Flask app: place orders and read how their sagas went.

::

    flask --app examples.flask_celery.web run --port 5000

``POST /orders`` (JSON: ``order_id``, ``item``, ``quantity``, ``amount``)
commits a saga and answers 202 with its id, the order id: the order id is the
idempotency key, so the same order sent twice is one saga. ``GET
/orders/<order_id>`` answers its status, step results and error. The saga
itself runs in a ``sagakit worker``; the store is ``$SAGAKIT_DATABASE_URL``.

Flask is synchronous and sagakit asynchronous: :class:`SagaGateway` keeps one
event loop in a background thread, with one store open on it, and every
request hands its call to that loop and waits for the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flask import Flask, request
from pydantic import ValidationError

from examples.flask_celery.orders import Order, order_saga, queue
from sagakit.adapters.store import open_store_async
from sagakit.errors import SagaNotFound
from sagakit.runtime.client import SagaClient

T = TypeVar("T")
CALL_TIMEOUT = 10.0
"""Seconds a request waits for the store."""


class SagaGateway:
    """sagakit's client for synchronous code: one loop thread, one store."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url  # None: $SAGAKIT_DATABASE_URL
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: SagaClient | None = None

    def _started(self) -> tuple[asyncio.AbstractEventLoop, SagaClient]:
        with self._lock:
            if self._loop is None or self._client is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, daemon=True).start()
                opening = asyncio.run_coroutine_threadsafe(
                    open_store_async(self.url), loop
                )
                store = opening.result(CALL_TIMEOUT)
                # the replies to the commands of a saga's first step go where
                # the worker listens: ``sagakit worker --reply-queue``
                client = SagaClient(store, [order_saga], reply_queue=queue("replies"))
                self._loop, self._client = loop, client
            return self._loop, self._client

    def call(self, action: Callable[[SagaClient], Awaitable[T]]) -> T:
        """Run ``action(client)`` on the loop and return what it returned."""
        loop, client = self._started()

        async def run() -> T:
            return await action(client)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(CALL_TIMEOUT)


def create_app(url: str | None = None) -> Flask:
    app = Flask(__name__)
    sagas = SagaGateway(url)

    @app.post("/orders")
    def place_order() -> tuple[dict[str, Any], int]:
        try:
            order = Order.model_validate(request.get_json(silent=True) or {})
        except ValidationError as exc:
            return {"detail": exc.errors(include_url=False, include_context=False)}, 400
        saga_id = sagas.call(
            lambda client: client.submit(
                order_saga,
                order,
                saga_id=order.order_id,
                idempotency_key=order.order_id,
            )
        )
        return {"order_id": saga_id}, 202

    @app.get("/orders/<order_id>")
    def order_status(order_id: str) -> tuple[dict[str, Any], int]:
        try:
            result = sagas.call(lambda client: client.result(order_id))
        except SagaNotFound:
            return {"detail": f"no order {order_id}"}, 404
        return {
            "order_id": order_id,
            "status": result.status.value,
            "results": result.results,
            "failed_step": result.failed_step,
            "error": None if result.error is None else result.error.message,
        }, 200

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
