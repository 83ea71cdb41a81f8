"""The consumer service: may this consumer place an order?

Run it with ``sagakit participant examples.create_order.consumer_service:consumers
--transport amqp://...``. Its schema ``consumers`` starts with three consumers:
``alice`` and ``bob`` may order, ``mallory`` is suspended.
"""

from __future__ import annotations

from examples.create_order.database import ServiceDatabase, queue_prefix
from examples.create_order.messages import ConsumerVerified, VerifyConsumer
from sagakit.messaging import Envelope
from sagakit.participant import CommandRejected, Participant

consumers_db = ServiceDatabase(
    "consumer",
    "consumers",
    """
    CREATE TABLE IF NOT EXISTS consumers.consumers (
        consumer_id  text PRIMARY KEY,
        name         text NOT NULL,
        active       boolean NOT NULL
    );
    INSERT INTO consumers.consumers VALUES
        ('alice', 'Alice Liddell', true),
        ('bob', 'Bob Cratchit', true),
        ('mallory', 'Mallory Knox', false)
    ON CONFLICT DO NOTHING;
    CREATE TABLE IF NOT EXISTS consumers.verifications (
        saga_id      text PRIMARY KEY,
        consumer_id  text NOT NULL,
        at           timestamptz NOT NULL DEFAULT now()
    );
    """,
)

consumers = Participant("consumer", queue=f"{queue_prefix()}consumer")


@consumers.handler("consumer.verify")
async def verify(cmd: VerifyConsumer, message: Envelope) -> ConsumerVerified:
    """A read-only check (nothing to undo); each check made is logged once."""
    async with consumers_db.transaction() as conn:
        row = await conn.fetchrow(
            "SELECT name, active FROM consumers.consumers WHERE consumer_id = $1",
            cmd.consumer_id,
        )
        if row is None:
            raise CommandRejected(f"unknown consumer {cmd.consumer_id!r}")
        if not row["active"]:
            raise CommandRejected(f"consumer {cmd.consumer_id!r} is suspended")
        logged = await conn.fetchval(
            "INSERT INTO consumers.verifications (saga_id, consumer_id) "
            "VALUES ($1, $2) ON CONFLICT (saga_id) DO NOTHING RETURNING saga_id",
            message.saga_id,
            cmd.consumer_id,
        )
        if logged is not None:
            await consumers_db.record(conn, message.saga_id, "verify")
    return ConsumerVerified(consumer_id=cmd.consumer_id, name=row["name"])
