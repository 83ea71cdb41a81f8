"""The parking example's command line: talks to the services' HTTP APIs.

::

    python -m examples.parking.cli create_parking --name 'Slot 1'
    python -m examples.parking.cli parking_slot_list
    python -m examples.parking.cli parking_slot_details --uuid UUID
    python -m examples.parking.cli create_booking --parking_slot_uuid UUID
    python -m examples.parking.cli booking_list
    python -m examples.parking.cli booking_details_by_parking_slot_uuid --uuid UUID
    python -m examples.parking.cli billing_request_list
    python -m examples.parking.cli billing_request_details_by_reference_no --ref_no REF
    python -m examples.parking.cli pay_bill --ref_no REF --amount 100

A booking's ``reference_no`` names its bill and is the correlation id of its
events: ``sagakit show REF`` prints their timeline. The services are found at
``$PARKING_BOOKING_URL``, ``$PARKING_BILLING_URL`` and ``$PARKING_SLOTS_URL``
(default: http://127.0.0.1:8001, 8002 and 8003). Details print as
``key: value`` lines, lists as one JSON object per line. A failed request
prints ``error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

SERVICES = {
    "booking": ("PARKING_BOOKING_URL", "http://127.0.0.1:8001"),
    "billing": ("PARKING_BILLING_URL", "http://127.0.0.1:8002"),
    "parking": ("PARKING_SLOTS_URL", "http://127.0.0.1:8003"),
}
TIMEOUT = 10.0


class Failure(Exception):
    """A request the services refused or could not answer."""


def call(service: str, method: str, path: str, **kwargs: Any) -> Any:
    env, default = SERVICES[service]
    base = os.environ.get(env) or default
    try:
        response = httpx.request(method, f"{base}{path}", timeout=TIMEOUT, **kwargs)
    except httpx.HTTPError as exc:
        raise Failure(f"{service} service at {base}: {exc}") from exc
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise Failure(f"{service} service: {response.status_code}: {detail}")
    return response.json()


def details(item: dict[str, Any]) -> str:
    width = max(len(k) for k in item) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in item.items())


def lines(items: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(i) for i in items)


def create_parking(args: argparse.Namespace) -> str:
    return details(call("parking", "POST", "/parking-slots", json={"name": args.name}))


def parking_slot_list(_: argparse.Namespace) -> str:
    return lines(call("parking", "GET", "/parking-slots"))


def parking_slot_details(args: argparse.Namespace) -> str:
    return details(call("parking", "GET", f"/parking-slots/{args.uuid}"))


def create_booking(args: argparse.Namespace) -> str:
    body = {"parking_slot_uuid": args.parking_slot_uuid}
    return details(call("booking", "POST", "/bookings", json=body))


def booking_list(_: argparse.Namespace) -> str:
    return lines(call("booking", "GET", "/bookings"))


def booking_details_by_parking_slot_uuid(args: argparse.Namespace) -> str:
    found = call("booking", "GET", "/bookings", params={"parking_slot_uuid": args.uuid})
    if not found:
        raise Failure(f"no booking of parking slot {args.uuid}")
    return "\n\n".join(details(b) for b in found)


def billing_request_list(_: argparse.Namespace) -> str:
    return lines(call("billing", "GET", "/billing-requests"))


def billing_request_details_by_reference_no(args: argparse.Namespace) -> str:
    found = call("billing", "GET", f"/billing-requests/{args.ref_no}")
    payments = lines(found["reconciliations"]) or "(none)"
    return f"{details(found['billing_request'])}\nreconciliations:\n{payments}"


def pay_bill(args: argparse.Namespace) -> str:
    path = f"/billing-requests/{args.ref_no}/payments"
    return details(call("billing", "POST", path, json={"amount": args.amount}))


Command = Callable[[argparse.Namespace], str]
COMMANDS: dict[str, tuple[Command, tuple[str, ...]]] = {
    "create_parking": (create_parking, ("name",)),
    "parking_slot_list": (parking_slot_list, ()),
    "parking_slot_details": (parking_slot_details, ("uuid",)),
    "create_booking": (create_booking, ("parking_slot_uuid",)),
    "booking_list": (booking_list, ()),
    "booking_details_by_parking_slot_uuid": (
        booking_details_by_parking_slot_uuid,
        ("uuid",),
    ),
    "billing_request_list": (billing_request_list, ()),
    "billing_request_details_by_reference_no": (
        billing_request_details_by_reference_no,
        ("ref_no",),
    ),
    "pay_bill": (pay_bill, ("ref_no", "amount")),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.parking.cli", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (fn, options) in COMMANDS.items():
        sub = commands.add_parser(name, help=(fn.__doc__ or name).splitlines()[0])
        for option in options:
            sub.add_argument(f"--{option}", required=True)
        sub.set_defaults(run=fn)
    args = parser.parse_args(argv)
    try:
        output = args.run(args)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
