-- 0005: choreography. Routes say which service queues receive an event type
-- (publishers fan out to them); the event log is one line per event a
-- service published or consumed, by correlation id; a tracked choreography
-- keeps its status and the deadline by which it must make progress.
CREATE TABLE sagakit_event_route (
    event_type     TEXT NOT NULL,
    service        TEXT NOT NULL,
    queue          TEXT NOT NULL,
    subscribed_at  REAL NOT NULL,
    PRIMARY KEY (event_type, service)
);

CREATE TABLE sagakit_event_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    correlation_id  TEXT NOT NULL,
    choreography    TEXT,
    service         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          TEXT,
    recorded_at     REAL NOT NULL
);

CREATE INDEX sagakit_event_log_correlation
    ON sagakit_event_log (correlation_id, id);

CREATE TABLE sagakit_choreography (
    correlation_id  TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    started_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    deadline        REAL NOT NULL
);

CREATE INDEX sagakit_choreography_deadline ON sagakit_choreography (deadline)
    WHERE status IN ('in_progress', 'compensating');

CREATE INDEX sagakit_choreography_status
    ON sagakit_choreography (status, updated_at);
