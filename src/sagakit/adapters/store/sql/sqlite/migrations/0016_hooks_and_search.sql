-- 0016: notifications for hooks, and the dashboard's search by
-- idempotency key. A saga that ends failed or compensation_failed gets a
-- notification row in the transaction that ends it (the triggers below),
-- whatever process or operator ended it; a notifier delivers it to its
-- hooks and keeps the row (delivered, or dropped after its attempts) so that
-- an event is sent once. Stuck sagas and lock waits are added by notifiers.
CREATE TABLE sagakit_notification (
    event_id      TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    saga_id       TEXT,
    saga_name     TEXT,
    version       INTEGER,
    detail        TEXT,
    occurred_at   REAL NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    next_at       REAL NOT NULL,
    delivered_to  TEXT,
    last_error    TEXT,
    finished_at   REAL,
    locked_by     TEXT,
    locked_until  REAL
);

CREATE INDEX sagakit_notification_due ON sagakit_notification (next_at)
    WHERE status = 'pending';

CREATE INDEX sagakit_notification_occurred
    ON sagakit_notification (occurred_at);

CREATE TRIGGER sagakit_saga_notify_insert
    AFTER INSERT ON sagakit_saga
    WHEN NEW.status IN ('failed', 'compensation_failed')
BEGIN
    INSERT INTO sagakit_notification (
        event_id, kind, saga_id, saga_name, version, occurred_at, status,
        attempts, next_at)
    VALUES (
        'saga.' || NEW.status || ':' || NEW.saga_id || ':' || NEW.version,
        'saga.' || NEW.status, NEW.saga_id, NEW.saga_name, NEW.version,
        NEW.updated_at, 'pending', 0, NEW.updated_at)
    ON CONFLICT (event_id) DO NOTHING;
END;

CREATE TRIGGER sagakit_saga_notify_end
    AFTER UPDATE OF status ON sagakit_saga
    WHEN NEW.status IN ('failed', 'compensation_failed')
         AND OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO sagakit_notification (
        event_id, kind, saga_id, saga_name, version, occurred_at, status,
        attempts, next_at)
    VALUES (
        'saga.' || NEW.status || ':' || NEW.saga_id || ':' || NEW.version,
        'saga.' || NEW.status, NEW.saga_id, NEW.saga_name, NEW.version,
        NEW.updated_at, 'pending', 0, NEW.updated_at)
    ON CONFLICT (event_id) DO NOTHING;
END;

CREATE INDEX sagakit_saga_key ON sagakit_saga (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
