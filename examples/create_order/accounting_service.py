"""The accounting service: authorizes the order's amount on the consumer's card.

Run it with ``sagakit participant
examples.create_order.accounting_service:accounting --transport amqp://...``.
A card is declined when the amount exceeds ``$CREATE_ORDER_CARD_LIMIT``
(default 1000): a business refusal, so the order service does not retry.
"""

from __future__ import annotations

import os

from examples.create_order.database import ServiceDatabase, queue_prefix
from examples.create_order.messages import AuthorizeCard, CardAuthorized
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant

accounting_db = ServiceDatabase(
    "accounting",
    "accounting",
    """
    CREATE TABLE IF NOT EXISTS accounting.authorizations (
        authorization_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        saga_id           text NOT NULL UNIQUE,
        order_id          text NOT NULL,
        consumer_id       text NOT NULL,
        amount            integer NOT NULL
    );
    """,
)

accounting = Participant("accounting", queue=f"{queue_prefix()}accounting")


def card_limit() -> int:
    return int(os.environ.get("CREATE_ORDER_CARD_LIMIT", "1000"))


@accounting.handler("accounting.authorize")
async def authorize(cmd: AuthorizeCard, message: Envelope) -> CardAuthorized:
    if cmd.amount > card_limit():
        raise CommandRejected("card declined")
    async with accounting_db.transaction() as conn:
        authorization_id = await conn.fetchval(
            "INSERT INTO accounting.authorizations "
            "(saga_id, order_id, consumer_id, amount) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (saga_id) DO NOTHING RETURNING authorization_id",
            message.saga_id,
            cmd.order_id,
            cmd.consumer_id,
            cmd.amount,
        )
        if authorization_id is not None:
            await accounting_db.record(conn, message.saga_id, "authorize")
        else:  # authorized by an earlier delivery of this command
            authorization_id = await conn.fetchval(
                "SELECT authorization_id FROM accounting.authorizations "
                "WHERE saga_id = $1",
                message.saga_id,
            )
    return CardAuthorized(authorization_id=authorization_id)
