"""What the dashboard tells an operator, through httpx's ASGI transport on
real stores: who drives each saga (orphaned, unclaimed), the search box
(id prefix, idempotency key, correlation ids, context text), pages past
the first one, choreography timelines, and the saga page's pictures."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagakit import Orchestrator, Parallel, Saga, SagaStatus, SQLiteStore, Step, SubSaga
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.dashboard import create_app
from sagakit.ports.event_store import (
    ChoreographyStatus,
    EventOutcome,
    EventRecord,
    Progress,
)
from sagakit.ports.store import SagaStore

TOKEN = "s3cret-operator-token"  # noqa: S105 - a test token
XSS = "<script>alert('pwned')</script>"


def ok(ctx: object) -> str:
    return "done"


def undo(ctx: object, result: object) -> None:
    return None


def no_room(ctx: object) -> None:
    raise LookupError("no room")


child: Saga[Any] = Saga("child", [Step("one", ok), Step("two", ok)])
trip: Saga[Any] = Saga(
    "trip",
    [
        Parallel(
            Step("flight", ok, compensate=undo),
            Step("hotel", no_room),
            Step("car", ok, compensate=undo),
        ),
        Step("confirm", ok, pivot=True),
    ],
)
parent: Saga[Any] = Saga("parent", [Step("prepare", ok), Step("pay", SubSaga(child))])


@dataclass
class Env:
    store: SagaStore
    orch: Orchestrator
    client: httpx.AsyncClient

    async def page(self, url: str, **params: Any) -> str:
        response = await self.client.get(url, params=params)
        assert response.status_code == 200, response.text
        return response.text

    async def api(self, url: str, **params: Any) -> Any:
        response = await self.client.get(url, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(params=["memory", "sqlite"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    store: SagaStore = (
        InMemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    )
    orch = Orchestrator(store, [trip, parent])
    app = create_app(store, [trip, parent], token=TOKEN, worker_hint="myapp.sagas")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Env(store, orch, client)
    await orch.close()


async def test_orphaned_and_unclaimed_sagas_are_marked(env: Env) -> None:
    driven = await env.orch.submit(trip, saga_id="driven-1")
    await env.store.claim("live-worker", ["trip"], lease=600.0)
    orphan = await env.orch.submit(trip, saga_id="orphan-1")
    await env.store.claim("gone-worker", ["trip"], lease=-1.0)  # lease over
    unclaimed = await env.orch.submit(trip, saga_id="unclaimed-1")
    done = await env.orch.run(trip, saga_id="done-1")

    listed = await env.api("/api/sagas")
    drivers = {s["saga_id"]: s["driver"] for s in listed["sagas"]}
    assert drivers[orphan]["state"] == "orphaned"
    assert drivers[orphan]["owner"] == "gone-worker"
    assert drivers[unclaimed] == {
        "state": "unclaimed",
        "owner": None,
        "text": "nobody: no process has claimed it",
    }
    assert drivers[driven]["state"] == "driven"
    assert drivers[done.saga_id]["state"] == "ended"
    body = await env.page("/")
    assert body.count('class="badge orphaned"') == 1
    assert body.count('class="badge unclaimed"') == 1

    page = await env.page(f"/sagas/{orphan}")
    assert 'id="nobody-drives"' in page
    assert "gone-worker stopped driving it (its lease expired)" in page
    assert "sagakit --db DATABASE worker myapp.sagas" in page
    assert "running for " in page
    assert "running in" not in page  # not the time between its two saves
    assert 'id="nobody-drives"' not in await env.page(f"/sagas/{driven}")


async def test_after_an_action_nobody_drives_it_says_so(env: Env) -> None:
    saga_id = await env.orch.submit(trip)
    response = await env.client.post(
        f"/sagas/{saga_id}/cancel",
        data={"token": TOKEN, "operator": "maria", "reason": "changed plans"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", response.text)).split())
    assert "Cancel requested: the saga is now compensating; no worker owns" in text
    assert "claims it at its next poll" in text
    assert "`sagakit recover myapp.sagas`" in text  # the module the app was given
    notice = "No process is driving this saga (nobody: no process has claimed it)"
    assert notice in text


async def test_search_finds_by_every_way(env: Env) -> None:
    await env.orch.run(trip, {"traveller": "Maria", "city": "Oslo"}, saga_id="t-oslo")
    await env.orch.run(
        trip, {"traveller": "Jon"}, saga_id="t-jon", idempotency_key="booking-81"
    )
    await env.orch.run(parent, saga_id="p-1")

    async def found(query: str) -> dict[str, str]:
        data = await env.api("/api/search", q=query)
        return {s["saga_id"]: s["matched"] for s in data["sagas"]}

    assert await found("t-oslo") == {"t-oslo": "id"}
    assert await found("t-") == {"t-jon": "id prefix", "t-oslo": "id prefix"}
    assert await found("p-1") == {"p-1": "id", "p-1/pay": "id prefix"}
    assert await found("booking-81") == {"t-jon": "idempotency key"}
    assert await found("t-jon:hotel:2") == {"t-jon": "correlation id"}
    assert await found("OSLO") == {"t-oslo": "context"}
    assert await found("nothing at all") == {}
    page = await env.page("/", q="maria")
    assert "t-oslo" in page
    assert "t-jon" not in page
    assert "context" in page
    hostile = await env.page("/", q=XSS)
    assert XSS not in hostile
    assert html.escape(XSS) in hostile or "&lt;script&gt;" in hostile
    too_long = await env.client.get("/", params={"q": "x" * 201})
    assert too_long.status_code == 400
    assert (await env.client.get("/api/search")).status_code == 400


async def test_pages_go_past_the_first(env: Env) -> None:
    for n in range(7):
        await env.orch.submit(trip, saga_id=f"s{n}")
    every = [s["saga_id"] for s in (await env.api("/api/sagas"))["sagas"]]
    seen: list[str] = []
    after = None
    while True:
        page = await env.api(
            "/api/sagas", limit=3, **({"after": after} if after else {})
        )
        seen += [s["saga_id"] for s in page["sagas"]]
        after = page["next"]
        if after is None:
            break
    assert seen == every
    assert len(seen) == 7
    first = await env.page("/", limit=3)
    assert 'rel="next"' in first
    assert 'class="first"' not in first  # no way back from the first page
    bad = await env.client.get("/", params={"after": "soon:s1"})
    assert bad.status_code == 400
    assert "invalid page" in bad.text
    assert (
        await env.client.get("/api/sagas", params={"after": "nan:x"})
    ).status_code == 400


async def test_a_correlation_id_opens_its_choreography(env: Env) -> None:
    events = env.store.event_store()  # type: ignore[attr-defined]
    progress = Progress("booking", 60.0, lambda seen: ChoreographyStatus.IN_PROGRESS)
    for n, kind in enumerate(["booking.requested", "parking.reserved"]):
        record = EventRecord(
            correlation_id="corr-9",
            choreography="booking",
            service="booking",
            event_type=kind,
            message_id=f"m{n}",
            outcome=EventOutcome.CONSUMED,
            recorded_at=100.0 + n,
            detail=XSS if n else None,
        )
        await events.record_event(record, progress)
    redirect = await env.client.get("/sagas/corr-9")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/choreographies/corr-9"
    page = await env.page("/choreographies/corr-9")
    assert "parking.reserved" in page
    assert "in_progress" in page
    assert XSS not in page
    search = await env.page("/", q="corr-9")
    assert 'href="/choreographies/corr-9"' in search
    api = await env.api("/api/choreographies/corr-9")
    assert [e["event_type"] for e in api["events"]] == [
        "booking.requested",
        "parking.reserved",
    ]
    assert (await env.client.get("/choreographies/nope")).status_code == 404
    assert (await env.client.get("/sagas/nope-nope")).status_code == 404


async def test_the_saga_page_draws_its_timeline_and_graph(env: Env) -> None:
    rolled = await env.orch.run(trip, saga_id="rolled")
    assert rolled.status is SagaStatus.COMPENSATED
    page = await env.page("/sagas/rolled")
    assert page.count('class="bar action ') == 3
    assert page.count('class="bar compensation ') == 2
    assert '<g class="node failed" data-step="hotel">' in page
    assert '<g class="node compensated" data-step="flight">' in page
    assert '<g class="node pending pivot" data-step="confirm">' in page
    assert page.count('class="edge"') == 3
    await env.orch.run(parent, saga_id="p-2")
    parent_page = await env.page("/sagas/p-2")
    assert '<a href="/sagas/p-2%2Fpay">' in parent_page
    assert '<g class="node succeeded sub" data-step="pay">' in parent_page


async def test_without_definitions_the_page_says_why_there_is_no_graph(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "bare.db")
    await Orchestrator(store, [trip]).run(trip, saga_id="t-1")
    app = create_app(store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = (await client.get("/sagas/t-1")).text
    assert 'id="gantt"' in page
    assert 'id="graph"' not in page
    assert "to draw its graph" in page
    await store.close()
