"""The project's own examples, checked at every failure point by check_saga.

The choreography example (examples/parking) is not checked: it is not an
orchestrated ``Saga`` (services react to events on a bus), so there is no
definition to enumerate failure points from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from examples.create_order import order_service
from examples.create_order.messages import (
    ApproveTicket,
    AuthorizeCard,
    CancelTicket,
    CardAuthorized,
    ConsumerVerified,
    CreateTicket,
    TicketApproved,
    TicketCreated,
    VerifyConsumer,
)
from examples.flask_celery import orders as flask_orders
from pydantic import BaseModel

from sagakit import Parallel, RetryPolicy, Saga, Step
from sagakit.examples.trip import happy_trip, trip_saga
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant
from sagakit.ports.store import SagaStore
from sagakit.ports.transport import Transport
from sagakit.testing import check_saga


async def test_trip_example() -> None:
    report = await check_saga(trip_saga, happy_trip)
    print(report.summary())
    report.assert_ok()


# -- the README snippet's shape ------------------------------------------------


class Trip(BaseModel):
    traveller: str
    nights: int


async def book_flight(ctx: Trip) -> str:
    return f"FL-{ctx.traveller}"


async def cancel_flight(ctx: Trip, ref: str) -> None:
    return None


def book_hotel(ctx: Trip) -> str:
    return f"HT-{ctx.nights}"


def cancel_hotel(ctx: Trip, ref: str) -> None:
    return None


async def charge_card(ctx: Trip) -> None:
    return None


async def send_itinerary(ctx: Trip) -> None:
    return None


readme_trip = Saga(
    "trip",
    [
        Parallel(
            Step("flight", book_flight, compensate=cancel_flight, timeout=5),
            Step(
                "hotel",
                book_hotel,
                compensate=cancel_hotel,
                retry=RetryPolicy(attempts=3, backoff=0.2, retry_on=(ConnectionError,)),
            ),
        ),
        Step("charge", charge_card, pivot=True),
        Step("itinerary", send_itinerary, retry=RetryPolicy(attempts=10)),
    ],
    context=Trip,
)


async def test_readme_snippet_shape() -> None:
    report = await check_saga(readme_trip, Trip(traveller="Maria", nights=3))
    print(report.summary())
    report.assert_ok()


# -- CreateOrder: the real definition, in-process services ----------------------


class Services:
    """The order, kitchen, accounting and consumer services in memory, with
    the same commands and replies as examples/create_order."""

    def __init__(self) -> None:
        self.orders: dict[str, str] = {}
        self.tickets: dict[str, str] = {}
        self.ticket_ids: dict[str, int] = {}  # saga id -> its ticket

    async def create_pending_order(self, ctx: order_service.CreateOrder) -> Any:
        status = self.orders.setdefault(ctx.order_id, order_service.PENDING)
        return ctx.model_dump() | {"status": status}

    async def reject_order(self, ctx: order_service.CreateOrder) -> None:
        if self.orders.get(ctx.order_id) == order_service.PENDING:
            self.orders[ctx.order_id] = order_service.REJECTED

    async def approve_order(self, ctx: order_service.CreateOrder) -> Any:
        if self.orders.get(ctx.order_id) == order_service.PENDING:
            self.orders[ctx.order_id] = order_service.APPROVED
        return {"order_id": ctx.order_id, "status": order_service.APPROVED}

    def saga(self) -> Saga[order_service.CreateOrder]:
        local = {
            "create_pending_order": (self.create_pending_order, self.reject_order),
            "approve_order": (self.approve_order, None),
        }
        steps = []
        for (spec,) in order_service.create_order_saga.stages:
            if spec.name in local:
                action, undo = local[spec.name]
                steps.append(replace(spec, action=action, compensate=undo))
            else:
                steps.append(spec)
        return Saga("create_order", steps, context=order_service.CreateOrder)

    def participants(
        self, transport: Transport, store: SagaStore
    ) -> Iterable[Participant]:
        kitchen = Participant("kitchen", transport, store)
        accounting = Participant("accounting", transport, store)
        consumers = Participant("consumer", transport, store)

        @consumers.handler("consumer.verify")
        async def verify(cmd: VerifyConsumer) -> ConsumerVerified:
            if cmd.consumer_id == "unknown":
                raise CommandRejected(f"unknown consumer {cmd.consumer_id!r}")
            return ConsumerVerified(consumer_id=cmd.consumer_id, name="Ada")

        def ticket_of(message: Envelope, ticket_id: int) -> str:
            """The saga of ``ticket_id``, which must be the message's."""
            saga_id = message.saga_id or ""
            if self.ticket_ids.get(saga_id) != ticket_id:
                raise CommandRejected(f"ticket {ticket_id} is not {saga_id}'s")
            return saga_id

        @kitchen.handler("kitchen.create_ticket")
        async def create_ticket(cmd: CreateTicket, message: Envelope) -> TicketCreated:
            saga_id = message.saga_id or ""
            self.tickets.setdefault(saga_id, "CREATED")
            ticket_id = self.ticket_ids.setdefault(saga_id, 100 + len(self.tickets))
            return TicketCreated(ticket_id=ticket_id)

        @kitchen.handler("kitchen.cancel_ticket")
        async def cancel_ticket(cmd: CancelTicket, message: Envelope) -> None:
            self.tickets[ticket_of(message, cmd.ticket_id)] = "CANCELLED"

        @kitchen.handler("kitchen.approve_ticket")
        async def approve_ticket(cmd: ApproveTicket, message: Envelope) -> Any:
            self.tickets[ticket_of(message, cmd.ticket_id)] = "APPROVED"
            return TicketApproved(ticket_id=cmd.ticket_id)

        @accounting.handler("accounting.authorize")
        async def authorize(cmd: AuthorizeCard) -> CardAuthorized:
            if cmd.amount != 30:  # the amount of the order the saga stored
                raise CommandRejected(f"authorizing {cmd.amount}, not 30")
            return CardAuthorized(authorization_id=7)

        return [kitchen, accounting, consumers]


async def test_create_order_example() -> None:
    services = Services()
    report = await check_saga(
        services.saga(),
        lambda: order_service.CreateOrder(order_id="o-1", consumer_id="c-1", amount=30),
        participants=services.participants,
    )
    print(report.summary())
    report.assert_ok()
    assert len(report.results) > 40


# -- Flask + Celery: the real definition, the tasks as in-process participants --


def shop_participants(transport: Transport, store: SagaStore) -> Iterable[Participant]:
    """examples/flask_celery/tasks.py's tasks, as participants on the
    example's queues: idempotent by saga id, a card over 1000 declined."""
    stock = Participant("stock", transport, store, queue=flask_orders.queue("stock"))
    payment = Participant(
        "payment", transport, store, queue=flask_orders.queue("payment")
    )
    reserved: set[str] = set()

    @stock.handler("stock.reserve")
    async def reserve(cmd: flask_orders.StockRequest) -> flask_orders.Reserved:
        reserved.add(cmd.order_id)
        return flask_orders.Reserved(reservation_id=f"R-{cmd.order_id}")

    @stock.handler("stock.release")
    async def release(cmd: flask_orders.StockRequest) -> None:
        reserved.discard(cmd.order_id)

    @payment.handler("payment.charge")
    async def charge(cmd: flask_orders.Charge) -> flask_orders.Charged:
        if cmd.amount > 1000:
            raise CommandRejected(f"card declined: {cmd.amount} is over the limit")
        return flask_orders.Charged(payment_id=f"P-{cmd.order_id}")

    return [stock, payment]


async def test_flask_celery_example() -> None:
    report = await check_saga(
        flask_orders.order_saga,
        lambda: flask_orders.Order(order_id="o-1", item="tea", quantity=2, amount=25),
        participants=shop_participants,
    )
    print(report.summary())
    report.assert_ok()
