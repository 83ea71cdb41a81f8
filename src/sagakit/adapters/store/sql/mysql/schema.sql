-- The full current MySQL/MariaDB schema of sagakit. Migrations in
-- migrations/ must produce exactly this; a test applies both to empty
-- databases and compares tables, columns, indexes, foreign keys and
-- triggers. Ids and names compare in code point order (utf8mb4_bin); times
-- are epoch seconds (DOUBLE); JSON columns hold compact JSON text; a
-- virtual column that is NULL outside a part of the rows and an index on it
-- stand for PostgreSQL's partial indexes. Apply it with `sagakit db
-- migrate`, or with the mysql client, which reads its DELIMITER lines.

CREATE TABLE IF NOT EXISTS sagakit_schema_migrations (
    version     INT NOT NULL,
    name        VARCHAR(255) NOT NULL,
    applied_at  DOUBLE NOT NULL,
    PRIMARY KEY (version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_saga (
    saga_id          VARCHAR(255) NOT NULL,
    saga_name        VARCHAR(255) NOT NULL,
    status           VARCHAR(32) NOT NULL,
    version          INT NOT NULL,
    idempotency_key  VARCHAR(255),
    context          JSON NOT NULL,
    state            JSON NOT NULL,
    failed_step      VARCHAR(255),
    created_at       DOUBLE NOT NULL,
    updated_at       DOUBLE NOT NULL,
    owner            VARCHAR(255),
    lease_until      DOUBLE,
    deadline         DOUBLE,
    definition_version  INT NOT NULL DEFAULT 1,
    fingerprint      VARCHAR(255),
    waiting          TEXT,
    unfinished_at    DOUBLE AS (IF(status IN ('running', 'compensating'),
                                   created_at, NULL)) VIRTUAL,
    waiting_since    DOUBLE AS (IF(waiting IS NULL, NULL, created_at)) VIRTUAL,
    due_at           DOUBLE AS (IF(status IN ('running', 'compensating'),
                                   deadline, NULL)) VIRTUAL,
    PRIMARY KEY (saga_id),
    UNIQUE KEY sagakit_saga_idempotency (saga_name, idempotency_key),
    KEY sagakit_saga_status (status, created_at),
    KEY sagakit_saga_created (created_at),
    KEY sagakit_saga_deadline (due_at),
    KEY sagakit_saga_name (saga_name, created_at),
    KEY sagakit_saga_name_status (saga_name, status, created_at),
    KEY sagakit_saga_waiting (waiting_since),
    KEY sagakit_saga_unfinished (unfinished_at, saga_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Ended sagas per name and status, kept by the triggers below in the
-- transaction that ends (or reopens) a saga, in up to 16 rows (shards) each:
-- a writer adds to the row of its connection's shard, so writers of
-- different shards never wait for each other (1 in 16 share one and wait
-- for the other's commit). The unfinished ones are counted from
-- sagakit_saga_status.
CREATE TABLE IF NOT EXISTS sagakit_saga_count (
    saga_name  VARCHAR(255) NOT NULL,
    status     VARCHAR(32) NOT NULL,
    shard      INT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (saga_name, status, shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

DELIMITER //

CREATE TRIGGER IF NOT EXISTS sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga FOR EACH ROW
BEGIN
    IF NEW.status NOT IN ('running', 'compensating') THEN
        INSERT INTO sagakit_saga_count (saga_name, status, shard, n)
        VALUES (NEW.saga_name, NEW.status, CONNECTION_ID() % 16, 1)
        ON DUPLICATE KEY UPDATE n = n + 1;
    END IF;
END //

CREATE TRIGGER IF NOT EXISTS sagakit_saga_count_update
    AFTER UPDATE ON sagakit_saga FOR EACH ROW
BEGIN
    IF NOT (OLD.status <=> NEW.status AND OLD.saga_name <=> NEW.saga_name) THEN
        IF OLD.status NOT IN ('running', 'compensating') THEN
            INSERT INTO sagakit_saga_count (saga_name, status, shard, n)
            VALUES (OLD.saga_name, OLD.status, CONNECTION_ID() % 16, -1)
            ON DUPLICATE KEY UPDATE n = n - 1;
        END IF;
        IF NEW.status NOT IN ('running', 'compensating') THEN
            INSERT INTO sagakit_saga_count (saga_name, status, shard, n)
            VALUES (NEW.saga_name, NEW.status, CONNECTION_ID() % 16, 1)
            ON DUPLICATE KEY UPDATE n = n + 1;
        END IF;
    END IF;
END //

CREATE TRIGGER IF NOT EXISTS sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga FOR EACH ROW
BEGIN
    IF OLD.status NOT IN ('running', 'compensating') THEN
        INSERT INTO sagakit_saga_count (saga_name, status, shard, n)
        VALUES (OLD.saga_name, OLD.status, CONNECTION_ID() % 16, -1)
        ON DUPLICATE KEY UPDATE n = n - 1;
    END IF;
END //

DELIMITER ;

CREATE TABLE IF NOT EXISTS sagakit_step_history (
    id           BIGINT NOT NULL AUTO_INCREMENT,
    saga_id      VARCHAR(255) NOT NULL,
    step         VARCHAR(255),
    kind         VARCHAR(32) NOT NULL,
    attempt      INT NOT NULL,
    outcome      VARCHAR(64) NOT NULL,
    result       JSON,
    error        JSON,
    started_at   DOUBLE NOT NULL,
    finished_at  DOUBLE NOT NULL,
    PRIMARY KEY (id),
    KEY sagakit_step_history_saga (saga_id, id),
    CONSTRAINT sagakit_step_history_saga_fk
        FOREIGN KEY (saga_id) REFERENCES sagakit_saga (saga_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TRIGGER IF NOT EXISTS sagakit_step_history_append_only
    BEFORE UPDATE ON sagakit_step_history FOR EACH ROW
    SIGNAL SQLSTATE '45000'
        SET MESSAGE_TEXT = 'sagakit_step_history is append-only';

CREATE TABLE IF NOT EXISTS sagakit_outbox (
    message_id    VARCHAR(255) NOT NULL,
    destination   VARCHAR(255) NOT NULL,
    body          LONGBLOB NOT NULL,
    saga_id       VARCHAR(255),
    available_at  DOUBLE NOT NULL,
    created_at    DOUBLE NOT NULL,
    locked_by     VARCHAR(255),
    locked_until  DOUBLE,
    PRIMARY KEY (message_id),
    KEY sagakit_outbox_available (available_at, created_at, message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_inbox (
    consumer     VARCHAR(255) NOT NULL,
    message_id   VARCHAR(255) NOT NULL,
    reply        LONGBLOB,
    received_at  DOUBLE NOT NULL,
    PRIMARY KEY (consumer, message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_workflow (
    app          VARCHAR(255) NOT NULL,
    instance_id  VARCHAR(255) NOT NULL,
    status       VARCHAR(32) NOT NULL,
    step         VARCHAR(255),
    input        JSON,
    due_at       DOUBLE,
    state        JSON NOT NULL,
    version      INT NOT NULL,
    attempts     INT NOT NULL,
    transitions  INT NOT NULL,
    error        MEDIUMTEXT,
    created_at   DOUBLE NOT NULL,
    updated_at   DOUBLE NOT NULL,
    owner        VARCHAR(255),
    lease_until  DOUBLE,
    result       JSON,
    start_digest VARCHAR(255),
    definition_version  INT NOT NULL DEFAULT 1,
    fingerprint  VARCHAR(255),
    -- when an unfinished instance can be claimed (see workflow_claim)
    wake_at      DOUBLE AS (CASE status WHEN 'pending' THEN due_at
                                        WHEN 'running' THEN lease_until END)
                     VIRTUAL,
    PRIMARY KEY (app, instance_id),
    KEY sagakit_workflow_status (app, status, created_at, instance_id),
    KEY sagakit_workflow_created (created_at),
    KEY sagakit_workflow_wake (app, definition_version, wake_at, instance_id),
    KEY sagakit_workflow_wake_any (app, wake_at, instance_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_workflow_history (
    id           BIGINT NOT NULL AUTO_INCREMENT,
    app          VARCHAR(255) NOT NULL,
    instance_id  VARCHAR(255) NOT NULL,
    step         VARCHAR(255),
    attempt      INT NOT NULL,
    outcome      VARCHAR(64) NOT NULL,
    detail       JSON,
    error        MEDIUMTEXT,
    recorded_at  DOUBLE NOT NULL,
    PRIMARY KEY (id),
    KEY sagakit_workflow_history_instance (app, instance_id, id),
    CONSTRAINT sagakit_workflow_history_instance_fk
        FOREIGN KEY (app, instance_id)
        REFERENCES sagakit_workflow (app, instance_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TRIGGER IF NOT EXISTS sagakit_workflow_history_no_update
    BEFORE UPDATE ON sagakit_workflow_history FOR EACH ROW
    SIGNAL SQLSTATE '45000'
        SET MESSAGE_TEXT = 'sagakit_workflow_history is append-only';

CREATE TRIGGER IF NOT EXISTS sagakit_workflow_history_no_delete
    BEFORE DELETE ON sagakit_workflow_history FOR EACH ROW
    SIGNAL SQLSTATE '45000'
        SET MESSAGE_TEXT = 'sagakit_workflow_history is append-only';

CREATE TABLE IF NOT EXISTS sagakit_event_route (
    event_type     VARCHAR(255) NOT NULL,
    service        VARCHAR(255) NOT NULL,
    queue          VARCHAR(255) NOT NULL,
    subscribed_at  DOUBLE NOT NULL,
    PRIMARY KEY (event_type, service)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_event_log (
    id              BIGINT NOT NULL AUTO_INCREMENT,
    correlation_id  VARCHAR(255) NOT NULL,
    choreography    VARCHAR(255),
    service         VARCHAR(255) NOT NULL,
    event_type      VARCHAR(255) NOT NULL,
    message_id      VARCHAR(255) NOT NULL,
    outcome         VARCHAR(32) NOT NULL,
    detail          MEDIUMTEXT,
    recorded_at     DOUBLE NOT NULL,
    PRIMARY KEY (id),
    KEY sagakit_event_log_correlation (correlation_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_choreography (
    correlation_id  VARCHAR(255) NOT NULL,
    name            VARCHAR(255) NOT NULL,
    status          VARCHAR(32) NOT NULL,
    started_at      DOUBLE NOT NULL,
    updated_at      DOUBLE NOT NULL,
    deadline        DOUBLE NOT NULL,
    definition_version  INT NOT NULL DEFAULT 1,
    fingerprint     VARCHAR(255),
    open_deadline   DOUBLE AS (IF(status IN ('in_progress', 'compensating'),
                                   deadline, NULL)) VIRTUAL,
    PRIMARY KEY (correlation_id),
    KEY sagakit_choreography_deadline (open_deadline, correlation_id),
    KEY sagakit_choreography_status (status, updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_event_outbox (
    message_id      VARCHAR(255) NOT NULL,
    seq             BIGINT NOT NULL AUTO_INCREMENT,
    service         VARCHAR(255) NOT NULL,
    event_type      VARCHAR(255) NOT NULL,
    correlation_id  VARCHAR(255) NOT NULL,
    body            LONGBLOB NOT NULL,
    created_at      DOUBLE NOT NULL,
    locked_by       VARCHAR(255),
    locked_until    DOUBLE,
    PRIMARY KEY (message_id),
    UNIQUE KEY sagakit_event_outbox_seq (seq),
    KEY sagakit_event_outbox_service (service, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Semantic locks: holders, first-come queues, and the row a save that
-- changes them locks first (see migrations/0002_semantic_locks.sql).
CREATE TABLE IF NOT EXISTS sagakit_lock (
    lock_key     VARCHAR(255) NOT NULL,
    saga_id      VARCHAR(255) NOT NULL,
    step         VARCHAR(255) NOT NULL,
    acquired_at  DOUBLE NOT NULL,
    PRIMARY KEY (lock_key),
    KEY sagakit_lock_saga (saga_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_lock_waiter (
    position   BIGINT NOT NULL AUTO_INCREMENT,
    lock_key   VARCHAR(255) NOT NULL,
    saga_id    VARCHAR(255) NOT NULL,
    step       VARCHAR(255) NOT NULL,
    since      DOUBLE NOT NULL,
    PRIMARY KEY (position),
    UNIQUE KEY sagakit_lock_waiter_place (lock_key, saga_id, step),
    KEY sagakit_lock_waiter_queue (lock_key, position),
    KEY sagakit_lock_waiter_saga (saga_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS sagakit_lock_guard (
    id  INT NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO sagakit_lock_guard (id) VALUES (1);
