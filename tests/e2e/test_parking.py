"""The parking choreography as three uvicorn processes over RabbitMQ, on
PostgreSQL: both flows through the HTTP APIs and the example's CLI, a
duplicated ``bill.paid``, the tracker's timeline and a stalled booking.

Each test gets a fresh database, free localhost ports and a queue prefix of
its own; every process is reaped, and every wait is bounded.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagakit.adapters.store.event_postgres import PostgresEventStore
from sagakit.adapters.transport.rabbitmq import RabbitTransport
from sagakit.choreography import ChoreographyStatus, EventRecord, Tracker
from sagakit.messaging import Envelope
from tests.conftest import delete_rabbitmq_queues, run_sync

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
    pytest.mark.slow,
]

ROOT = Path(__file__).parents[2]
SERVICES = ("booking", "billing", "parking")
URL_ENV = {
    "booking": "PARKING_BOOKING_URL",
    "billing": "PARKING_BILLING_URL",
    "parking": "PARKING_SLOTS_URL",
}
WAIT = 20.0  # seconds any one wait may take
S = ChoreographyStatus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(what: str, check: Callable[[], bool], seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.05)


class Parking:
    """The three services of one test: processes, ports, logs, queues."""

    def __init__(self, db: str, amqp: str, logs: Path, **env: str) -> None:
        self.db, self.amqp, self.logs = db, amqp, logs
        self.prefix = f"pk-{uuid.uuid4().hex[:10]}."
        self.ports = {name: free_port() for name in SERVICES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.exited: list[subprocess.Popen[bytes]] = []
        self.starts = dict.fromkeys(SERVICES, 0)
        self.env = {
            **os.environ,
            "SAGAKIT_DATABASE_URL": db,
            "SAGAKIT_TRANSPORT_URL": amqp,
            "PARKING_QUEUE_PREFIX": self.prefix,
            "PARKING_WATCH": "0.5",
            "COLUMNS": "200",
            "NO_COLOR": "1",
            **{URL_ENV[n]: self.url(n) for n in SERVICES},
            **env,
        }

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}-{self.starts[name]}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    # -- processes ---------------------------------------------------------

    def start(self, *names: str) -> None:
        for name in names or SERVICES:
            self.starts[name] += 1
            with self.log_path(name).open("wb") as sink:
                self.procs[name] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        f"examples.parking.{name}_service:app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.ports[name]),
                    ],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=self.env,
                )
        for name in names or SERVICES:
            wait_until(f"{name} to serve", lambda n=name: self.ready(n))

    def ready(self, name: str) -> bool:
        self.alive(name)
        try:
            return httpx.get(f"{self.url(name)}/health", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def alive(self, name: str) -> bool:
        code = self.procs[name].poll()
        if code is not None:
            pytest.fail(f"{name} exited with {code}:\n{self.log(name)[-3000:]}")
        return True

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        proc.wait(10)
        self.exited.append(proc)

    def stop_all(self) -> None:
        """SIGTERM everything, then SIGKILL what is still there; reap all."""
        running = list(self.procs.values())
        for proc in running:
            if proc.poll() is None:
                proc.terminate()
        for proc in running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for proc in self.exited:
            proc.wait(10)

    def queues(self) -> list[str]:
        return [
            f"sagakit.{self.prefix}events.{name}{dlq}"
            for name in SERVICES
            for dlq in ("", ".dlq")
        ]

    # -- the example's CLI and HTTP APIs -------------------------------------

    def cli(self, *args: str) -> dict[str, str]:
        """Run ``python -m examples.parking.cli``; its ``key: value`` lines."""
        done = subprocess.run(
            [sys.executable, "-m", "examples.parking.cli", *args],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
            cwd=ROOT,
            env=self.env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        pairs = (line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def get(self, name: str, path: str) -> Any:
        response = httpx.get(f"{self.url(name)}{path}", timeout=5)
        return response.json() if response.is_success else None

    def booking(self, ref: str) -> str:
        return str(self.get("booking", f"/bookings/{ref}")["status"])

    def bill(self, ref: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.get("billing", f"/billing-requests/{ref}")
        return found

    def slot(self, slot_uuid: str) -> str:
        return str(self.get("parking", f"/parking-slots/{slot_uuid}")["status"])

    def book(self, slot_uuid: str) -> str:
        """A booking of the slot, through the CLI, once its bill exists."""
        booking = self.cli("create_booking", "--parking_slot_uuid", slot_uuid)
        assert booking["status"] == "pending"
        ref = booking["reference_no"]
        wait_until(f"the bill of {ref}", lambda: self.bill(ref) is not None)
        return ref

    def wait_for_booking(self, ref: str, status: str) -> None:
        wait_until(
            f"booking {ref} to be {status}",
            lambda: (
                all(self.alive(n) for n in self.procs) and self.booking(ref) == status
            ),
        )

    # -- sagakit -------------------------------------------------------------

    def events(self, ref: str) -> list[EventRecord]:
        async def read() -> list[EventRecord]:
            store = await PostgresEventStore.connect(self.db, migrate=False, max_size=1)
            try:
                return await store.timeline(ref)
            finally:
                await store.close()

        return run_sync(read())

    def status(self, ref: str) -> ChoreographyStatus | None:
        async def read() -> ChoreographyStatus | None:
            store = await PostgresEventStore.connect(self.db, migrate=False, max_size=1)
            try:
                return await Tracker(store).status(ref)
            finally:
                await store.close()

        return run_sync(read())

    def wait_for_status(self, ref: str, status: ChoreographyStatus) -> None:
        wait_until(f"{ref} to be {status}", lambda: self.status(ref) is status)

    def show(self, ref: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sagakit.cli.main", "--db", self.db, "show", ref],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
            cwd=ROOT,
            env=self.env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def redeliver(self, service: str, message: Envelope) -> None:
        """Put ``message`` on a service's queue again, as a broker would."""

        async def publish() -> None:
            transport = await RabbitTransport.connect(self.amqp)
            try:
                await transport.publish(f"{self.prefix}events.{service}", message)
            finally:
                await transport.close()

        run_sync(publish())


@pytest.fixture
def parking_factory(
    pg_url: str, rabbitmq_url: str, tmp_path: Path
) -> Iterator[Callable[..., Parking]]:
    made: list[Parking] = []

    def make(**env: str) -> Parking:
        made.append(Parking(pg_url, rabbitmq_url, tmp_path, **env))
        return made[-1]

    try:
        yield make
    finally:
        for group in made:
            group.stop_all()
            run_sync(delete_rabbitmq_queues(*group.queues()))


def timeline(events: list[EventRecord]) -> list[tuple[str, str, str]]:
    return [(e.service, e.event_type, e.outcome.value) for e in events]


def test_paid_booking_is_done_and_a_repeated_bill_paid_changes_nothing(
    parking_factory: Callable[..., Parking],
) -> None:
    parking = parking_factory()
    parking.start()
    slot = parking.cli("create_parking", "--name", "Slot 1")
    assert (slot["name"], slot["status"]) == ("Slot 1", "available")
    ref = parking.book(slot["uuid"])
    bill = parking.cli("billing_request_details_by_reference_no", "--ref_no", ref)
    assert (bill["status"], bill["total"]) == ("pending", "100.00")

    payment = parking.cli("pay_bill", "--ref_no", ref, "--amount", "100")
    assert payment["amount"] == "100.00"
    parking.wait_for_booking(ref, "done")
    assert parking.slot(slot["uuid"]) == "reserved"
    assert parking.cli("parking_slot_details", "--uuid", slot["uuid"])["status"] == (
        "reserved"
    )
    booked = parking.cli("booking_details_by_parking_slot_uuid", "--uuid", slot["uuid"])
    assert (booked["reference_no"], booked["status"]) == (ref, "done")
    parking.wait_for_status(ref, S.SUCCEEDED)
    happy = [
        ("booking", "booking.created", "published"),
        ("billing", "booking.created", "consumed"),
        ("billing", "bill.created", "published"),
        ("billing", "bill.paid", "published"),
        ("parking", "bill.paid", "consumed"),
        ("parking", "parking.reserved", "published"),
        ("booking", "parking.reserved", "consumed"),
        ("booking", "booking.confirmed", "published"),
    ]
    assert timeline(parking.events(ref)) == happy

    # bill.paid comes again, same message id: no second reservation (which
    # would find the slot taken, declare it unavailable and refund the bill)
    (paid,) = [e for e in parking.events(ref) if e.event_type == "bill.paid"][:1]
    parking.redeliver(
        "parking",
        Envelope(
            id=paid.message_id,
            kind="event",
            type="bill.paid",
            correlation_id=ref,
            headers={"source": "billing", "choreography": "parking_booking"},
            payload={
                "reference_no": ref,
                "booking_id": int(booked["id"]),
                "parking_slot_uuid": slot["uuid"],
                "amount": "100.00",
            },
        ),
    )
    wait_until(
        "parking.reserved resent and dropped by booking",
        lambda: (
            ("booking", "parking.reserved", "duplicate")
            in timeline(parking.events(ref))
        ),
    )
    assert timeline(parking.events(ref)) == [
        *happy,
        ("parking", "bill.paid", "duplicate"),
        ("booking", "parking.reserved", "duplicate"),
    ]
    bill_now = parking.bill(ref)
    assert bill_now is not None
    assert bill_now["billing_request"]["status"] == "paid"
    assert len(bill_now["reconciliations"]) == 1
    assert parking.booking(ref) == "done"
    assert parking.slot(slot["uuid"]) == "reserved"
    assert parking.status(ref) is S.SUCCEEDED

    shown = parking.show(ref)
    assert "parking_booking" in shown
    assert "succeeded" in shown
    assert re.search(r"parking\s+│\s+bill\.paid\s+│\s+duplicate", shown), shown


def test_unavailable_slot_refunds_the_bill_and_fails_the_booking(
    parking_factory: Callable[..., Parking],
) -> None:
    parking = parking_factory()
    parking.start()
    slot = parking.cli("create_parking", "--name", "Slot 2")["uuid"]
    first = parking.book(slot)
    parking.cli("pay_bill", "--ref_no", first, "--amount", "100")
    parking.wait_for_booking(first, "done")

    # the slot is taken: the second booking is compensated
    second = parking.book(slot)
    parking.cli("pay_bill", "--ref_no", second, "--amount", "60")  # partly
    bill = parking.bill(second)
    assert bill is not None
    assert bill["billing_request"]["status"] == "pending"
    parking.cli("pay_bill", "--ref_no", second, "--amount", "40")
    parking.wait_for_booking(second, "failed")
    wait_until(
        "the refund",
        lambda: (parking.bill(second) or {})["billing_request"]["status"] == "refunded",
    )
    details = parking.bill(second)
    assert details is not None
    assert [p["amount"] for p in details["reconciliations"]] == [
        "60.00",
        "40.00",
        "-100.00",
    ]
    parking.wait_for_status(second, S.COMPENSATED)
    lines = timeline(parking.events(second))
    assert ("parking", "parking.unavailable", "published") in lines
    assert ("billing", "parking.unavailable", "consumed") in lines
    assert ("booking", "parking.unavailable", "consumed") in lines
    assert ("billing", "bill.refunded", "published") in lines
    assert ("booking", "booking.failed", "published") in lines
    assert "parking.reserved" not in {event for _, event, _ in lines}

    # the first booking is untouched
    assert parking.booking(first) == "done"
    first_bill = parking.bill(first)
    assert first_bill is not None
    assert first_bill["billing_request"]["status"] == "paid"
    assert parking.slot(slot) == "reserved"
    assert "compensated" in parking.show(second)


def test_a_booking_waiting_on_a_stopped_parking_service_is_flagged_stalled(
    parking_factory: Callable[..., Parking],
) -> None:
    parking = parking_factory(PARKING_TIMEOUT="1.5")
    parking.start()
    slot = parking.cli("create_parking", "--name", "Slot 3")["uuid"]
    parking.stop("parking")  # its route stays: bill.paid waits in its queue

    ref = parking.book(slot)
    parking.cli("pay_bill", "--ref_no", ref, "--amount", "100")
    parking.wait_for_status(ref, S.STALLED)
    wait_until(
        "the stalled warning",
        lambda: (
            f"choreography stalled action=choreography_stalled "
            f"choreography=parking_booking correlation_id={ref}"
            in parking.log("booking")
        ),
    )
    assert parking.booking(ref) == "pending"
    shown = parking.show(ref)
    assert "stalled" in shown
    assert timeline(parking.events(ref))[-1] == ("billing", "bill.paid", "published")

    # parking comes back, takes the queued bill.paid, and the booking moves on
    parking.start("parking")
    parking.wait_for_booking(ref, "done")
    parking.wait_for_status(ref, S.SUCCEEDED)
