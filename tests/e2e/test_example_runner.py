"""``python -m examples.runner`` (``make example-create-order``): one run of
the CreateOrder example end to end, on a queue prefix of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from examples.runner.create_order import PARTICIPANTS

from tests.conftest import delete_rabbitmq_queues, run_sync

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
]

ROOT = Path(__file__).parents[2]


def runner(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.runner", *args],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_create_order_runs_every_flow_and_stops_everything(
    pg_template: str, rabbitmq_url: str
) -> None:
    prefix = f"run-{uuid.uuid4().hex[:8]}."
    try:
        done = runner(
            "create-order",
            "--transport",
            rabbitmq_url,
            CREATE_ORDER_QUEUE_PREFIX=prefix,
        )
    finally:
        names = [f"{prefix}{p}" for p in PARTICIPANTS] + [f"{prefix}replies"]
        queues = [f"sagakit.{n}{dlq}" for n in names for dlq in ("", ".dlq")]
        run_sync(delete_rabbitmq_queues(*queues))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "starting consumer, kitchen, accounting, order" in out
    assert out.count("    ok: ") == 3
    assert "ok: succeeded" in out
    assert "create-order: 3 of 3 scenario(s) as expected" in out
    assert "stopping 4 service(s)" in out
