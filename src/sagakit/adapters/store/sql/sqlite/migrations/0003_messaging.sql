-- 0003: messaging. deadline is the earliest reply deadline of a saga waiting
-- on another service; the outbox holds messages written in the transaction
-- that produced them, until a relay publishes them; the inbox remembers which
-- messages each consumer took (and its reply) to drop duplicates.
ALTER TABLE sagakit_saga ADD COLUMN deadline REAL;

CREATE INDEX sagakit_saga_deadline ON sagakit_saga (deadline)
    WHERE deadline IS NOT NULL AND status IN ('running', 'compensating');

CREATE TABLE sagakit_outbox (
    message_id    TEXT PRIMARY KEY,
    destination   TEXT NOT NULL,
    body          BLOB NOT NULL,
    saga_id       TEXT,
    available_at  REAL NOT NULL,
    created_at    REAL NOT NULL,
    locked_by     TEXT,
    locked_until  REAL
);

CREATE INDEX sagakit_outbox_available ON sagakit_outbox (available_at);

CREATE TABLE sagakit_inbox (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    reply        BLOB,
    received_at  REAL NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
