-- 0013: semantic locks. A key is held by at most one saga instance (its row
-- in sagakit_lock) and sagas queue for it in sagakit_lock_waiter, first come
-- first served (by position). Rows change only in the transaction of a save
-- of the saga that holds or queues (sagakit.ports.locks), which serialises
-- on an advisory lock while it changes them.
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
