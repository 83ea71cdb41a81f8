"""The dashboard shows how a workflow instance ended: the result its last
step returned, or the ``FatalError`` that failed it at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sagakit import SQLiteStore
from sagakit.dashboard import create_app
from tests.e2e.test_cli_workflows import fill_endings
from tests.integration.test_dashboard import client_for, fact


@pytest.fixture
async def ended(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "endings.db"
    await fill_endings(path)
    store = SQLiteStore(path)
    async with client_for(create_app(store)) as client:
        yield client
    await store.close()


async def detail(client: httpx.AsyncClient, instance_id: str, status: str) -> str:
    """The page of a checkout, checked to show ``status``."""
    page = await client.get(f"/workflows/checkout/{instance_id}")
    assert page.status_code == 200
    assert f'<span class="status {status}" id="status">{status}</span>' in page.text
    return page.text


async def test_a_succeeded_instance_shows_its_result(
    ended: httpx.AsyncClient,
) -> None:
    page = await detail(ended, "checkout-ok", "succeeded")

    assert "<h2>Result</h2>" in page
    assert (
        '<pre class="context" id="result">{\n'
        "  &#34;order&#34;: &#34;o1&#34;,\n"
        "  &#34;total&#34;: 12.5,\n"
        "  &#34;note&#34;: &#34;merci é&#34;\n"
        "}</pre>"
    ) in page
    shown = (await ended.get("/api/workflows/checkout/checkout-ok")).json()
    assert shown["result"] == {"order": "o1", "total": 12.5, "note": "merci é"}
    listed = (await ended.get("/api/workflows")).json()["workflows"]
    assert [w["instance_id"] for w in listed] == ["checkout-stolen", "checkout-ok"]
    assert "result" not in listed[1]  # the list leaves it out, as input and state


async def test_a_fatal_error_shows_as_the_instance_error(
    ended: httpx.AsyncClient,
) -> None:
    page = await detail(ended, "checkout-stolen", "failed")

    assert fact("attempts", "1") in page
    assert (
        fact(
            "error",
            "step charge failed: FatalError: card of order o2 reported stolen",
            "error",
        )
        in page
    )
    assert "<h2>Result</h2>" not in page
    assert '<span class="outcome failed">failed</span>' in page
