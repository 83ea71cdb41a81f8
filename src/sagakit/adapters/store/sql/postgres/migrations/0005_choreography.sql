-- 0005: choreography. Routes say which service queues receive an event type
-- (publishers fan out to them); the event log is one line per event a
-- service published or consumed, by correlation id; a tracked choreography
-- keeps its status and the deadline by which it must make progress.
CREATE TABLE sagakit_event_route (
    event_type     text NOT NULL,
    service        text NOT NULL,
    queue          text NOT NULL,
    subscribed_at  double precision NOT NULL,
    PRIMARY KEY (event_type, service)
);

CREATE TABLE sagakit_event_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    correlation_id  text NOT NULL,
    choreography    text,
    service         text NOT NULL,
    event_type      text NOT NULL,
    message_id      text NOT NULL,
    outcome         text NOT NULL,
    detail          text,
    recorded_at     double precision NOT NULL
);

CREATE INDEX sagakit_event_log_correlation
    ON sagakit_event_log (correlation_id, id);

CREATE TABLE sagakit_choreography (
    correlation_id  text PRIMARY KEY,
    name            text NOT NULL,
    status          text NOT NULL,
    started_at      double precision NOT NULL,
    updated_at      double precision NOT NULL,
    deadline        double precision NOT NULL
);

CREATE INDEX sagakit_choreography_deadline ON sagakit_choreography (deadline)
    WHERE status IN ('in_progress', 'compensating');

CREATE INDEX sagakit_choreography_status
    ON sagakit_choreography (status, updated_at);
