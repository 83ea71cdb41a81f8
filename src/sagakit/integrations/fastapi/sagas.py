"""What a request handler gets: :class:`Sagas`, through ``Depends(get_sagas)``.

Started with a runner (``run="orchestrator"`` or ``"worker"``), a saga is
driven in this process at once; without one (``run=None``) it is committed
for a ``sagakit worker`` elsewhere to claim. Either way its id is returned
as soon as the start is durable, and any process can read its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from sagakit.definition.saga import Saga
from sagakit.engine.state import SagaStatus
from sagakit.errors import SagaError
from sagakit.ports.store import SagaStore
from sagakit.runtime.client import SagaClient
from sagakit.runtime.orchestrator import Orchestrator
from sagakit.runtime.result import SagaResult

C = TypeVar("C", bound=BaseModel)

STATE_KEY = "sagakit"
"""Where the lifespan puts its :class:`Sagas`: the lifespan state
(``request.state.sagakit``) and ``app.state.sagakit``."""


class Sagas:
    """Start sagas and read them, on the store the lifespan opened.

    ``orchestrator`` drives what ``start`` begins in this process (None:
    ``start`` only commits, for a worker to claim). Only the sagas given to
    the lifespan may be started: a process that restarts must know every
    saga it may have to resume.
    """

    def __init__(
        self,
        store: SagaStore,
        sagas: Mapping[str, Saga[Any]],
        orchestrator: Orchestrator | None = None,
        *,
        reply_queue: str = "sagakit.replies",
    ) -> None:
        self.store = store
        self.sagas = dict(sagas)
        self.orchestrator = orchestrator
        self.client: SagaClient = (
            orchestrator.client
            if orchestrator is not None
            else SagaClient(store, self.sagas.values(), reply_queue=reply_queue)
        )

    def definition(self, saga: Saga[Any] | str) -> Saga[Any]:
        """The registered definition ``saga`` names (a name or the object)."""
        name = saga if isinstance(saga, str) else saga.name
        known = self.sagas.get(name)
        if known is None:
            registered = ", ".join(sorted(self.sagas)) or "none"
            raise SagaError(
                f"saga {name!r} is not registered with sagakit_lifespan(sagas=...) "
                f"(registered: {registered})"
            )
        if not isinstance(saga, str) and known is not saga:
            raise SagaError(
                f"saga {name!r} is another definition than the one given to "
                "sagakit_lifespan(sagas=...): pass that one (or its name)"
            )
        return known

    async def start(
        self,
        saga: Saga[C] | str,
        context: C | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        saga_id: str | None = None,
    ) -> str:
        """Start a saga and return its id once the start is committed.

        With an ``idempotency_key`` this saga already used (a client that
        sent the same request twice), nothing new starts: the first
        instance's id is returned. A ``saga_id`` that is taken raises
        :class:`~sagakit.errors.SagaAlreadyExists`."""
        definition = self.definition(saga)
        if self.orchestrator is not None:
            return await self.orchestrator.start(
                definition, context, idempotency_key=idempotency_key, saga_id=saga_id
            )
        return await self.client.submit(
            definition, context, idempotency_key=idempotency_key, saga_id=saga_id
        )

    async def result(self, saga_id: str) -> SagaResult[Any]:
        """The saga's outcome as stored: it may still be running
        (:class:`~sagakit.errors.SagaNotFound` for an unknown id)."""
        return await self.client.result(saga_id)

    async def status(self, saga_id: str) -> SagaStatus:
        """The saga's status (:class:`~sagakit.errors.SagaNotFound` for an
        unknown id)."""
        return (await self.store.get(saga_id)).status

    async def wait(self, saga_id: str) -> SagaResult[Any]:
        """Wait until the saga ends and return its result (bound it with
        ``asyncio.timeout``: the saga goes on when the wait stops)."""
        if self.orchestrator is not None:
            return await self.orchestrator.wait(saga_id)
        return await self.client.wait(saga_id)


def result_json(result: SagaResult[Any]) -> dict[str, Any]:
    """A result as JSON-ready data: what a handler may answer with."""
    return {
        "saga_id": result.saga_id,
        "saga": result.saga_name,
        "status": result.status.value,
        "results": result.results,
        "failed_step": result.failed_step,
        "error": None if result.error is None else str(result.error),
    }


def get_sagas(request: Request) -> Sagas:
    """The dependency: the :class:`Sagas` of the running lifespan."""
    found = getattr(request.state, STATE_KEY, None)
    if found is None:
        found = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(found, Sagas):
        raise SagaError(
            "no sagakit here: make the app's lifespan sagakit_lifespan(...) "
            "(FastAPI(lifespan=sagakit_lifespan(...))), and run the app with "
            "its lifespan (uvicorn does; TestClient needs 'with TestClient(app)')"
        )
    return found


SagasDep = Annotated[Sagas, Depends(get_sagas)]
"""``sagas: SagasDep`` in a handler's parameters gives it :class:`Sagas`."""
