"""A process SIGKILLed while its webhook request is under way: the saga's
end is committed with its notification, so a notifier started afterwards
delivers it (the same event id, signed), and then never again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sagakit import SagaStatus, SQLiteStore
from sagakit.hooks import HookRetry, Hooks, Notifier, verify_signature
from sagakit.ports.notification_store import NotificationStatus
from tests.e2e.hooks_app import SECRET
from tests.e2e.test_cli import sagakit
from tests.hook_receiver import HANG, Receiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

APP = Path(__file__).with_name("hooks_app.py")
ROOT = APP.parents[2]


async def test_a_crash_mid_delivery_loses_no_notification(tmp_path: Path) -> None:
    db = tmp_path / "hooks.db"
    log = tmp_path / "worker.log"
    async with Receiver(answers=[HANG]) as receiver:
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(APP),
                str(db),
                receiver.url,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            try:
                async with asyncio.timeout(30):
                    await receiver.wait_for(1)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
            assert proc.returncode == -signal.SIGKILL, log.read_text()
            store = SQLiteStore(db)
            assert (await store.get("crashing-order")).status is SagaStatus.FAILED
            (held,) = await store.notification_store().notifications()
            assert held.status is NotificationStatus.PENDING  # never marked
            hooks = Hooks(
                webhook=receiver.url,
                secret=SECRET,
                retry=HookRetry(attempts=3, backoff=0.05, max_backoff=0.05),
            )
            notifier = Notifier(store, hooks)
            async with asyncio.timeout(15):  # once the dead one's hold expires
                while notifier.delivered == 0:
                    await notifier.run_once()
                    await asyncio.sleep(0.05)
            for _ in range(3):
                await notifier.run_once()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    hung, delivered = receiver.requests  # and nothing after the delivery
    assert hung.headers["sagakit-event-id"] == delivered.headers["sagakit-event-id"]
    assert verify_signature(
        SECRET, delivered.body, delivered.headers["sagakit-signature"]
    )
    body = json.loads(delivered.body)
    assert body["saga_id"] == "crashing-order"
    assert body["type"] == "saga.failed"
    (note,) = await store.notification_store().notifications()
    assert note.status is NotificationStatus.DELIVERED
    await store.close()


@pytest.mark.parametrize(
    ("secret", "url", "error"),
    [
        ("", "https://ops.example.com/h", "--webhook needs $SAGAKIT_WEBHOOK_SECRET"),
        ("s3cret", "ftp://ops.example.com/h", "must be http:// or https://"),
    ],
)
def test_worker_webhook_refused_in_one_line(
    tmp_path: Path, secret: str, url: str, error: str
) -> None:
    db = tmp_path / "never.db"
    done = sagakit(
        "--db",
        str(db),
        "worker",
        "tests.e2e.hooks_app",
        "--webhook",
        url,
        cwd=ROOT,
        env={"SAGAKIT_WEBHOOK_SECRET": secret},
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {error}") or error in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not db.exists()
