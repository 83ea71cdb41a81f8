-- 0002: semantic locks, as the PostgreSQL store's migration 0013. A key is
-- held by at most one saga instance (its row in sagakit_lock) and sagas
-- queue for it in sagakit_lock_waiter, first come first served (by
-- position). Rows change only in the transaction of a save of the saga that
-- holds or queues (sagakit.ports.locks), which first locks the one row of
-- sagakit_lock_guard (lock_serialise): MySQL has no lock that ends with the
-- transaction but a row's, so that row stands for PostgreSQL's advisory
-- lock. Every statement may run again after a crash part-way.
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
