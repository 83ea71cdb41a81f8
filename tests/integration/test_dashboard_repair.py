"""The dashboard's actions on one compensation, its forks and its audit
trail, over a real SQLite store through httpx's ASGI transport: who acts
is the name signed in (or the API call's operator), never "dashboard"."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagakit import Orchestrator, RetryPolicy, Saga, SagaStatus, SQLiteStore, Step
from sagakit.dashboard import create_app
from sagakit.dashboard.auth import SESSION_COOKIE
from tests.integration.test_dashboard import TOKEN, client_for

ONCE = RetryPolicy(attempts=1)
BEARER = {"Authorization": f"Bearer {TOKEN}", "X-Sagakit-Operator": "api-bot"}


def refuse(ctx: object) -> None:
    raise ValueError("declined")


def broken_undo(ctx: object) -> None:
    raise OSError("undo down")


UNDOING: Saga[Any] = Saga(
    "undoing",
    [
        Step(
            "reserve",
            lambda ctx: "r-1",
            compensate=broken_undo,
            compensation_retry=ONCE,
        ),
        Step("charge", refuse),
    ],
)
SHIPPING: Saga[Any] = Saga(
    "shipping",
    [
        Step("reserve", lambda ctx: "r-1", compensate=lambda ctx: None),
        Step("charge", lambda ctx: "c-1", pivot=True),
        Step("ship", refuse, retry=ONCE),
    ],
)


@dataclass
class Env:
    store: SQLiteStore
    orch: Orchestrator
    client: httpx.AsyncClient


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = SQLiteStore(tmp_path / "repair.db")
    orch = Orchestrator(store, [UNDOING, SHIPPING])
    app = create_app(store, [UNDOING, SHIPPING], token=TOKEN)
    async with client_for(app) as client:
        yield Env(store, orch, client)
    await orch.close()


def signed_in_form(**fields: str) -> dict[str, Any]:
    return {"data": {"token": TOKEN, "operator": "maria"} | fields}


async def test_mark_compensated_from_the_page_names_the_operator(env: Env) -> None:
    stuck = await env.orch.run(UNDOING)
    assert stuck.status is SagaStatus.COMPENSATION_FAILED
    page = (await env.client.get(f"/sagas/{stuck.saga_id}")).text
    for action in ("retry_compensation", "mark_compensated", "skip_compensation"):
        assert f'action="/sagas/{stuck.saga_id}/{action}"' in page
    assert '<option value="reserve">reserve</option>' in page
    assert "No operator action yet." in page

    answer = await env.client.post(
        f"/sagas/{stuck.saga_id}/mark_compensated",
        **signed_in_form(step="reserve", reason="released it in the ERP"),
    )

    assert answer.status_code == 303
    assert answer.headers["location"].endswith("?flash=mark_compensated")
    after = (await env.client.get(answer.headers["location"])).text
    assert (
        "Step marked compensated: the saga is now compensated; nothing is left "
        "to run: the saga has ended." in after
    )
    audit = re.findall(
        r"<tr>\s*<td>[^<]+</td>\s*<td class=\"operator\">(\w+)</td>\s*"
        r"<td>(\w+)</td>\s*<td>(\w*)</td>\s*<td class=\"detail\">([^<]*)</td>",
        after,
    )
    assert audit == [("maria", "mark_compensated", "reserve", "released it in the ERP")]
    assert 'signed in as <strong class="operator">maria</strong>' in after
    history = await env.store.history(stuck.saga_id)
    assert [h.result["by"] for h in history if h.outcome.endswith("_requested")] == [
        "maria"
    ]


async def test_the_session_holds_the_name_and_cannot_be_renamed(env: Env) -> None:
    first, second = await env.orch.run(UNDOING), await env.orch.run(UNDOING)
    await env.client.post(
        f"/sagas/{first.saga_id}/skip_compensation",
        **signed_in_form(step="reserve", reason="keep it"),
    )
    cookie = env.client.cookies[SESSION_COOKIE]
    page = (await env.client.get(f"/sagas/{second.saga_id}")).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf is not None
    assert 'name="operator"' not in page  # signed in: the session names you
    # another name in the cookie, with maria's MAC: refused
    _, _, mac = cookie.partition(".")
    bob = base64.urlsafe_b64encode(b"bob").decode().rstrip("=")
    env.client.cookies.set(SESSION_COOKIE, f"{bob}.{mac}")
    forged = await env.client.post(
        f"/sagas/{second.saga_id}/skip_compensation",
        data={"csrf": csrf.group(1), "step": "reserve", "reason": "x"},
    )
    assert forged.status_code == 403
    env.client.cookies.set(SESSION_COOKIE, cookie)
    done = await env.client.post(
        f"/sagas/{second.saga_id}/skip_compensation",
        data={"csrf": csrf.group(1), "step": "reserve", "reason": "keep it too"},
    )
    assert done.status_code == 303
    record = await env.store.get(second.saga_id)
    assert record.state.step("reserve").status.value == "compensation_skipped"
    history = await env.store.history(second.saga_id)
    assert history[-2].result["by"] == "maria"


async def test_fork_through_the_api(env: Env) -> None:
    failed = await env.orch.run(SHIPPING)
    answer = await env.client.post(
        f"/sagas/{failed.saga_id}/fork",
        headers=BEARER,
        json={"step": "ship", "reason": "retry on a new instance", "saga_id": "f-1"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["saga_id"] == "f-1"
    assert body["forked_from"] == failed.saga_id
    assert body["by"] == "api-bot"
    assert body["status"] == "running"
    assert body["next"].startswith("no worker owns this saga now")
    fork = await env.store.get("f-1")
    assert fork.state.results == {"reserve": "r-1", "charge": "c-1"}
    source = (await env.client.get(f"/sagas/{failed.saga_id}")).text
    assert "forked into f-1 from step ship" in source
    assert f'action="/sagas/{failed.saga_id}/fork"' not in source  # once only


@pytest.mark.parametrize(
    ("fields", "headers", "status", "message"),
    [
        (
            {"step": "reserve", "reason": "x"},
            {"Authorization": f"Bearer {TOKEN}"},
            400,
            "say who you are",
        ),
        ({"step": "reserve"}, BEARER, 400, "say why"),
        ({"reason": "x"}, BEARER, 400, "needs a step"),
        ({"step": "nope", "reason": "x"}, BEARER, 409, "has no step 'nope'"),
    ],
)
async def test_what_is_missing_or_does_not_fit_changes_nothing(
    env: Env, fields: dict[str, str], headers: dict[str, str], status: int, message: str
) -> None:
    stuck = await env.orch.run(UNDOING)
    before = (await env.store.get(stuck.saga_id)).version
    answer = await env.client.post(
        f"/sagas/{stuck.saga_id}/mark_compensated", headers=headers, json=fields
    )
    assert answer.status_code == status
    assert message in answer.json()["detail"]
    assert (await env.store.get(stuck.saga_id)).version == before


async def test_past_the_pivot_a_compensation_action_is_refused(env: Env) -> None:
    failed = await env.orch.run(SHIPPING)
    page = (await env.client.get(f"/sagas/{failed.saga_id}")).text
    assert "mark_compensated" not in page  # not offered
    answer = await env.client.post(
        f"/sagas/{failed.saga_id}/mark_compensated",
        headers=BEARER,
        json={"step": "reserve", "reason": "x"},
    )
    assert answer.status_code == 409
    assert "past its pivot" in answer.json()["detail"]
