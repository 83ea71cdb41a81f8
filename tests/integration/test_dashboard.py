"""The dashboard over a real SQLite store, through httpx's ASGI transport.

Actions run on real sagas: the dashboard commits them and hands the instance
over, and a second orchestrator (standing in for a worker) finishes it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.workflows.transfer_fund import Bank, Transfer, build_app
from fastapi import FastAPI

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, SQLiteStore, Step
from sagakit.adapters.store.memory import InMemoryStore
from sagakit.adapters.store.workflow_memory import InMemoryWorkflowStore
from sagakit.adapters.store.workflow_sqlite import SQLiteWorkflowStore
from sagakit.dashboard import create_app
from sagakit.dashboard.app import CSP
from sagakit.dashboard.auth import SESSION_COOKIE
from sagakit.testing import FakeClock
from sagakit.workflow import WorkflowApp
from tests.e2e.test_cli_workflows import fill

TOKEN = "s3cret-operator-token"  # noqa: S105 - a test token
WRONG = "not-the-token"
XSS = "<script>alert('pwned')</script>"


class Switch:
    """Steps that fail while ``broken``: ``ship`` after the pivot."""

    def __init__(self) -> None:
        self.broken = True
        self.log: list[str] = []

    def step(self, name: str) -> Any:
        def action(ctx: object) -> str:
            self.log.append(name)
            if name == "ship" and self.broken:
                raise OSError("carrier down")
            return f"{name}-ref"

        return action

    def undo(self, name: str) -> Any:
        def compensate(ctx: object, result: object) -> None:
            self.log.append(f"undo {name}")

        return compensate


def order_saga(switch: Switch) -> Saga[Any]:
    return Saga(
        "order",
        [
            Step("reserve", switch.step("reserve"), compensate=switch.undo("reserve")),
            Step("charge", switch.step("charge"), pivot=True),
            Step("ship", switch.step("ship"), retry=RetryPolicy(attempts=2)),
        ],
    )


def no_stock(ctx: object) -> None:
    raise LookupError("out of stock")


def refund_saga(switch: Switch) -> Saga[Any]:
    """Fails before its pivot: compensates ``hold``."""
    return Saga(
        "refund",
        [
            Step("hold", switch.step("hold"), compensate=switch.undo("hold")),
            Step("pick", no_stock),
        ],
    )


def hostile(ctx: object) -> None:
    raise ValueError(f"bad input {XSS}")


hostile_saga: Saga[Any] = Saga("hostile", [Step("parse", hostile)])


@dataclass
class Env:
    path: Path
    store: SQLiteStore
    switch: Switch
    order: Saga[Any]
    refund: Saga[Any]
    orch: Orchestrator
    app: FastAPI
    client: httpx.AsyncClient

    async def version(self, saga_id: str) -> int:
        return (await self.store.get(saga_id)).version

    async def finish(self, saga_id: str) -> SagaStatus:
        """What a worker does next: recover the handed-over saga, run it."""
        worker = Orchestrator(SQLiteStore(self.path), [self.order, self.refund])
        try:
            await worker.recover()
            result = await asyncio.wait_for(worker.wait(saga_id), 5)
            return result.status
        finally:
            await worker.close()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    path = tmp_path / "dash.db"
    store = SQLiteStore(path)
    switch = Switch()
    order, refund = order_saga(switch), refund_saga(switch)
    orch = Orchestrator(store, [order, refund, hostile_saga])
    app = create_app(store, [order, refund], token=TOKEN)
    async with client_for(app) as client:
        yield Env(path, store, switch, order, refund, orch, app, client)
    await orch.close()


def form(**fields: str) -> dict[str, Any]:
    """A form post: who (used when it signs in with the token) and why."""
    return {"data": {"operator": "alice", "reason": "operator test"} | fields}


BEARER = {"Authorization": f"Bearer {TOKEN}", "X-Sagakit-Operator": "alice"}


def api(reason: str = "operator test", **fields: str) -> dict[str, Any]:
    """An API call's keywords: the token, who (a header) and why."""
    return {"headers": BEARER, "json": {"reason": reason} | fields}


# -- reading ---------------------------------------------------------------


async def test_list_shows_sagas_newest_first_with_counts(env: Env) -> None:
    failed = await env.orch.run(env.order)
    compensated = await env.orch.run(env.refund)
    running = await env.orch.submit(env.order)

    page = await env.client.get("/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    body = page.text
    ids = [running, compensated.saga_id, failed.saga_id]
    positions = [body.index(f'href="/sagas/{i}"') for i in ids]
    assert positions == sorted(positions)  # newest first
    assert '<span class="n" data-status="failed">1</span>' in body
    assert '<span class="n" data-status="compensated">1</span>' in body
    assert '<span class="n" data-status="running">1</span>' in body
    assert "OSError: carrier down" in body
    assert 'data-src="/api/counts"' in body


async def test_counts_endpoint_is_json_and_follows_the_saga_filter(env: Env) -> None:
    await env.orch.run(env.order)
    await env.orch.run(env.refund)
    await env.orch.run(env.refund)

    everything = (await env.client.get("/api/counts")).json()
    refunds = (await env.client.get("/api/counts", params={"saga": "refund"})).json()

    assert everything["counts"] == {
        "running": 0,
        "compensating": 0,
        "succeeded": 0,
        "compensated": 2,
        "compensation_failed": 0,
        "failed": 1,
    }
    assert everything["total"] == 3
    assert refunds["counts"]["compensated"] == 2
    assert refunds["total"] == 2


async def test_list_filters_by_status_and_saga(env: Env) -> None:
    failed = await env.orch.run(env.order)
    compensated = await env.orch.run(env.refund)

    by_status = (await env.client.get("/", params={"status": "failed"})).text
    by_saga = (await env.client.get("/", params={"saga": "refund"})).text
    none = (await env.client.get("/", params={"status": "succeeded"})).text
    api = (await env.client.get("/api/sagas", params={"status": "compensated"})).json()

    assert failed.saga_id in by_status
    assert compensated.saga_id not in by_status
    assert compensated.saga_id in by_saga
    assert failed.saga_id not in by_saga
    assert "No sagas match these filters." in none
    assert [s["saga_id"] for s in api["sagas"]] == [compensated.saga_id]


async def test_list_filters_by_age(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "age.db")
    definition: Saga[Any] = Saga("tick", [Step("a", lambda ctx: 1)])
    start = 1_800_000_000.0
    old = await Orchestrator(store, [definition], clock=FakeClock(start)).run(
        definition
    )
    new = await Orchestrator(store, [definition], clock=FakeClock(start + 7200)).run(
        definition
    )
    app = create_app(store, [definition], clock=FakeClock(start + 7260))
    async with client_for(app) as client:
        recent = (await client.get("/", params={"age": "1h"})).text
        older = (await client.get("/", params={"age": ">1h"})).text
        anything = (await client.get("/", params={"age": ""})).text

    assert new.saga_id in recent
    assert old.saga_id not in recent
    assert old.saga_id in older
    assert new.saga_id not in older
    assert old.saga_id in anything
    assert new.saga_id in anything
    await store.close()


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/", {"status": "sleeping"}, "invalid status &#39;sleeping&#39;"),
        ("/", {"age": "soon"}, "invalid age &#39;soon&#39;"),
        ("/", {"limit": "0"}, "invalid limit 0"),
        (
            "/workflows",
            {"status": "compensated"},
            "invalid status &#39;compensated&#39;: use one of pending, running, "
            "succeeded, failed",
        ),
        ("/workflows", {"limit": "lots"}, "invalid limit &#39;lots&#39;"),
        ("/workflows", {"limit": "501"}, "invalid limit 501: use 1 to 500"),
    ],
)
async def test_a_bad_filter_is_a_400_with_the_reason(
    env: Env, path: str, params: dict[str, str], message: str
) -> None:
    page = await env.client.get(path, params=params)
    assert page.status_code == 400
    assert message in page.text


async def test_detail_shows_the_timeline_like_sagakit_show(env: Env) -> None:
    failed = await env.orch.run(env.order)
    compensated = await env.orch.run(env.refund)

    page = await env.client.get(f"/sagas/{failed.saga_id}")
    rolled_back = await env.client.get(f"/sagas/{compensated.saga_id}")

    assert page.status_code == 200
    body = page.text
    for step in ("reserve", "charge", "ship"):
        assert f"<td>{step}</td>" in body
    assert '<dd class="error">OSError: carrier down</dd>' in body
    assert '<span class="status failed" id="status">failed</span>' in body
    # ship: two attempts, both failed, each with its duration in ms
    ship_rows = re.findall(
        r'<tr class="kind-action">\s*<td class="num">\d+</td>\s*'
        r'<td class="num">\d+</td>\s*<td>action</td>\s*<td>ship</td>\s*'
        r'<td class="num">(\d)</td>\s*<td><span class="outcome (\w+)">',
        body,
    )
    assert ship_rows == [("1", "failed"), ("2", "failed")]
    assert "reserve-ref" in body  # results are shown
    assert 'action="/sagas/' in body  # a failed saga offers "Retry"
    assert 'name="token"' in body
    assert "<td>compensation</td>" in rolled_back.text
    assert "<td>hold</td>" in rolled_back.text
    assert "undone: hold" in rolled_back.text
    assert "LookupError: out of stock" in rolled_back.text
    # nothing to retry, resume or cancel: only a fork is offered
    assert re.findall(r'action="/sagas/\w+/(\w+)"', rolled_back.text) == ["fork"]


async def test_detail_lists_each_steps_status_and_result(env: Env) -> None:
    failed = await env.orch.run(env.order)

    page = await env.client.get(f"/sagas/{failed.saga_id}")
    api = await env.client.get(f"/api/sagas/{failed.saga_id}")

    steps = re.findall(
        r"<tr>\s*<td>(\w+)</td>\s*<td><span class=\"outcome \w+\">(\w+)</span></td>"
        r'\s*<td class="detail" title="([^"]*)">([^<]*)</td>',
        page.text,
    )
    assert steps == [
        ("reserve", "succeeded", "reserve-ref", "reserve-ref"),
        ("charge", "succeeded", "charge-ref", "charge-ref"),
        ("ship", "failed", "", ""),
    ]
    assert api.json()["steps"] == {
        "reserve": {"status": "succeeded", "result": "reserve-ref"},
        "charge": {"status": "succeeded", "result": "charge-ref"},
        "ship": {"status": "failed", "result": None},
    }


async def test_detail_by_prefix_redirects_and_unknown_is_404(env: Env) -> None:
    failed = await env.orch.run(env.order)

    by_prefix = await env.client.get(f"/sagas/{failed.saga_id[:10]}")
    unknown = await env.client.get("/sagas/nosuchsaga")
    api = await env.client.get(f"/api/sagas/{failed.saga_id}")

    assert by_prefix.status_code == 307
    assert by_prefix.headers["location"] == f"/sagas/{failed.saga_id}"
    assert unknown.status_code == 404
    assert "nosuchsaga" in unknown.text
    data = api.json()
    assert data["status"] == "failed"
    assert data["failed_step"] == "ship"
    ship = [
        (h["attempt"], h["outcome"])
        for h in data["history"]
        if h["step"] == "ship" and h["outcome"] != "started"
    ]
    assert ship == [(1, "failed"), (2, "failed")]


# -- tokens ----------------------------------------------------------------


async def test_actions_without_the_right_token_change_nothing(env: Env) -> None:
    failed = await env.orch.run(env.order)
    env.switch.broken = False
    url = f"/sagas/{failed.saga_id}/retry"
    before = await env.version(failed.saga_id)

    nothing = await env.client.post(url)
    bad_scheme = await env.client.post(url, headers={"Authorization": f"Basic {TOKEN}"})
    wrong_bearer = await env.client.post(
        url, headers={"Authorization": f"Bearer {WRONG}"}
    )
    wrong_form = await env.client.post(url, **form(token=WRONG))
    forged_cookie = await env.client.post(
        url,
        headers={"Cookie": f"{SESSION_COOKIE}=forged"},
        **form(csrf="forged"),
    )

    assert nothing.status_code == 401
    assert nothing.headers["www-authenticate"].startswith("Bearer")
    assert "operator token is needed" in nothing.text
    assert bad_scheme.status_code == 401
    assert wrong_bearer.status_code == 403
    assert wrong_bearer.json() == {"detail": "the operator token is wrong"}
    assert wrong_form.status_code == 403
    assert "operator token is wrong" in wrong_form.text
    assert forged_cookie.status_code == 403
    assert SESSION_COOKIE not in wrong_form.cookies
    assert await env.version(failed.saga_id) == before
    assert (await env.store.get(failed.saga_id)).status is SagaStatus.FAILED


async def test_a_token_in_the_query_string_is_not_accepted(env: Env) -> None:
    failed = await env.orch.run(env.order)
    env.switch.broken = False
    before = await env.version(failed.saga_id)
    url = f"/sagas/{failed.saga_id}/retry"

    in_query = await env.client.post(f"{url}?token={TOKEN}")
    in_query_api = await env.client.post(f"{url}?access_token={TOKEN}&csrf={TOKEN}")
    as_get = await env.client.get(f"{url}?token={TOKEN}")

    assert in_query.status_code == 401
    assert in_query_api.status_code == 401
    assert as_get.status_code == 405  # actions are POST only
    assert SESSION_COOKIE not in in_query.cookies
    assert await env.version(failed.saga_id) == before
    assert (await env.store.get(failed.saga_id)).status is SagaStatus.FAILED


async def test_a_session_cookie_needs_the_csrf_field(env: Env) -> None:
    failed = await env.orch.run(env.order)
    env.switch.broken = False
    url = f"/sagas/{failed.saga_id}/retry"
    # a refused action with the right token still signs the form in
    done = await env.orch.run(env.refund)
    await env.client.post(f"/sagas/{done.saga_id}/retry", **form(token=TOKEN))
    assert SESSION_COOKIE in env.client.cookies

    without_csrf = await env.client.post(url, **form())
    page = (await env.client.get(f"/sagas/{failed.saga_id}")).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)

    assert without_csrf.status_code == 403
    assert (await env.store.get(failed.saga_id)).status is SagaStatus.FAILED
    assert csrf is not None
    assert 'name="token"' not in page  # signed in: no token field
    with_csrf = await env.client.post(url, **form(csrf=csrf.group(1)))
    assert with_csrf.status_code == 303
    assert (await env.store.get(failed.saga_id)).status is SagaStatus.RUNNING
    forget = await env.client.post("/logout")
    assert forget.status_code == 303
    assert SESSION_COOKIE not in env.client.cookies


async def test_read_only_dashboard_refuses_every_action(env: Env) -> None:
    failed = await env.orch.run(env.order)
    app = create_app(env.store, [env.order])  # no token
    async with client_for(app) as client:
        page = (await client.get(f"/sagas/{failed.saga_id}")).text
        answer = await client.post(
            f"/sagas/{failed.saga_id}/retry",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert "read-only" in page
    assert 'name="token"' not in page
    assert answer.status_code == 403
    assert "read-only" in answer.json()["detail"]
    assert (await env.store.get(failed.saga_id)).status is SagaStatus.FAILED


# -- actions ---------------------------------------------------------------


async def test_retry_a_failed_saga_after_the_fix_through_the_api(env: Env) -> None:
    failed = await env.orch.run(env.order)
    env.switch.broken = False

    answer = await env.client.post(
        f"/sagas/{failed.saga_id}/retry", **api(reason="carrier is back")
    )

    assert answer.status_code == 200
    assert answer.json() == {
        "saga_id": failed.saga_id,
        "action": "retry",
        "status": "running",
        "message": "Retry requested",
        "by": "alice",
        "next": "no worker owns this saga now: a running `sagakit worker MODULE` "
        "claims it at its next poll; with none running, start one or run "
        "`sagakit recover MODULE`",
    }
    history = await env.store.history(failed.saga_id)
    requested = [h for h in history if h.outcome == "retry_requested"]
    assert requested[0].result["by"] == "alice"
    assert requested[0].result["reason"] == "carrier is back"
    assert await env.finish(failed.saga_id) is SagaStatus.SUCCEEDED
    assert env.switch.log[-1] == "ship"


async def test_retry_through_the_form_redirects_with_a_flash(env: Env) -> None:
    failed = await env.orch.run(env.order)
    env.switch.broken = False

    answer = await env.client.post(
        f"/sagas/{failed.saga_id}/retry", **form(token=TOKEN)
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/sagas/{failed.saga_id}?flash=retry"
    cookie = answer.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie
    assert TOKEN not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    page = (await env.client.get(answer.headers["location"])).text
    assert "Retry requested: the saga is now running; no worker owns" in page
    assert 'signed in as <strong class="operator">alice</strong>' in page
    assert '<span class="status running" id="status">running</span>' in page
    assert await env.finish(failed.saga_id) is SagaStatus.SUCCEEDED


async def test_cancel_a_running_saga(env: Env) -> None:
    saga_id = await env.orch.submit(env.order)  # committed, waiting for a worker
    page = (await env.client.get(f"/sagas/{saga_id}")).text
    assert "Cancel saga" in page

    answer = await env.client.post(
        f"/sagas/{saga_id}/cancel", **form(token=TOKEN, reason="customer asked")
    )

    assert answer.status_code == 303
    after = (await env.client.get(answer.headers["location"])).text
    record = await env.store.get(saga_id)
    assert record.status in (SagaStatus.COMPENSATING, SagaStatus.COMPENSATED)
    assert f"Cancel requested: the saga is now {record.status.value};" in after
    assert "Cancelled: customer asked" in after
    if not record.status.terminal:
        assert await env.finish(saga_id) is SagaStatus.COMPENSATED
    assert "reserve" not in env.switch.log  # it never ran


async def test_pause_and_unpause_a_running_saga(env: Env) -> None:
    saga_id = await env.orch.submit(env.order)  # committed, waiting for a worker
    before = (await env.client.get(f"/sagas/{saga_id}")).text
    assert f'action="/sagas/{saga_id}/pause"' in before
    assert f'action="/sagas/{saga_id}/cancel"' in before

    paused = await env.client.post(f"/sagas/{saga_id}/pause", **api())

    assert paused.status_code == 200
    assert paused.json()["message"] == "Pause requested"
    page = (await env.client.get(f"/sagas/{saga_id}")).text
    assert "running (paused)" in page
    assert f'action="/sagas/{saga_id}/unpause"' in page
    assert f'action="/sagas/{saga_id}/cancel"' not in page  # refused while paused
    assert (await env.store.get(saga_id)).state.paused
    again = await env.client.post(f"/sagas/{saga_id}/pause", **api())
    assert again.status_code == 409
    unpaused = await env.client.post(f"/sagas/{saga_id}/unpause", **api())
    assert unpaused.status_code == 200
    assert not (await env.store.get(saga_id)).state.paused


async def test_an_action_that_does_not_fit_is_a_409_and_changes_nothing(
    env: Env,
) -> None:
    compensated = await env.orch.run(env.refund)
    before = await env.version(compensated.saga_id)
    url = f"/sagas/{compensated.saga_id}/retry"

    by_api = await env.client.post(url, **api())
    html = await env.client.post(url, **form(token=TOKEN))
    cancel = await env.client.post(f"/sagas/{compensated.saga_id}/cancel", **api())

    assert by_api.status_code == 409
    assert "only a failed saga" in by_api.json()["detail"]
    assert html.status_code == 409
    assert '<div class="flash error" role="alert">Refused retry' in html.text
    assert "only a failed saga" in html.text
    assert cancel.status_code == 409
    assert "only a running saga can be cancelled" in cancel.json()["detail"]
    assert await env.version(compensated.saga_id) == before


async def test_unknown_saga_action_and_missing_definition(env: Env) -> None:
    hostile = await env.orch.run(hostile_saga)  # the dashboard has no definition
    missing = await env.client.post("/sagas/nosuchsaga/retry", **api())
    bad_action = await env.client.post(f"/sagas/{hostile.saga_id}/delete", **api())
    undefined = await env.client.post(f"/sagas/{hostile.saga_id}/cancel", **api())

    assert missing.status_code == 404
    assert bad_action.status_code == 404
    assert undefined.status_code == 409
    assert "no definition of saga 'hostile'" in undefined.json()["detail"]


# -- escaping and headers --------------------------------------------------


async def test_user_controlled_text_is_escaped(env: Env) -> None:
    result = await env.orch.run(hostile_saga, {"note": XSS, XSS: "key"})
    escaped = "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"

    detail = await env.client.get(f"/sagas/{result.saga_id}")
    listing = await env.client.get("/")
    missing = await env.client.get("/sagas/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    by_saga = await env.client.get("/", params={"saga": XSS, "age": XSS})

    for page in (detail, listing):
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert escaped in page.text
    assert "&lt;script&gt;" in detail.text  # the context, pretty-printed
    assert missing.status_code == 404
    assert "<img" not in missing.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in missing.text
    assert "<script>alert" not in by_saga.text
    for page in (detail, listing, missing, by_saga):  # only the dashboard's own
        assert page.text.count("<script") == 1
        assert '<script src="/static/dashboard.js?v=' in page.text


async def test_pages_carry_a_strict_content_security_policy(env: Env) -> None:
    for path in ("/", "/api/counts", "/sagas/nosuch"):
        answer = await env.client.get(path)
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    css = await env.client.get("/static/dashboard.css")
    js = await env.client.get("/static/dashboard.js")
    assert css.status_code == 200
    assert js.status_code == 200
    assert "fetch(source" in js.text


# -- workflows -------------------------------------------------------------

QUOTED = """say "hi" & 'bye'"""


@pytest.fixture
async def flows(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The instances ``sagakit workflows`` is tested on (each in a situation
    an operator meets, run by the examples' apps), a transfer due in two
    hours with hostile text in its id, input and state, and a saga. The
    dashboard finds the workflow tables on the saga store, as ``sagakit
    dashboard`` does."""
    path = tmp_path / "flows.db"
    await fill(path)
    store = SQLiteStore(path)
    hostile = Transfer(source=QUOTED, target=XSS, amount=1)
    transfers = build_app(SQLiteWorkflowStore(store), Bank())
    state = {"note": XSS, XSS: QUOTED}
    await transfers.start(XSS, "debit", hostile, delay=7200, state=state)
    await Orchestrator(store, [hostile_saga]).run(hostile_saga)
    async with client_for(create_app(store)) as client:
        yield client
    await store.close()


def listed(body: str) -> list[tuple[str, str]]:
    """(app, id) of the rows of the workflow list, in order."""
    return re.findall(
        r'<td class="mono"><a href="/workflows/[^"]+">([^<]+)</a></td>\s*'
        r"<td>([^<]*)</td>",
        body,
    )


def cells(body: str, app: str, instance_id: str) -> list[str]:
    """The cells after the id in the row of ``app/instance_id``."""
    row = re.search(rf'href="/workflows/{app}/{instance_id}">.*?</tr>', body, re.S)
    assert row is not None
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)


HOSTILE_ID = "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"


async def test_workflow_list_shows_instances_newest_first(
    flows: httpx.AsyncClient,
) -> None:
    page = await flows.get("/workflows")

    assert page.status_code == 200
    body = page.text
    assert [i for i, _ in listed(body)] == [
        HOSTILE_ID,
        "pay-o1",
        "pay-o2",
        "approve-42",
        "pay-o1",
        "transfer-retry-01",
        "transfer-broken-01",
        "transfer-ok-0001",
    ]
    for status, n in (("pending", 5), ("running", 1), ("succeeded", 1), ("failed", 1)):
        assert f'<span class="n" data-status="{status}">{n}</span>' in body
    assert 'data-src="/api/workflow-counts"' in body
    app, status, step, due, updated = cells(body, "transfer_fund", "transfer-retry-01")
    assert (app, status, step) == (
        "transfer_fund",
        '<span class="status pending">pending</span>',
        "credit",
    )
    assert due.endswith("s ago")  # its retry timer is due and not run yet
    assert updated.endswith("ago")
    assert cells(body, "payment_webhook", "pay-o1")[3].startswith("in 4m")
    assert cells(body, "approval", "approve-42")[3] == "on call"
    assert cells(body, "transfer_fund", "transfer-ok-0001")[2:4] == ["", ""]
    failure = (
        "step debit failed: BankUnavailable: cannot debit alice (after 2 attempts)"
    )
    assert f'title="{failure}"' in body
    # the nav links both ways, and marks where the page is
    assert '<a href="/workflows" aria-current="page">workflows</a>' in body
    sagas = (await flows.get("/")).text
    assert '<a href="/" aria-current="page">sagas</a>' in sagas
    assert '<a href="/workflows">workflows</a>' in sagas


async def test_workflow_counts_and_list_api_follow_the_filters(
    flows: httpx.AsyncClient,
) -> None:
    everything = (await flows.get("/api/workflow-counts")).json()
    transfers = (
        await flows.get("/api/workflow-counts", params={"app": "transfer_fund"})
    ).json()
    failed = (await flows.get("/api/workflows", params={"status": "FAILED"})).json()
    one = (await flows.get("/api/workflows", params={"limit": "1"})).json()
    bad = await flows.get("/api/workflows", params={"status": "asleep"})

    assert everything == {
        "counts": {"pending": 5, "running": 1, "succeeded": 1, "failed": 1},
        "total": 8,
    }
    assert transfers == {
        "counts": {"pending": 3, "running": 0, "succeeded": 1, "failed": 1},
        "total": 5,
    }
    [broken] = failed["workflows"]
    assert broken["instance_id"] == "transfer-broken-01"
    assert broken["app"] == "transfer_fund"
    assert broken["step"] == "debit"
    assert broken["attempts"] == 2
    assert "input" not in broken  # the list leaves input and state out
    assert [w["instance_id"] for w in one["workflows"]] == [XSS]
    assert bad.status_code == 400
    assert "invalid status 'asleep'" in bad.json()["detail"]


async def test_workflow_list_filters_by_status_app_and_limit(
    flows: httpx.AsyncClient,
) -> None:
    pending = (await flows.get("/workflows", params={"status": "pending"})).text
    by_app = (await flows.get("/workflows", params={"app": "payment_webhook"})).text
    limited = (await flows.get("/workflows", params={"limit": "2"})).text
    nothing = (await flows.get("/workflows", params={"app": "nope"})).text

    assert len(listed(pending)) == 5
    assert "pay-o2" not in pending
    assert listed(by_app) == [
        ("pay-o2", "payment_webhook"),
        ("pay-o1", "payment_webhook"),
    ]
    assert 'data-src="/api/workflow-counts?app=payment_webhook"' in by_app
    assert '<span class="n" data-status="running">1</span>' in by_app
    assert 'href="/workflows?status=failed&amp;app=payment_webhook"' in by_app
    assert listed(limited) == [
        (HOSTILE_ID, "transfer_fund"),
        ("pay-o1", "transfer_fund"),
    ]
    assert "No workflow instances match these filters." in nothing


async def test_workflow_detail_shows_the_call_state_and_history(
    flows: httpx.AsyncClient,
) -> None:
    retrying = await flows.get("/workflows/transfer_fund/transfer-retry-01")
    failed = await flows.get("/workflows/transfer_fund/transfer-broken-01")
    done = await flows.get("/workflows/transfer_fund/transfer-ok-0001")

    assert retrying.status_code == 200
    body = retrying.text
    assert '<span class="status pending" id="status">pending</span>' in body
    assert fact("pending call", "credit") in body
    assert re.search(r"<dt>due</dt>\s*<dd class=\"\">[-\d :]+ \(\d+s ago\)</dd>", body)
    assert "<h2>Input of credit</h2>" in body
    assert "&#34;source&#34;: &#34;alice&#34;" in body  # the call's input
    assert "&#34;credit_failures&#34;: 1" in body  # the state
    history = re.findall(
        r'<td>(\w*)</td>\s*<td class="num">(\d+)</td>\s*'
        r'<td><span class="outcome (\w+)">',
        body,
    )
    assert history == [
        ("debit", "0", "started"),
        ("debit", "1", "succeeded"),
        ("credit", "1", "succeeded"),  # it called itself again, in two seconds
    ]
    assert "&#34;next&#34;: &#34;credit&#34;, &#34;delay&#34;: 2.0" in body
    assert fact("failed step", "debit") in failed.text
    assert fact("attempts", "2") in failed.text
    assert (
        '<dd class="error">step debit failed: BankUnavailable: cannot debit alice '
        "(after 2 attempts)</dd>" in failed.text
    )
    assert '<span class="outcome retrying">retrying</span>' in failed.text
    assert "Input of" not in done.text  # nothing pending
    assert fact("steps done", "2") in done.text


def fact(label: str, value: str, css: str = "") -> str:
    return f'<dt>{label}</dt>\n    <dd class="{css}">{value}</dd>'


async def test_workflow_detail_of_calls_workers_and_shared_ids(
    flows: httpx.AsyncClient,
) -> None:
    webhook = (await flows.get("/workflows/payment_webhook/pay-o1")).text
    transfer = (await flows.get("/workflows/transfer_fund/pay-o1")).text
    waiting = (await flows.get("/workflows/approval/approve-42")).text
    running = (await flows.get("/workflows/payment_webhook/pay-o2")).text

    assert fact("pending call", "webhook") in webhook  # the app tells them apart
    assert "(in 4m" in webhook
    assert "&#34;order_id&#34;: &#34;o1&#34;" in webhook
    assert fact("pending call", "debit") in transfer
    assert fact("due", "when called (an external event)") in waiting
    assert "&#34;asked&#34;: &#34;manager&#34;" in waiting
    assert fact("running step", "deposit") in running
    assert '<dd class="mono">worker-7 (lease until ' in running


async def test_workflow_detail_api_and_unknown_ids(flows: httpx.AsyncClient) -> None:
    api = (await flows.get("/api/workflows/transfer_fund/transfer-retry-01")).json()
    unknown = await flows.get("/workflows/transfer_fund/nosuch")
    other_app = await flows.get("/workflows/approval/transfer-ok-0001")
    unknown_api = await flows.get("/api/workflows/transfer_fund/nosuch")

    assert api["status"] == "pending"
    assert api["step"] == "credit"
    assert api["input"] == {"source": "alice", "target": "bob", "amount": 10}
    assert api["state"] == {"credit_failures": 1}
    assert [(h["step"], h["outcome"]) for h in api["history"]] == [
        ("debit", "started"),
        ("debit", "succeeded"),
        ("credit", "succeeded"),
    ]
    assert unknown.status_code == 404
    assert "workflow transfer_fund/nosuch does not exist" in unknown.text
    assert '<a href="/workflows">all workflows</a>' in unknown.text
    assert other_app.status_code == 404
    assert unknown_api.status_code == 404
    assert "does not exist" in unknown_api.json()["detail"]


async def test_workflow_pages_escape_ids_inputs_and_state(
    flows: httpx.AsyncClient,
) -> None:
    listing = await flows.get("/workflows")
    link = re.search(r'<a href="(/workflows/transfer_fund/%3C[^"]+)">', listing.text)
    assert link is not None
    assert link.group(1) == (
        "/workflows/transfer_fund/%3Cscript%3Ealert%28%27pwned%27%29%3C%2Fscript%3E"
    )

    detail = await flows.get(link.group(1))
    api = await flows.get(f"/api{link.group(1)}")
    missing = await flows.get("/workflows/%3Cimg%20src%3Dx%3E/%22%3E%3Cb%3E")
    filtered = await flows.get("/workflows", params={"app": XSS, "status": XSS})

    assert detail.status_code == 200
    assert fact("id", HOSTILE_ID, "mono") in detail.text
    quoted = "&#34;say \\&#34;hi\\&#34; &amp; &#39;bye&#39;&#34;"
    assert f"&#34;source&#34;: {quoted}" in detail.text  # the input
    assert f"&#34;{HOSTILE_ID}&#34;: {quoted}" in detail.text  # the state
    assert api.json()["state"] == {"note": XSS, XSS: QUOTED}
    assert api.json()["instance_id"] == XSS
    assert missing.status_code == 404
    assert "&lt;img src=x&gt;/&#34;&gt;&lt;b&gt;" in missing.text
    assert filtered.status_code == 400
    for page in (listing, detail, missing, filtered):
        assert "<script>alert" not in page.text
        assert "<img" not in page.text
        assert page.text.count("<script") == 1  # only the dashboard's own
        assert page.headers["content-security-policy"] == CSP
    assert HOSTILE_ID in listing.text
    assert HOSTILE_ID in filtered.text  # in the message of the refused filter


async def test_a_database_without_workflow_tables_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bare.db", migrate=False)
    async with client_for(create_app(store)) as client:
        page = await client.get("/workflows")
        counts = await client.get("/api/workflow-counts")
        listing = await client.get("/api/workflows")
        detail = await client.get("/workflows/transfer_fund/transfer-ok-0001")
    async with client_for(create_app(InMemoryStore())) as client:
        in_memory = await client.get("/workflows")
    await store.close()

    assert page.status_code == 200
    assert "this database has no workflow tables" in page.text
    assert "sagakit db migrate" in page.text
    assert 'id="counts"' not in page.text  # nothing to poll
    assert counts.status_code == 404
    assert "no workflow tables" in counts.json()["detail"]
    assert listing.status_code == 404
    assert detail.status_code == 404
    assert "no workflow tables" in detail.text
    assert in_memory.status_code == 200
    assert "only inside the process running them" in in_memory.text


async def test_a_workflow_store_can_be_passed_in() -> None:
    workflows = InMemoryWorkflowStore()
    clock = FakeClock()
    transfer = Transfer(source="alice", target="bob", amount=10)
    transfers = build_app(workflows, Bank(), clock=clock)
    await transfers.start("later", "debit", transfer, delay=60)
    dashboard = create_app(InMemoryStore(), clock=clock, workflows=workflows)
    async with client_for(dashboard) as client:
        listing = await client.get("/workflows")
        detail = await client.get("/workflows/transfer_fund/later")

    assert listed(listing.text) == [("later", "transfer_fund")]
    assert fact("pending call", "debit") in detail.text
    assert "(in 1m)</dd>" in detail.text


async def test_workflow_pages_show_the_version_and_why_an_instance_waits() -> None:
    workflows = InMemoryWorkflowStore()
    clock = FakeClock()
    transfer = Transfer(source="alice", target="bob", amount=10)
    old = build_app(workflows, Bank(), clock=clock)
    await old.start("old", "debit", transfer)
    new = WorkflowApp("transfer_fund", workflows, clock=clock, version=2)

    @new.step
    def pay(input: Any) -> None:
        return None

    await new.start("new", "pay", {}, delay=60)
    assert await new.run_until_idle() == 0  # reports "old" waiting
    dashboard = create_app(InMemoryStore(), clock=clock, workflows=workflows)
    async with client_for(dashboard) as client:
        listing = (await client.get("/workflows")).text
        detail = (await client.get("/workflows/transfer_fund/old")).text

    reason = "waiting: needs transfer_fund v1, not registered here (have v2)"
    assert listed(listing) == [("old", "transfer_fund"), ("new", "transfer_fund v2")]
    assert f'<span class="status waiting" title="{reason}">' in listing
    assert '<span class="status waiting" id="status">waiting</span>' in detail
    shape = f"transfer_fund v1 (shape {old.fingerprint})"
    assert fact("definition", shape, "mono") in detail
    assert fact("error", reason, "error") in detail
