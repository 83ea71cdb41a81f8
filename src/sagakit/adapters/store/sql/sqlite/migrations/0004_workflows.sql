-- 0004: workflow-style sagas. One row per instance holds its pending step
-- call (step, input, due_at), its state and its lease; the history is
-- append-only.
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
    PRIMARY KEY (app, instance_id)
);

CREATE INDEX sagakit_workflow_due ON sagakit_workflow (app, status, due_at);

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
