"""The parking choreography: the booking, billing and parking services
(FastAPI, each under uvicorn) over RabbitMQ, then the two flows of its
README through the example's command line (``examples.parking.cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from examples.runner.processes import ROOT, RunFailed, Service, free_port, uvicorn
from examples.runner.run import Scenario, Setup

PACKAGE = "examples.parking"
SERVICES = {  # service -> the variable its clients find it by
    "booking": "PARKING_BOOKING_URL",
    "billing": "PARKING_BILLING_URL",
    "parking": "PARKING_SLOTS_URL",
}
PREFIX_ENV = "PARKING_QUEUE_PREFIX"
WAIT = 30.0  # seconds a booking may take


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).is_success
    except httpx.HTTPError:
        return False


def serving(url: str) -> Callable[[Service], bool]:
    """Ready once the service at ``url`` answers ``/health``."""
    return lambda _: healthy(url)


class Parking:
    name = "parking"
    title = "a choreography of three services (PostgreSQL, RabbitMQ)"

    def __init__(self) -> None:
        self.ports = {name: free_port() for name in SERVICES}
        self.slot = ""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self, setup: Setup) -> dict[str, str]:
        return {
            PREFIX_ENV: os.environ.get(PREFIX_ENV) or "example.",
            **{var: self.url(name) for name, var in SERVICES.items()},
        }

    def services(self, setup: Setup) -> list[Service]:
        return [
            Service(
                name,
                uvicorn(f"{PACKAGE}.{name}_service:app", self.ports[name]),
                serving(self.url(name)),
            )
            for name in SERVICES
        ]

    def scenarios(self, setup: Setup) -> list[Scenario]:
        return [
            Scenario(
                "a booking, paid: the slot is reserved, the booking done",
                "booking done, slot reserved",
                lambda: self.first_booking(setup),
            ),
            Scenario(
                "a second booking of the same slot, paid: refunded, failed",
                "booking failed, bill refunded",
                lambda: self.second_booking(setup),
            ),
        ]

    def first_booking(self, setup: Setup) -> str:
        self.slot = cli(setup, "create_parking", "--name", "Slot 1")["uuid"]
        ref = book_and_pay(setup, self.slot)
        booking = wait_for(setup, "booking_list", ref, ("done", "failed"))
        slot = cli(setup, "parking_slot_details", "--uuid", self.slot)
        return f"booking {booking}, slot {slot['status']}"

    def second_booking(self, setup: Setup) -> str:
        ref = book_and_pay(setup, self.slot)
        booking = wait_for(setup, "booking_list", ref, ("done", "failed"))
        bill = wait_for(setup, "billing_request_list", ref, ("refunded",))
        return f"booking {booking}, bill {bill}"


def run_cli(setup: Setup, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.cli", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
        cwd=ROOT,
        env=setup.env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def cli(setup: Setup, *args: str) -> dict[str, str]:
    """The ``key: value`` lines a details command prints."""
    pairs = (ln.split(":", 1) for ln in run_cli(setup, *args).splitlines() if ":" in ln)
    return {k.strip(): v.strip() for k, v in pairs}


def listed(setup: Setup, command: str, ref: str) -> dict[str, Any] | None:
    """The item of a list command (one JSON object a line) naming ``ref``."""
    for line in run_cli(setup, command).splitlines():
        item: dict[str, Any] = json.loads(line)
        if ref in (str(v) for v in item.values()):
            return item
    return None


def wait_for(setup: Setup, command: str, ref: str, ends: tuple[str, ...]) -> str:
    """The status of ``ref``'s item once it is one of ``ends`` (or, after
    WAIT seconds, whatever it is)."""
    deadline = time.monotonic() + WAIT
    while True:
        item = listed(setup, command, ref)
        status = "missing" if item is None else str(item.get("status"))
        if status in ends or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def book_and_pay(setup: Setup, slot: str) -> str:
    """Book ``slot``, wait for the bill, pay it; the booking's reference."""
    ref = cli(setup, "create_booking", "--parking_slot_uuid", slot)["reference_no"]
    if wait_for(setup, "billing_request_list", ref, ("pending",)) != "pending":
        raise RunFailed(f"no bill for booking {ref} after {WAIT:g}s")
    cli(setup, "pay_bill", "--ref_no", ref, "--amount", "100")
    return ref
