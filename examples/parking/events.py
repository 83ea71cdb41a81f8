"""The events the three services exchange, and the choreography they form.

==========================  ==================  =================================
event                       published by        seed's name
==========================  ==================  =================================
``booking.created``         booking             CREATE_BOOKING_EVENT
``bill.created``            billing             (new: the bill exists)
``bill.paid``               billing             BILL_PAID_EVENT
``parking.reserved``        parking             RESERVED_BOOKING_EVENT
``parking.unavailable``     parking             PARKING_UNAVAILABLE_EVENT
``bill.refunded``           billing             (new: compensates bill.paid)
``booking.confirmed``       booking             (new: the booking is done)
``booking.failed``          booking             (new: compensates booking.created)
==========================  ==================  =================================

Every event carries the booking's ``reference_no`` as its correlation id.
"""

from __future__ import annotations

import os
from decimal import Decimal

from pydantic import BaseModel

from sagakit.choreography import Choreography, Flow

BOOKING_CREATED = "booking.created"
BILL_CREATED = "bill.created"
BILL_PAID = "bill.paid"
PARKING_RESERVED = "parking.reserved"
PARKING_UNAVAILABLE = "parking.unavailable"
BILL_REFUNDED = "bill.refunded"
BOOKING_CONFIRMED = "booking.confirmed"
BOOKING_FAILED = "booking.failed"

TIMEOUT_ENV = "PARKING_TIMEOUT"
"""Seconds a booking may go without progress before it is flagged stalled."""

parking_booking = Choreography(
    "parking_booking",
    steps=[
        Flow(BOOKING_CREATED, compensated_by=BOOKING_FAILED),
        Flow(BILL_CREATED),
        Flow(BILL_PAID, compensated_by=BILL_REFUNDED),
        Flow(PARKING_RESERVED, failed_by=PARKING_UNAVAILABLE),
        Flow(BOOKING_CONFIRMED),
    ],
    timeout=float(os.environ.get(TIMEOUT_ENV) or 60),
)


class BookingCreated(BaseModel):
    reference_no: str
    booking_id: int
    parking_slot_uuid: str


class BillCreated(BaseModel):
    reference_no: str
    billing_request_id: int
    total: Decimal


class BillPaid(BaseModel):
    reference_no: str
    booking_id: int
    parking_slot_uuid: str
    amount: Decimal


class ParkingReserved(BaseModel):
    reference_no: str
    booking_id: int
    parking_slot_uuid: str


class ParkingUnavailable(BaseModel):
    reference_no: str
    booking_id: int
    parking_slot_uuid: str
    reason: str


class BillRefunded(BaseModel):
    reference_no: str
    amount: Decimal


class BookingEnded(BaseModel):
    """``booking.confirmed`` and ``booking.failed``."""

    reference_no: str
    booking_id: int
    status: str
