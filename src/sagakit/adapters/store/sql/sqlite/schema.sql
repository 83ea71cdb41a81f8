-- The full current SQLite schema of sagakit. Migrations in migrations/ must
-- produce exactly this; a test applies them to an empty database and compares.

CREATE TABLE sagakit_schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  REAL NOT NULL
);

CREATE TABLE sagakit_saga (
    saga_id          TEXT PRIMARY KEY,
    saga_name        TEXT NOT NULL,
    status           TEXT NOT NULL,
    version          INTEGER NOT NULL,
    idempotency_key  TEXT,
    context          TEXT NOT NULL,
    state            TEXT NOT NULL,
    failed_step      TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    owner            TEXT,
    lease_until      REAL,
    deadline         REAL,
    definition_version  INTEGER NOT NULL DEFAULT 1,
    fingerprint      TEXT,
    waiting          TEXT
);

CREATE UNIQUE INDEX sagakit_saga_idempotency
    ON sagakit_saga (saga_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX sagakit_saga_status ON sagakit_saga (status, created_at);

CREATE INDEX sagakit_saga_created ON sagakit_saga (created_at);

CREATE INDEX sagakit_saga_deadline ON sagakit_saga (deadline)
    WHERE deadline IS NOT NULL AND status IN ('running', 'compensating');

CREATE INDEX sagakit_saga_name ON sagakit_saga (saga_name, created_at);

CREATE INDEX sagakit_saga_name_status
    ON sagakit_saga (saga_name, status, created_at);

CREATE INDEX sagakit_saga_waiting ON sagakit_saga (created_at)
    WHERE waiting IS NOT NULL;

CREATE INDEX sagakit_saga_unfinished ON sagakit_saga (created_at, saga_id)
    WHERE status IN ('running', 'compensating');

-- Sagas per name and status, every status counted, kept by the triggers
-- below in the transaction that writes a saga; rows at 0 stay
CREATE TABLE sagakit_saga_count (
    saga_name  TEXT NOT NULL,
    status     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (saga_name, status)
) WITHOUT ROWID;

CREATE TRIGGER sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga
BEGIN
    INSERT INTO sagakit_saga_count (saga_name, status, n)
    VALUES (NEW.saga_name, NEW.status, 1)
    ON CONFLICT (saga_name, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sagakit_saga_count_update
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    WHEN OLD.status IS NOT NEW.status OR OLD.saga_name IS NOT NEW.saga_name
BEGIN
    UPDATE sagakit_saga_count SET n = n - 1
     WHERE saga_name = OLD.saga_name AND status = OLD.status;
    INSERT INTO sagakit_saga_count (saga_name, status, n)
    VALUES (NEW.saga_name, NEW.status, 1)
    ON CONFLICT (saga_name, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga
BEGIN
    UPDATE sagakit_saga_count SET n = n - 1
     WHERE saga_name = OLD.saga_name AND status = OLD.status;
END;

-- The step history (0017): one b-tree keyed by its saga's creation time,
-- the saga and each line's place in its history, so that the lines of the
-- sagas in flight go to the last few pages
CREATE TABLE sagakit_step_history (
    saga_created_at  REAL NOT NULL,
    saga_id      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    step         TEXT,
    kind         TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    result       TEXT,
    error        TEXT,
    started_at   REAL NOT NULL,
    finished_at  REAL NOT NULL,
    PRIMARY KEY (saga_created_at, saga_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER sagakit_step_history_append_only
    BEFORE UPDATE ON sagakit_step_history
BEGIN
    SELECT RAISE(ABORT, 'sagakit_step_history is append-only');
END;

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

CREATE TABLE sagakit_workflow (
    app          TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    step         TEXT,
    input        TEXT,
    due_at       REAL,
    state        TEXT NOT NULL,
    version      INTEGER NOT NULL,
    attempts     INTEGER NOT NULL,
    transitions  INTEGER NOT NULL,
    error        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    owner        TEXT,
    lease_until  REAL,
    result       TEXT,
    start_digest TEXT,
    definition_version  INTEGER NOT NULL DEFAULT 1,
    fingerprint  TEXT,
    PRIMARY KEY (app, instance_id)
);

CREATE INDEX sagakit_workflow_status
    ON sagakit_workflow (app, status, created_at, instance_id);

CREATE TABLE sagakit_workflow_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app          TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    step         TEXT,
    attempt      INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    detail       TEXT,
    error        TEXT,
    recorded_at  REAL NOT NULL,
    FOREIGN KEY (app, instance_id) REFERENCES sagakit_workflow (app, instance_id)
);

CREATE INDEX sagakit_workflow_history_instance
    ON sagakit_workflow_history (app, instance_id, id);

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
    deadline        REAL NOT NULL,
    definition_version  INTEGER NOT NULL DEFAULT 1,
    fingerprint     TEXT
);

CREATE INDEX sagakit_choreography_deadline ON sagakit_choreography (deadline)
    WHERE status IN ('in_progress', 'compensating');

CREATE INDEX sagakit_choreography_status
    ON sagakit_choreography (status, updated_at);

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

CREATE TRIGGER sagakit_workflow_history_no_update
    BEFORE UPDATE ON sagakit_workflow_history
BEGIN
    SELECT RAISE(ABORT, 'sagakit_workflow_history is append-only');
END;

CREATE TRIGGER sagakit_workflow_history_no_delete
    BEFORE DELETE ON sagakit_workflow_history
BEGIN
    SELECT RAISE(ABORT, 'sagakit_workflow_history is append-only');
END;

CREATE INDEX sagakit_workflow_created ON sagakit_workflow (created_at);

-- Unfinished instances by wake-up time (0011): see workflow_claim.
CREATE INDEX sagakit_workflow_wake ON sagakit_workflow (
    app,
    definition_version,
    (CASE status WHEN 'pending' THEN due_at ELSE lease_until END),
    instance_id
) WHERE status IN ('pending', 'running');

-- Semantic locks (0013): holders, and each key's queue by position
CREATE TABLE sagakit_lock (
    lock_key     TEXT PRIMARY KEY,
    saga_id      TEXT NOT NULL,
    step         TEXT NOT NULL,
    acquired_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX sagakit_lock_saga ON sagakit_lock (saga_id);

CREATE TABLE sagakit_lock_waiter (
    position   INTEGER PRIMARY KEY,
    lock_key   TEXT NOT NULL,
    saga_id    TEXT NOT NULL,
    step       TEXT NOT NULL,
    since      REAL NOT NULL,
    UNIQUE (lock_key, saga_id, step)
);

CREATE INDEX sagakit_lock_waiter_queue
    ON sagakit_lock_waiter (lock_key, position);

CREATE INDEX sagakit_lock_waiter_saga ON sagakit_lock_waiter (saga_id);

-- Notifications for hooks (0016): a row per event, written by the triggers
-- below in the transaction that ends a saga badly, or by a notifier
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
