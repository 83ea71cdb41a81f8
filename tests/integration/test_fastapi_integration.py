"""sagakit.integrations.fastapi on real stores: the lifespan (open, migrate,
run, drain, resume), the ``SagasDep`` dependency, the dashboard mounted
behind the app's own check, and the configuration errors.

:class:`Served` runs an app's lifespan as an ASGI server does (startup and
shutdown messages, the lifespan state copied into each request's scope) and
sends requests to it in-process with httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from sagakit import Saga, SagaNotFound, Step
from sagakit.adapters.store import open_store_async
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.sqlite import SQLiteStore
from sagakit.adapters.transport.inprocess import InProcessTransport
from sagakit.definition import Remote
from sagakit.errors import SagaError
from sagakit.integrations.fastapi import (
    SagakitLifespan,
    SagasDep,
    mount_dashboard,
    result_json,
    sagakit_lifespan,
)
from sagakit.messaging.envelope import decode
from sagakit.participant import Participant
from sagakit.runtime import Worker
from tests.conftest import cloned_database


class Served:
    """``async with Served(app) as client``: the app started (its lifespan
    run to ``startup.complete``, or its startup error raised), then stopped
    on exit; ``client`` talks to it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._in: asyncio.Queue[Message] = asyncio.Queue()
        self._out: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        self._task = asyncio.create_task(self.app(scope, self._in.get, self._out.put))
        await self._in.put({"type": "lifespan.startup"})
        answer = await self._answer()
        if answer["type"] == "lifespan.startup.failed":
            await self._task  # raises the startup error
        assert answer["type"] == "lifespan.startup.complete", answer
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.with_state),
            base_url="http://testserver",
        )
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self.stop()

    async def stop(self) -> None:
        await self._in.put({"type": "lifespan.shutdown"})
        answer = await self._answer()
        assert answer["type"] == "lifespan.shutdown.complete", answer
        assert self._task is not None
        await self._task

    async def with_state(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, "state": dict(self.state)}, receive, send)

    async def _answer(self) -> Message:
        """The app's next lifespan message; what it raised if it ended."""
        assert self._task is not None
        answer = asyncio.ensure_future(self._out.get())
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            await self._task  # raises the startup error
            pytest.fail("the lifespan ended without an answer")
        return answer.result()


TOKEN = "an-operator-token-of-some-length"  # noqa: S105 - a test token
WAIT = 20.0  # seconds any one wait may take


class Order(BaseModel):
    order_id: str
    amount: int


async def reserve(ctx: Order) -> dict[str, Any]:
    return {"reserved": ctx.amount}


async def charge(ctx: Order) -> dict[str, Any]:
    return {"charged": ctx.amount, "order": ctx.order_id}


order_saga: Saga[Order] = Saga(
    "order", [Step("reserve", reserve), Step("charge", charge)], context=Order
)


def order_app(lifespan: SagakitLifespan) -> FastAPI:
    """The shape of the tutorial's app: start with a key, read the result."""
    app = FastAPI(lifespan=lifespan)

    @app.post("/orders", status_code=202)
    async def place(order: Order, sagas: SagasDep) -> dict[str, str]:
        saga_id = await sagas.start(order_saga, order, idempotency_key=order.order_id)
        return {"saga_id": saga_id}

    @app.get("/orders/{saga_id}")
    async def read(saga_id: str, sagas: SagasDep) -> dict[str, Any]:
        try:
            return result_json(await sagas.result(saga_id))
        except SagaNotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/orders/{saga_id}/wait")
    async def wait(saga_id: str, sagas: SagasDep) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            return result_json(await sagas.wait(saga_id))

    return app


@pytest.fixture
def empty_pg_url(pg_template: str) -> Iterator[str]:
    """A database with no sagakit tables at all (cloned from template0)."""
    with cloned_database("template0") as url:
        yield url


async def stored(url: str, saga_id: str) -> tuple[Any, list[Any], dict[str, Any]]:
    """The saga's record, history and leases, read by a store of the test's own."""
    store = await open_store_async(url, migrate=False)
    try:
        return (
            await store.get(saga_id),
            await store.history(saga_id),
            await store.leases([saga_id]),
        )
    finally:
        await store.close()


def actions(history: list[Any]) -> list[tuple[str, str]]:
    return [(h.step, h.outcome) for h in history if h.kind == "action"]


async def place_twice(client: httpx.AsyncClient) -> str:
    first = await client.post("/orders", json={"order_id": "o-1", "amount": 25})
    again = await client.post("/orders", json={"order_id": "o-1", "amount": 25})
    assert first.status_code == again.status_code == 202
    saga_id: str = first.json()["saga_id"]
    assert again.json()["saga_id"] == saga_id  # the idempotency key
    return saga_id


async def test_sqlite_orchestrator_starts_once_per_key_and_reads_results(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    app = order_app(sagakit_lifespan(url, [order_saga], migrate=True))
    async with Served(app) as client:
        saga_id = await place_twice(client)
        ended = (await client.get(f"/orders/{saga_id}/wait")).json()
        assert ended == {
            "saga_id": saga_id,
            "saga": "order",
            "status": "succeeded",
            "results": {
                "reserve": {"reserved": 25},
                "charge": {"charged": 25, "order": "o-1"},
            },
            "failed_step": None,
            "error": None,
        }
        assert (await client.get(f"/orders/{saga_id}")).json() == ended
        missing = await client.get("/orders/nope")
        assert missing.status_code == 404
        assert "nope" in missing.json()["detail"]
    record, history, _ = await stored(url, saga_id)
    assert record.status.value == "succeeded"
    assert actions(history) == [("reserve", "succeeded"), ("charge", "succeeded")]


async def test_postgres_worker_on_an_empty_database_migrates_when_asked(
    empty_pg_url: str,
) -> None:
    unmigrated = order_app(sagakit_lifespan(empty_pg_url, [order_saga]))
    with pytest.raises(SagaError, match="has no sagakit tables: pass"):
        async with Served(unmigrated):
            pass
    app = order_app(
        sagakit_lifespan(empty_pg_url, [order_saga], migrate=True, run="worker")
    )
    async with Served(app) as client:
        saga_id = await place_twice(client)
        ended = (await client.get(f"/orders/{saga_id}/wait")).json()
        assert ended["status"] == "succeeded"
        assert ended["results"]["charge"] == {"charged": 25, "order": "o-1"}
    record, history, leases = await stored(empty_pg_url, saga_id)
    assert record.status.value == "succeeded"
    assert actions(history) == [("reserve", "succeeded"), ("charge", "succeeded")]
    assert leases == {}  # ended: nobody holds it


async def test_submit_only_app_leaves_the_saga_to_a_worker_elsewhere(
    pg_url: str,
) -> None:
    app = order_app(sagakit_lifespan(pg_url, [order_saga], run=None))
    async with Served(app) as client:
        saga_id = await place_twice(client)
        assert (await client.get(f"/orders/{saga_id}")).json()["status"] == "running"
        store = await open_store_async(pg_url, migrate=False)
        try:
            await Worker(store, [order_saga]).run(until_idle=True)
        finally:
            await store.close()
        ended = (await client.get(f"/orders/{saga_id}/wait")).json()
        assert ended["status"] == "succeeded"


class Held:
    """A saga whose first step stays in flight until the test lets it go."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.ran: list[str] = []

        async def slow(ctx: Order) -> str:
            self.ran.append("slow")
            self.entered.set()
            await self.release.wait()
            return "slow done"

        async def after(ctx: Order) -> str:
            self.ran.append("after")
            return "after done"

        self.saga = Saga(
            "held", [Step("slow", slow), Step("after", after)], context=Order
        )

    def app(self, lifespan: SagakitLifespan) -> FastAPI:
        app = FastAPI(lifespan=lifespan)

        @app.post("/held")
        async def start(sagas: SagasDep) -> dict[str, str]:
            started = await sagas.start(self.saga, {"order_id": "h", "amount": 1})
            return {"saga_id": started}

        return app


async def until(check: Any) -> None:
    """Until ``check()`` holds (a flag another task sets; bounded)."""
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 - the flag is not ours to make an Event
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("run", ["orchestrator", "worker"])
async def test_shutdown_drains_the_step_in_flight_and_the_next_start_resumes(
    run: str, pg_url: str
) -> None:
    held = Held()
    lifespan = sagakit_lifespan(
        pg_url,
        [held.saga],
        drain_timeout=WAIT,
        run=run,  # type: ignore[arg-type]
    )
    app = held.app(lifespan)
    served = Served(app)
    client = await served.__aenter__()
    saga_id = (await client.post("/held")).json()["saga_id"]
    async with asyncio.timeout(WAIT):
        await held.entered.wait()
    orchestrator = lifespan.sagas.orchestrator
    assert orchestrator is not None
    stopping = asyncio.create_task(served.__aexit__(None, None, None))
    await until(lambda: orchestrator.driver.draining)
    held.release.set()
    async with asyncio.timeout(WAIT):
        await stopping

    # the step in flight finished and was committed; the next never started,
    # and the saga was let go at once for another process
    record, history, leases = await stored(pg_url, saga_id)
    assert held.ran == ["slow"]
    assert record.status.value == "running"
    assert actions(history) == [("slow", "succeeded")]
    assert leases[saga_id].owner is None

    # the app starts again: its orchestrator resumes the saga where it stopped
    async with Served(app):
        async with asyncio.timeout(WAIT):
            ended = await lifespan.sagas.wait(saga_id)
        assert ended.status.value == "succeeded"
    assert held.ran == ["slow", "after"]


@pytest.mark.parametrize("run", ["orchestrator", "worker"])
async def test_drain_timeout_bounds_shutdown_and_leaves_the_saga_resumable(
    run: str, pg_url: str
) -> None:
    held = Held()
    lifespan = sagakit_lifespan(
        pg_url,
        [held.saga],
        drain_timeout=0,
        run=run,  # type: ignore[arg-type]
    )
    async with Served(held.app(lifespan)) as client:
        saga_id = (await client.post("/held")).json()["saga_id"]
        async with asyncio.timeout(WAIT):
            await held.entered.wait()
    # shutdown did not wait for the step (never released): it was cancelled,
    # nothing was recorded for it, and the saga is free for another process
    record, history, leases = await stored(pg_url, saga_id)
    assert record.status.value == "running"
    assert actions(history) == []
    assert leases[saga_id].owner is None


async def test_the_apps_own_lifespan_runs_inside_with_its_state(
    tmp_path: Path,
) -> None:
    seen: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        sagas = app.state.sagakit  # sagakit is open; its runner not started yet
        seen.append(f"enter draining={sagas.orchestrator.driver.draining}")
        yield {"greeting": "hello"}
        seen.append(f"exit draining={sagas.orchestrator.driver.draining}")

    lifespan = sagakit_lifespan(
        f"sqlite:///{tmp_path / 'own.db'}", [order_saga], migrate=True, lifespan=own
    )
    app = order_app(lifespan)

    @app.get("/greeting")
    async def greeting(request: Request, sagas: SagasDep) -> dict[str, str]:
        return {"greeting": request.state.greeting, "store": type(sagas.store).__name__}

    async with Served(app) as client:
        assert (await client.get("/greeting")).json() == {
            "greeting": "hello",
            "store": "SQLiteStore",
        }
    # entered before the orchestrator ran, left after it drained
    assert seen == ["enter draining=False", "exit draining=True"]
    with pytest.raises(SagaError, match="not running"):
        lifespan.sagas  # noqa: B018 - the property raises


async def test_the_dependency_without_the_lifespan_says_what_is_missing() -> None:
    app = order_app(sagakit_lifespan("memory://", [order_saga]))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    )
    async with client:
        with pytest.raises(SagaError, match="no sagakit here"):
            await client.get("/orders/x")


async def test_an_unregistered_saga_is_refused_by_name() -> None:
    other = Saga("other", [Step("reserve", reserve)], context=Order)
    app = FastAPI(lifespan=sagakit_lifespan("memory://", [order_saga]))

    @app.post("/other")
    async def start(sagas: SagasDep) -> dict[str, str]:
        return {"id": await sagas.start(other, {"order_id": "x", "amount": 1})}

    async with Served(app) as client:
        with pytest.raises(SagaError, match="'other' is not registered"):
            await client.post("/other")


# -- the dashboard behind the app's own check ------------------------------


async def staff_only(request: Request) -> None:
    """The app's auth, as an app would write it."""
    if request.headers.get("x-staff") != "yes":
        raise HTTPException(
            401, "staff only", headers={"WWW-Authenticate": 'Bearer realm="app"'}
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_dashboard_is_mounted_behind_the_apps_check(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'dash.db'}"
    )
    lifespan = sagakit_lifespan(url, [order_saga], migrate=True)
    app = order_app(lifespan)
    mount_dashboard(app, lifespan, authorize=staff_only, path="/ops", token=TOKEN)
    staff = {"x-staff": "yes"}
    async with Served(app) as client:
        saga_id = await place_twice(client)
        await client.get(f"/orders/{saga_id}/wait")

        refused = await client.get("/ops/api/sagas")
        assert refused.status_code == 401
        assert refused.json() == {"detail": "staff only"}
        assert refused.headers["www-authenticate"] == 'Bearer realm="app"'

        listed = (await client.get("/ops/api/sagas", headers=staff)).json()
        assert [s["saga_id"] for s in listed["sagas"]] == [saga_id]
        page = await client.get("/ops/", headers=staff)
        assert page.status_code == 200
        assert f'href="/ops/sagas/{saga_id}"' in page.text  # links stay under /ops
        shown = await client.get(f"/ops/sagas/{saga_id}", headers=staff)
        assert shown.status_code == 200
        assert "succeeded" in shown.text

        # acting still takes the dashboard's own token: the app's check says
        # who may look, the token who may act (and names them in the history)
        api = {**staff, "accept": "application/json"}
        untokened = await client.post(f"/ops/sagas/{saga_id}/cancel", headers=api)
        assert untokened.status_code == 401
        tokened = await client.post(
            f"/ops/sagas/{saga_id}/cancel",
            json={"reason": "customer asked"},
            headers={
                **api,
                "authorization": f"Bearer {TOKEN}",
                "x-sagakit-operator": "alice",
            },
        )
        assert tokened.status_code == 409, tokened.text  # it ended: nothing to cancel
        # the app's own routes are not behind the dashboard's check
        assert (await client.get(f"/orders/{saga_id}")).status_code == 200


async def test_dashboard_without_the_apps_check_and_before_startup(
    tmp_path: Path,
) -> None:
    lifespan = sagakit_lifespan(
        f"sqlite:///{tmp_path / 'd.db'}", [order_saga], migrate=True
    )
    app = order_app(lifespan)
    mount_dashboard(app, lifespan, authorize=lambda request: False, path="/no")
    mount_dashboard(app, lifespan, authorize=None)
    cold = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    )
    async with cold:  # no lifespan: the store is not open
        answer = await cold.get("/sagakit/api/sagas")
        assert answer.status_code == 503
        assert "not running" in answer.json()["detail"]
    async with Served(app) as client:
        assert (await client.get("/sagakit/api/sagas")).json() == {
            "sagas": [],
            "next": None,
        }
        assert (await client.get("/no/api/sagas")).status_code == 403


# -- configuration errors ----------------------------------------------------


remote_saga: Saga[Order] = Saga(
    "remote",
    [Step("ask", Remote("svc.ask", lambda ctx: ctx, queue="svc"), timeout=5)],
    context=Order,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"store": "mongodb://x"}, "unsupported database URL scheme: 'mongodb'"),
        ({"store": 42}, "store must be a database URL or a store object"),
        ({"store": ""}, "store must be a database URL"),
        ({"run": "thread"}, "run must be 'orchestrator', 'worker' or None"),
        ({"sagas": order_saga}, "sagas must be a list of Saga definitions"),
        ({"sagas": ["order"]}, "sagas must hold Saga definitions"),
        ({"sagas": []}, "run='orchestrator' with no sagas"),
        ({"transport": "kafka://x"}, "unsupported transport URL 'kafka://x'"),
        ({"transport": object()}, "transport must be a URL or a transport object"),
        ({"drain_timeout": -1}, "drain_timeout must be a finite number >= 0"),
        ({"drain_timeout": float("inf")}, "drain_timeout must be a finite"),
        ({"lease": 0}, "lease must be a finite number > 0"),
        ({"max_active": 0}, "max_active must be an int >= 1"),
        ({"watch": 1.0}, "watch is the event bus's stalled check"),
        ({"migrate": "yes"}, "migrate must be True or False"),
        ({"store": "memory://", "run": None}, "a memory:// store with run=None"),
        ({"lifespan": "mine"}, "lifespan must be the app's own lifespan"),
        ({"reply_queue": ""}, "reply_queue must be a queue name"),
    ],
)
def test_bad_configuration_is_refused_when_the_app_is_built(
    kwargs: dict[str, Any], message: str
) -> None:
    given = {"store": "sqlite:///x.db", "sagas": [order_saga], **kwargs}
    with pytest.raises(SagaError, match=message.replace("(", r"\(")) as caught:
        sagakit_lifespan(**given)
    assert str(caught.value).startswith("sagakit_lifespan: ")


async def test_remote_steps_without_a_transport_fail_at_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SAGAKIT_TRANSPORT_URL", raising=False)
    app = FastAPI(lifespan=sagakit_lifespan("memory://", [remote_saga]))
    with pytest.raises(SagaError, match="saga 'remote' has remote steps: pass"):
        async with Served(app):
            pass
    monkeypatch.setenv("SAGAKIT_TRANSPORT_URL", "kafka://broker")
    with pytest.raises(SagaError, match="unsupported transport URL 'kafka://broker'"):
        async with Served(app):
            pass
    # an app that only submits needs no transport: a worker sends the commands
    submitting = FastAPI(
        lifespan=sagakit_lifespan(
            "sqlite:///:memory:", [remote_saga], run=None, migrate=True
        )
    )
    monkeypatch.delenv("SAGAKIT_TRANSPORT_URL")
    async with Served(submitting):
        pass


class Ticket(BaseModel):
    ticket_id: str


def ask_kitchen(order: Order) -> Order:
    return order


kitchen_saga: Saga[Order] = Saga(
    "kitchen_order",
    [
        Step(
            "ticket",
            Remote("kitchen.ticket", ask_kitchen, queue="kitchen", reply=Ticket),
            timeout=WAIT,
        )
    ],
    context=Order,
)


@pytest.mark.parametrize("run", ["orchestrator", "worker"])
async def test_remote_steps_run_over_the_transport_given(
    run: str, tmp_path: Path
) -> None:
    """A transport object: the runner serves replies on it; the kitchen, a
    participant the app's own lifespan starts, answers on it too."""
    transport = InProcessTransport()
    kitchen = Participant("kitchen", transport, SQLiteStore(tmp_path / "kitchen.db"))

    @kitchen.handler("kitchen.ticket")
    async def ticket(order: Order) -> Ticket:
        return Ticket(ticket_id=f"T-{order.order_id}")

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        await kitchen.start()
        yield
        await kitchen.stop()

    lifespan = sagakit_lifespan(
        f"sqlite:///{tmp_path / 'orders.db'}",
        [kitchen_saga],
        migrate=True,
        run=run,  # type: ignore[arg-type]
        transport=transport,
        lifespan=own,
    )
    app = FastAPI(lifespan=lifespan)

    @app.post("/orders/{order_id}")
    async def place(order_id: str, sagas: SagasDep) -> dict[str, Any]:
        order = Order(order_id=order_id, amount=3)
        saga_id = await sagas.start(kitchen_saga, order, idempotency_key=order_id)
        async with asyncio.timeout(WAIT):
            return result_json(await sagas.wait(saga_id))

    async with Served(app) as client:
        ended = (await client.post("/orders/k-1")).json()
    assert (ended["status"], ended["results"]) == (
        "succeeded",
        {"ticket": {"ticket_id": "T-k-1"}},
    )
    assert kitchen.handled == 1


async def test_a_submitting_app_sends_first_commands_to_its_reply_queue(
    tmp_path: Path,
) -> None:
    """The first step's command leaves with the start a submit-only app
    commits: it must name the reply queue the workers listen on."""
    store_url = f"sqlite:///{tmp_path / 'submit.db'}"
    lifespan = sagakit_lifespan(
        store_url, [remote_saga], run=None, migrate=True, reply_queue="shop.replies"
    )
    async with Served(FastAPI(lifespan=lifespan)):
        await lifespan.sagas.start(remote_saga, {"order_id": "r", "amount": 1})
        store = lifespan.sagas.store
        (sent,) = await store.claim_outbox("test", lease=5)
    assert sent.destination == "svc"
    assert decode(sent.body).reply_to == "shop.replies"


def test_migrate_with_a_store_object_and_bad_mounts_are_refused() -> None:
    with pytest.raises(SagaError, match="migrate=True needs a database URL"):
        sagakit_lifespan(InMemoryStore(), [order_saga], migrate=True)
    lifespan = sagakit_lifespan(InMemoryStore(), [order_saga])
    app = FastAPI(lifespan=lifespan)
    for kwargs, message in [
        ({"path": "sagakit"}, "path must look like '/sagakit'"),
        ({"path": "/"}, "path must look like"),
        ({"token": "short"}, "too short"),
        ({"tokn": TOKEN}, r"unknown option\(s\) tokn"),
        ({"login_required": True}, "login_required needs a token"),
        ({"authorize": "admins"}, "authorize must be a function"),
    ]:
        options: dict[str, Any] = {"authorize": None, **kwargs}
        with pytest.raises(SagaError, match=message):
            mount_dashboard(app, lifespan, **options)
    with pytest.raises(SagaError, match="lifespan must be what sagakit_lifespan"):
        mount_dashboard(app, object(), authorize=None)  # type: ignore[arg-type]
