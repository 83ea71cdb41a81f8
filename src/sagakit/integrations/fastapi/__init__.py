"""sagakit in a FastAPI application (the ``fastapi`` extra).

::

    from fastapi import FastAPI
    from sagakit.integrations.fastapi import SagasDep, sagakit_lifespan

    app = FastAPI(lifespan=sagakit_lifespan(DATABASE_URL, [order_saga], migrate=True))

    @app.post("/orders")
    async def place(order: Order, sagas: SagasDep) -> dict[str, str]:
        saga_id = await sagas.start(order_saga, order, idempotency_key=order.id)
        return {"saga_id": saga_id}

- :func:`sagakit_lifespan` opens the store (a URL or a store object), migrates
  it if asked, runs an in-process orchestrator or a worker (or nothing: the
  app only submits), starts a choreography's event bus, and on shutdown
  drains: the steps in flight finish (up to ``drain_timeout``) and every saga
  driven here is released for another process. The app's own lifespan runs
  inside it (``lifespan=``).
- :data:`SagasDep` (``Depends(get_sagas)``) gives a handler the
  :class:`Sagas` client: start sagas (with idempotency keys), read their
  status and results.
- :func:`mount_dashboard` mounts the dashboard as a sub-application behind
  the app's own authorization.
"""

from __future__ import annotations

from sagakit._extras import needs_extra

with needs_extra("sagakit.integrations.fastapi needs FastAPI", "fastapi", "dashboard"):
    import fastapi  # noqa: F401

from sagakit.integrations.fastapi.dashboard import mount_dashboard
from sagakit.integrations.fastapi.lifespan import SagakitLifespan, sagakit_lifespan
from sagakit.integrations.fastapi.sagas import Sagas, SagasDep, get_sagas, result_json

__all__ = [
    "SagakitLifespan",
    "Sagas",
    "SagasDep",
    "get_sagas",
    "mount_dashboard",
    "result_json",
    "sagakit_lifespan",
]
