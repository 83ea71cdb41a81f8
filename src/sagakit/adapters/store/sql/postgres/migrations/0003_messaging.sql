-- 0003: messaging. deadline is the earliest reply deadline of a saga waiting
-- on another service; the outbox holds messages written in the transaction
-- that produced them, until a relay publishes them; the inbox remembers which
-- messages each consumer took (and its reply) to drop duplicates.
ALTER TABLE sagakit_saga ADD COLUMN deadline double precision;

CREATE INDEX sagakit_saga_deadline ON sagakit_saga (deadline)
    WHERE deadline IS NOT NULL AND status IN ('running', 'compensating');

CREATE TABLE sagakit_outbox (
    message_id    text PRIMARY KEY,
    destination   text NOT NULL,
    body          bytea NOT NULL,
    saga_id       text,
    available_at  double precision NOT NULL,
    created_at    double precision NOT NULL,
    locked_by     text,
    locked_until  double precision
);

CREATE INDEX sagakit_outbox_available ON sagakit_outbox (available_at);

CREATE TABLE sagakit_inbox (
    consumer     text NOT NULL,
    message_id   text NOT NULL,
    reply        bytea,
    received_at  double precision NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
