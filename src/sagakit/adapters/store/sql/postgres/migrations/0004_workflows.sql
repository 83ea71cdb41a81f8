-- 0004: workflow-style sagas. One row per instance holds its pending step
-- call (step, input, due_at), its state and its lease; the history is
-- append-only.
CREATE TABLE sagakit_workflow (
    app          text NOT NULL,
    instance_id  text NOT NULL,
    status       text NOT NULL,
    step         text,
    input        jsonb,
    due_at       double precision,
    state        jsonb NOT NULL,
    version      integer NOT NULL,
    attempts     integer NOT NULL,
    transitions  integer NOT NULL,
    error        text,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    owner        text,
    lease_until  double precision,
    PRIMARY KEY (app, instance_id)
);

CREATE INDEX sagakit_workflow_due ON sagakit_workflow (app, status, due_at);

CREATE TABLE sagakit_workflow_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app          text NOT NULL,
    instance_id  text NOT NULL,
    step         text,
    attempt      integer NOT NULL,
    outcome      text NOT NULL,
    detail       jsonb,
    error        text,
    recorded_at  double precision NOT NULL,
    FOREIGN KEY (app, instance_id) REFERENCES sagakit_workflow (app, instance_id)
);

CREATE INDEX sagakit_workflow_history_instance
    ON sagakit_workflow_history (app, instance_id, id);
