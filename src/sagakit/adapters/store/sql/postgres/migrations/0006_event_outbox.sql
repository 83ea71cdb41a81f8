-- 0006: the event outbox. EventBus.publish_on stages an event here on the
-- caller's connection, inside its transaction; the service's buses claim
-- staged events (a hold: locked_by until locked_until), publish them and
-- delete them. seq keeps the staging order.
CREATE TABLE sagakit_event_outbox (
    message_id      text PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    service         text NOT NULL,
    event_type      text NOT NULL,
    correlation_id  text NOT NULL,
    body            bytea NOT NULL,
    created_at      double precision NOT NULL,
    locked_by       text,
    locked_until    double precision
);

CREATE INDEX sagakit_event_outbox_service
    ON sagakit_event_outbox (service, seq);
