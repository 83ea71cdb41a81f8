-- 0006: the event outbox. EventBus.publish_on stages an event here on the
-- caller's connection, inside its transaction; the service's buses claim
-- staged events (a hold: locked_by until locked_until), publish them and
-- delete them. The rowid keeps the staging order.
CREATE TABLE sagakit_event_outbox (
    message_id      TEXT PRIMARY KEY,
    service         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    body            BLOB NOT NULL,
    created_at      REAL NOT NULL,
    locked_by       TEXT,
    locked_until    REAL
);

CREATE INDEX sagakit_event_outbox_service ON sagakit_event_outbox (service);
