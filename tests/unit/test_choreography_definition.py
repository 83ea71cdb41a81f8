"""Choreography declarations: validation, and the status the events seen give."""

from __future__ import annotations

import pytest

from sagakit.choreography import Choreography, ChoreographyStatus, Flow
from sagakit.errors import DefinitionError

BOOKING = Choreography(
    "booking",
    [
        Flow("booking.created", compensated_by="booking.failed"),
        Flow("bill.paid", compensated_by="bill.refunded"),
        Flow("slot.reserved", failed_by="slot.unavailable"),
        Flow("booking.confirmed"),
    ],
    timeout=30,
)
S = ChoreographyStatus
CREATED, PAID, RESERVED, CONFIRMED = (
    "booking.created",
    "bill.paid",
    "slot.reserved",
    "booking.confirmed",
)
UNAVAILABLE, REFUNDED, FAILED = "slot.unavailable", "bill.refunded", "booking.failed"


@pytest.mark.parametrize(
    ("seen", "status"),
    [
        ((), S.IN_PROGRESS),
        ((CREATED, PAID), S.IN_PROGRESS),
        ((CREATED, PAID, RESERVED), S.IN_PROGRESS),
        ((CREATED, PAID, RESERVED, CONFIRMED), S.SUCCEEDED),
        ((CREATED, PAID, UNAVAILABLE), S.COMPENSATING),
        ((CREATED, PAID, UNAVAILABLE, REFUNDED), S.COMPENSATING),
        ((CREATED, PAID, UNAVAILABLE, FAILED), S.COMPENSATING),
        ((CREATED, PAID, UNAVAILABLE, REFUNDED, FAILED), S.COMPENSATED),
        ((CREATED, FAILED), S.COMPENSATED),  # a compensation is a failure too
        ((UNAVAILABLE,), S.COMPENSATED),  # nothing seen that needs undoing
        ((CREATED, PAID, RESERVED, CONFIRMED, UNAVAILABLE), S.COMPENSATING),
    ],
)
def test_status_from_the_events_seen(seen: tuple[str, ...], status: S) -> None:
    assert BOOKING.status(seen) is status


def test_events_by_role() -> None:
    assert BOOKING.forward_events == (CREATED, PAID, RESERVED, CONFIRMED)
    assert BOOKING.failure_events == {UNAVAILABLE}
    assert BOOKING.compensating_events == {REFUNDED, FAILED}
    assert len(BOOKING.events) == 7
    assert BOOKING.progress.timeout == 30.0
    assert BOOKING.progress.choreography == "booking"


@pytest.mark.parametrize(
    ("steps", "timeout", "message"),
    [
        ([Flow("a", compensated_by="b"), Flow("b")], 1, "'b' appears twice"),
        ([Flow("a", failed_by="a")], 1, "'a' appears twice"),
        ([], 1, "no steps"),
        ([Flow("")], 1, "empty event name"),
        ([Flow("a")], 0, "timeout must be > 0"),
    ],
)
def test_invalid_declarations_are_refused(
    steps: list[Flow], timeout: float, message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        Choreography("x", steps, timeout=timeout)
