-- 0003: what the SQLite and PostgreSQL stores' migration 0016 adds:
-- notifications for hooks, and the dashboard's search by idempotency key.
-- A saga that ends failed or compensation_failed gets a notification row in
-- the transaction that ends it (the triggers below), whatever process or
-- operator ended it; a notifier delivers it to its hooks and keeps the row
-- (delivered, or dropped after its attempts) so that an event is sent once.
-- Stuck sagas and lock waits are added by notifiers. Every statement may run
-- again after a crash part-way: MySQL has no ADD INDEX IF NOT EXISTS, so a
-- procedure adds the key index only where it is missing.
CREATE TABLE IF NOT EXISTS sagakit_notification (
    event_id      VARCHAR(600) NOT NULL,
    kind          VARCHAR(64) NOT NULL,
    saga_id       VARCHAR(255),
    saga_name     VARCHAR(255),
    version       INT,
    detail        JSON,
    occurred_at   DOUBLE NOT NULL,
    status        VARCHAR(32) NOT NULL,
    attempts      INT NOT NULL,
    next_at       DOUBLE NOT NULL,
    delivered_to  JSON,
    last_error    TEXT,
    finished_at   DOUBLE,
    locked_by     VARCHAR(255),
    locked_until  DOUBLE,
    due_at        DOUBLE AS (IF(status = 'pending', next_at, NULL)) VIRTUAL,
    PRIMARY KEY (event_id),
    KEY sagakit_notification_due (due_at, event_id),
    KEY sagakit_notification_occurred (occurred_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

DELIMITER //

CREATE PROCEDURE IF NOT EXISTS sagakit_saga_notify(
    IN ended VARCHAR(32) CHARACTER SET utf8mb4,
    IN id VARCHAR(255) CHARACTER SET utf8mb4,
    IN name VARCHAR(255) CHARACTER SET utf8mb4,
    IN at_version INT,
    IN at DOUBLE)
BEGIN
    INSERT INTO sagakit_notification (
        event_id, kind, saga_id, saga_name, version, occurred_at, status,
        attempts, next_at)
    VALUES (
        CONCAT('saga.', ended, ':', id, ':', at_version), CONCAT('saga.', ended),
        id, name, at_version, at, 'pending', 0, at)
    ON DUPLICATE KEY UPDATE event_id = sagakit_notification.event_id;
END //

CREATE TRIGGER IF NOT EXISTS sagakit_saga_notify_insert
    AFTER INSERT ON sagakit_saga FOR EACH ROW
BEGIN
    IF NEW.status IN ('failed', 'compensation_failed') THEN
        CALL sagakit_saga_notify(
            NEW.status, NEW.saga_id, NEW.saga_name, NEW.version, NEW.updated_at);
    END IF;
END //

CREATE TRIGGER IF NOT EXISTS sagakit_saga_notify_end
    AFTER UPDATE ON sagakit_saga FOR EACH ROW
BEGIN
    IF NEW.status IN ('failed', 'compensation_failed')
       AND NOT (OLD.status <=> NEW.status) THEN
        CALL sagakit_saga_notify(
            NEW.status, NEW.saga_id, NEW.saga_name, NEW.version, NEW.updated_at);
    END IF;
END //

DELIMITER ;

DROP PROCEDURE IF EXISTS sagakit_migration_0003;

DELIMITER //

CREATE PROCEDURE sagakit_migration_0003()
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.statistics
         WHERE table_schema = DATABASE() AND table_name = 'sagakit_saga'
           AND index_name = 'sagakit_saga_key') THEN
        ALTER TABLE sagakit_saga
            ADD KEY sagakit_saga_key (idempotency_key, created_at);
    END IF;
END //

DELIMITER ;

CALL sagakit_migration_0003();

DROP PROCEDURE sagakit_migration_0003;
