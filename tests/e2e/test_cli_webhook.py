"""``sagakit worker --webhook URL``: a worker process tells a real local
receiver, with a request signed by ``$SAGAKIT_WEBHOOK_SECRET``, when a saga
it drives ends failed; without the secret the command refuses to start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from sagakit import Orchestrator, SQLiteStore
from sagakit.hooks import SIGNATURE_HEADER, verify_signature
from tests.e2e import hooks_app
from tests.e2e.test_cli import assert_one_error_line, sagakit
from tests.hook_receiver import Receiver

pytestmark = pytest.mark.e2e

TARGET = "tests.e2e.hooks_app:saga"
SECRET = "whsec-cli-test-0123456789"  # noqa: S105 - a test secret
ROOT = Path(__file__).parents[2]
PATH = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
"""Where the worker process finds sagakit and ``TARGET``."""


def test_a_webhook_without_its_secret_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")
    refused = sagakit(
        "--db", db, "worker", TARGET, "--webhook", "http://127.0.0.1:9/hook",
        cwd=tmp_path, env=PATH | {"SAGAKIT_WEBHOOK_SECRET": ""},
    )  # fmt: skip
    assert_one_error_line(refused)
    assert "$SAGAKIT_WEBHOOK_SECRET" in refused.stderr


async def test_a_worker_posts_a_signed_event_when_a_saga_fails(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    store = SQLiteStore(db)
    saga_id = await Orchestrator(store, [hooks_app.saga]).submit(
        hooks_app.saga, saga_id="order-17"
    )
    await store.close()
    env = {k: v for k, v in os.environ.items() if k != "SAGAKIT_DATABASE_URL"}
    env |= PATH | {"SAGAKIT_WEBHOOK_SECRET": SECRET}
    async with Receiver() as receiver:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sagakit.cli.main", "--db", str(db), "worker",
            TARGET, "--webhook", receiver.url, cwd=tmp_path, env=env,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                (request,) = await receiver.wait_for(1)
        finally:
            worker.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                code = await worker.wait()
    assert code == 0  # drained
    event = json.loads(request.body)
    assert (event["type"], event["saga_id"]) == ("saga.failed", saga_id)
    assert event["saga"]["failed_step"] == "ship"
    assert verify_signature(
        SECRET, request.body, request.headers[SIGNATURE_HEADER.lower()]
    )
