"""The CreateOrder example: the consumer, kitchen and accounting
participants and the order service's worker over RabbitMQ, then one order
per flow of its README, placed with ``place_order --wait``."""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys

from examples.runner.processes import (
    ROOT,
    Service,
    free_port,
    listening,
    logged,
    sagakit,
    uvicorn,
)
from examples.runner.run import Scenario, Setup

PACKAGE = "examples.create_order"
PARTICIPANTS = {
    "consumer": f"{PACKAGE}.consumer_service:consumers",
    "kitchen": f"{PACKAGE}.kitchen_service:kitchen",
    "accounting": f"{PACKAGE}.accounting_service:accounting",
}
ORDER_SERVICE = f"{PACKAGE}.order_service"
PREFIX_ENV = "CREATE_ORDER_QUEUE_PREFIX"
WAIT = 30.0  # seconds an order may take
FLOWS = (  # name, consumer, amount, how the saga ends
    ("an approved order", "alice", 25, "succeeded"),
    ("a declined card (amount over the limit)", "alice", 5000, "compensated"),
    ("an unknown consumer", "nobody", 25, "compensated"),
)


class CreateOrder:
    name = "create-order"
    title = "an orchestrated saga across four services (PostgreSQL, RabbitMQ)"

    def env(self, setup: Setup) -> dict[str, str]:
        return {PREFIX_ENV: os.environ.get(PREFIX_ENV) or "example."}

    def services(self, setup: Setup) -> list[Service]:
        db = ["--db", setup.db, "--log-level", "INFO"]
        found = [
            Service(
                name,
                sagakit(*db, "participant", target, "--transport", setup.broker),
                logged(f"participant {name} handling"),
            )
            for name, target in PARTICIPANTS.items()
        ]
        return [*found, self.order_service(setup, db)]

    def order_service(self, setup: Setup, db: list[str]) -> Service:
        """The worker; or, should the order service be a web app
        (``order_service:app``), that app under uvicorn."""
        try:
            module = importlib.import_module(ORDER_SERVICE)
        except ImportError:  # the worker's log will say why
            module = None
        if hasattr(module, "app"):
            port = free_port()
            return Service(
                "order", uvicorn(f"{ORDER_SERVICE}:app", port), listening(port)
            )
        replies = f"{setup.env[PREFIX_ENV]}replies"
        argv = sagakit(
            *db,
            "worker",
            ORDER_SERVICE,
            "--transport",
            setup.broker,
            "--reply-queue",
            replies,
        )
        return Service("order", argv, logged("worker "))

    def scenarios(self, setup: Setup) -> list[Scenario]:
        return [
            Scenario(
                f"{name}: {consumer} orders {amount}",
                ending,
                functools.partial(place, setup, consumer, amount),
            )
            for name, consumer, amount, ending in FLOWS
        ]


def place(setup: Setup, consumer: str, amount: int) -> str:
    """How the order's saga ended, as ``place_order --wait`` says."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            f"{PACKAGE}.place_order",
            "--consumer-id",
            consumer,
            "--amount",
            str(amount),
            "--wait",
            str(WAIT),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT + 30,
        check=False,
        cwd=ROOT,
        env=setup.env,
    )
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) < 2:
        reason = (done.stderr or done.stdout).strip().splitlines()
        return f"place_order exited {done.returncode}: {reason[-1] if reason else ''}"
    return lines[-1]
