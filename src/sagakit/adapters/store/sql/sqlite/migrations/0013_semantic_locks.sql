-- 0013: semantic locks. A key is held by at most one saga instance (its row
-- in sagakit_lock) and sagas queue for it in sagakit_lock_waiter, first come
-- first served (by position: a new row's rowid is above every row's there).
-- Rows change only in the transaction of a save of the saga that holds or
-- queues (sagakit.ports.locks).
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
