"""The commands and replies the order service exchanges with the other services.

Each service validates what it receives against these models; an ``ok`` reply's
payload becomes the step result in the order service.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class VerifyConsumer(BaseModel):
    """``consumer.verify``: may this consumer place orders?"""

    consumer_id: str = Field(min_length=1)
    order_id: str


class ConsumerVerified(BaseModel):
    consumer_id: str
    name: str


class CreateTicket(BaseModel):
    """``kitchen.create_ticket``: prepare a ticket, not yet to be cooked."""

    order_id: str
    consumer_id: str


class TicketCreated(BaseModel):
    ticket_id: int


class CancelTicket(BaseModel):
    """``kitchen.cancel_ticket``: the compensation of ``create_ticket``."""

    ticket_id: int


class ApproveTicket(BaseModel):
    """``kitchen.approve_ticket``: the order is paid; start cooking the ticket
    that ``kitchen.create_ticket`` replied with."""

    ticket_id: int


class TicketApproved(BaseModel):
    ticket_id: int


class AuthorizeCard(BaseModel):
    """``accounting.authorize``: reserve ``amount`` on the consumer's card."""

    order_id: str
    consumer_id: str
    amount: int = Field(gt=0)


class CardAuthorized(BaseModel):
    authorization_id: int
