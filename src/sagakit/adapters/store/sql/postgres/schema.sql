-- The full current PostgreSQL schema of sagakit. Migrations in migrations/
-- must produce exactly this; a test applies them to an empty database and
-- compares columns, indexes, constraints, functions and triggers.
-- Timestamps are epoch seconds (double precision); JSON is jsonb.

CREATE TABLE sagakit_schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  double precision NOT NULL
);

CREATE TABLE sagakit_saga (
    saga_id          text COLLATE "C" PRIMARY KEY,
    saga_name        text NOT NULL,
    status           text NOT NULL,
    version          integer NOT NULL,
    idempotency_key  text,
    context          jsonb NOT NULL,
    state            jsonb NOT NULL,
    failed_step      text,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    owner            text,
    lease_until      double precision,
    deadline         double precision,
    definition_version  integer NOT NULL DEFAULT 1,
    fingerprint      text,
    waiting          text
) WITH (fillfactor = 70);  -- room for saves that leave indexes alone (HOT)

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

-- Sagas per name and status: the totals folded so far, one row per name and
-- status, plus the changes appended since (see the functions)
CREATE TABLE sagakit_saga_count (
    saga_name  text NOT NULL,
    status     text NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (saga_name, status)
);

CREATE TABLE sagakit_saga_count_change (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    saga_name  text NOT NULL,
    status     text NOT NULL,
    change     integer NOT NULL
);

-- Fold the committed changes into the totals; returns how many it folded
-- (0 if another transaction is folding, or in a transaction that is not
-- READ COMMITTED, where a fold could meet a conflict). Any session may call
-- it at any time: counts read the same before and after.
CREATE FUNCTION sagakit_saga_count_fold() RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(7318267413062125618) THEN
        RETURN 0;
    END IF;
    WITH gone AS (
        DELETE FROM sagakit_saga_count_change
        RETURNING saga_name, status, change
    ), summed AS (
        SELECT saga_name, status, sum(change) AS n, count(*) AS changes
          FROM gone GROUP BY saga_name, status
    ), added AS (
        INSERT INTO sagakit_saga_count AS c (saga_name, status, n)
        SELECT saga_name, status, n FROM summed
        ON CONFLICT (saga_name, status) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT coalesce(sum(changes), 0) INTO folded FROM summed;
    RETURN folded;
END;
$$;

-- Append the change of a saga that is created, changes status or name, or
-- is deleted. Every 1,024th change folds, once per transaction at most: a
-- transaction with many changes does not read its own folded ones again
-- and again.
CREATE FUNCTION sagakit_saga_count_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    made bigint;
    appended integer := 1;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (NEW.saga_name, NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (OLD.saga_name, OLD.status, -1);
    ELSE
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (OLD.saga_name, OLD.status, -1), (NEW.saga_name, NEW.status, 1);
        appended := 2;
    END IF;
    made := currval('sagakit_saga_count_change_id_seq');
    IF made % 1024 < appended
       AND current_setting('sagakit.count_folded', true) IS DISTINCT FROM 'yes'
    THEN
        PERFORM set_config('sagakit.count_folded', 'yes', true);
        PERFORM sagakit_saga_count_fold();
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga
    FOR EACH ROW EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_update
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.saga_name IS DISTINCT FROM NEW.saga_name)
    EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga
    FOR EACH ROW EXECUTE FUNCTION sagakit_saga_count_change();


CREATE TABLE sagakit_step_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id      text NOT NULL,  -- its saga's: no foreign key (0018)
    step         text,
    kind         text NOT NULL,
    attempt      integer NOT NULL,
    outcome      text NOT NULL,
    result       jsonb,
    error        jsonb,
    started_at   double precision NOT NULL,
    finished_at  double precision NOT NULL,
    saga_created_at double precision NOT NULL  -- its saga's created_at (0020)
);

-- a saga's lines, found by its creation time first: the lines of the sagas
-- in flight go to the last leaves (0020)
CREATE INDEX sagakit_step_history_saga_time
    ON sagakit_step_history (saga_created_at, saga_id, id);

-- The history lines a statement appends (a jsonb array of objects keyed by
-- the columns above), in their order (n)
CREATE FUNCTION sagakit_history_lines(lines jsonb)
    RETURNS TABLE (
        saga_id text, step text, kind text, attempt integer, outcome text,
        result jsonb, error jsonb, started_at double precision,
        finished_at double precision, n bigint
    )
    LANGUAGE sql STABLE AS $$
    SELECT * FROM ROWS FROM (jsonb_to_recordset(lines) AS (
        saga_id text, step text, kind text, attempt integer, outcome text,
        result jsonb, error jsonb, started_at double precision,
        finished_at double precision
    )) WITH ORDINALITY
$$;

-- The history lines a batch statement appends, given as an array per
-- column, in their order (n)
CREATE FUNCTION sagakit_history_columns(
    saga_ids text[], steps text[], kinds text[], attempts integer[],
    outcomes text[], results text[], errors text[],
    started double precision[], finished double precision[]
)
    RETURNS TABLE (
        saga_id text, step text, kind text, attempt integer, outcome text,
        result jsonb, error jsonb, started_at double precision,
        finished_at double precision, n bigint
    )
    LANGUAGE sql STABLE AS $$
    SELECT u.saga_id, u.step, u.kind, u.attempt, u.outcome, u.result::jsonb,
           u.error::jsonb, u.started_at, u.finished_at, u.n
      FROM unnest(
               saga_ids, steps, kinds, attempts, outcomes, results, errors,
               started, finished
           ) WITH ORDINALITY AS u(
               saga_id, step, kind, attempt, outcome, result, error,
               started_at, finished_at, n
           )
$$;

CREATE FUNCTION sagakit_step_history_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'sagakit_step_history is append-only';
END;
$$;

CREATE TRIGGER sagakit_step_history_append_only
    BEFORE UPDATE ON sagakit_step_history
    FOR EACH ROW EXECUTE FUNCTION sagakit_step_history_append_only();

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
    result       jsonb,
    start_digest text,
    definition_version  integer NOT NULL DEFAULT 1,
    fingerprint  text,
    PRIMARY KEY (app, instance_id)
);

CREATE INDEX sagakit_workflow_status
    ON sagakit_workflow (app, status, created_at, instance_id);

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
    deadline        double precision NOT NULL,
    definition_version  integer NOT NULL DEFAULT 1,
    fingerprint     text
);

CREATE INDEX sagakit_choreography_deadline ON sagakit_choreography (deadline)
    WHERE status IN ('in_progress', 'compensating');

CREATE INDEX sagakit_choreography_status
    ON sagakit_choreography (status, updated_at);

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

CREATE FUNCTION sagakit_workflow_history_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'sagakit_workflow_history is append-only';
END;
$$;

CREATE TRIGGER sagakit_workflow_history_append_only
    BEFORE UPDATE OR DELETE ON sagakit_workflow_history
    FOR EACH ROW EXECUTE FUNCTION sagakit_workflow_history_append_only();

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
    lock_key     text COLLATE "C" PRIMARY KEY,
    saga_id      text COLLATE "C" NOT NULL,
    step         text NOT NULL,
    acquired_at  double precision NOT NULL
);

CREATE INDEX sagakit_lock_saga ON sagakit_lock (saga_id);

CREATE TABLE sagakit_lock_waiter (
    position   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lock_key   text COLLATE "C" NOT NULL,
    saga_id    text COLLATE "C" NOT NULL,
    step       text NOT NULL,
    since      double precision NOT NULL,
    UNIQUE (lock_key, saga_id, step)
);

CREATE INDEX sagakit_lock_waiter_queue
    ON sagakit_lock_waiter (lock_key, position);

CREATE INDEX sagakit_lock_waiter_saga ON sagakit_lock_waiter (saga_id);

-- A notice on sagakit_lock_freed when a transaction that let go of a key,
-- or left a key's queue, commits (0019): waiters elsewhere look at once
CREATE FUNCTION sagakit_lock_freed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagakit_lock_freed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER sagakit_lock_freed
    AFTER DELETE ON sagakit_lock
    FOR EACH ROW EXECUTE FUNCTION sagakit_lock_freed();

CREATE TRIGGER sagakit_lock_waiter_gone
    AFTER DELETE ON sagakit_lock_waiter
    FOR EACH ROW EXECUTE FUNCTION sagakit_lock_freed();

-- Notifications for hooks (0016): a row per event, written by the triggers
-- below in the transaction that ends a saga badly, or by a notifier
CREATE TABLE sagakit_notification (
    event_id      text PRIMARY KEY,
    kind          text NOT NULL,
    saga_id       text,
    saga_name     text,
    version       integer,
    detail        jsonb,
    occurred_at   double precision NOT NULL,
    status        text NOT NULL,
    attempts      integer NOT NULL,
    next_at       double precision NOT NULL,
    delivered_to  jsonb,
    last_error    text,
    finished_at   double precision,
    locked_by     text,
    locked_until  double precision
);

CREATE INDEX sagakit_notification_due ON sagakit_notification (next_at)
    WHERE status = 'pending';

CREATE INDEX sagakit_notification_occurred
    ON sagakit_notification (occurred_at);

CREATE FUNCTION sagakit_saga_notify_end() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sagakit_notification (
        event_id, kind, saga_id, saga_name, version, occurred_at, status,
        attempts, next_at)
    VALUES (
        'saga.' || NEW.status || ':' || NEW.saga_id || ':' || NEW.version,
        'saga.' || NEW.status, NEW.saga_id, NEW.saga_name, NEW.version,
        NEW.updated_at, 'pending', 0, NEW.updated_at)
    ON CONFLICT (event_id) DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sagakit_saga_notify_insert
    AFTER INSERT ON sagakit_saga
    FOR EACH ROW WHEN (NEW.status IN ('failed', 'compensation_failed'))
    EXECUTE FUNCTION sagakit_saga_notify_end();

CREATE TRIGGER sagakit_saga_notify_end
    AFTER UPDATE OF status ON sagakit_saga
    FOR EACH ROW
    WHEN (NEW.status IN ('failed', 'compensation_failed')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION sagakit_saga_notify_end();

CREATE INDEX sagakit_saga_key ON sagakit_saga (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
