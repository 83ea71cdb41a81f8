-- Named queries of the SQLite store. Each block starts with "-- name --".

-- create_migrations_table --
-- The bookkeeping table; created before any migration runs
CREATE TABLE IF NOT EXISTS sagakit_schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  REAL NOT NULL
);

-- applied_migrations --
SELECT version FROM sagakit_schema_migrations ORDER BY version;

-- record_migration --
INSERT INTO sagakit_schema_migrations (version, name, applied_at) VALUES (?, ?, ?);

-- insert_saga --
INSERT INTO sagakit_saga (
    saga_id, saga_name, status, version, idempotency_key, context, state,
    failed_step, created_at, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- update_saga --
-- Optimistic: only succeeds when the stored version is the expected one
UPDATE sagakit_saga
   SET status = ?, version = ?, context = ?, state = ?, failed_step = ?, updated_at = ?
 WHERE saga_id = ? AND version = ?;

-- insert_history --
INSERT INTO sagakit_step_history (
    saga_id, step, kind, attempt, outcome, result, error, started_at, finished_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);

-- get_saga --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM sagakit_saga WHERE saga_id = ?;

-- find_saga_by_key --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM sagakit_saga WHERE saga_name = ? AND idempotency_key = ?;

-- saga_exists --
SELECT 1 FROM sagakit_saga WHERE saga_id = ?;

-- get_history --
SELECT saga_id, step, kind, attempt, outcome, result, error, started_at, finished_at
  FROM sagakit_step_history WHERE saga_id = ? ORDER BY id;

-- list_sagas --
-- Optional filters are passed as NULL to disable them
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM sagakit_saga
 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR saga_name = ?2)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?3;

-- unfinished_sagas --
SELECT saga_id, saga_name FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
 ORDER BY created_at
 LIMIT ?;
