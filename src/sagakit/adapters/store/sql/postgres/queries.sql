-- Named queries of the PostgreSQL store. Each block starts with "-- name --".
-- Parameters are $n. "now" is always the database clock:
-- extract(epoch FROM clock_timestamp()), so workers on skewed hosts agree.
-- History is passed as one jsonb array of objects whose keys are the
-- sagakit_step_history columns; ordinality keeps the written order.

-- lock_migrations --
-- Serialise concurrent migrators until the end of the transaction
SELECT pg_advisory_xact_lock(7318267413062125617);

-- create_migrations_table --
-- The bookkeeping table; created before any migration runs
CREATE TABLE IF NOT EXISTS sagakit_schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  double precision NOT NULL
);

-- migrations_table_exists --
SELECT to_regclass('sagakit_schema_migrations') IS NOT NULL;

-- applied_migrations --
SELECT version FROM sagakit_schema_migrations ORDER BY version;

-- record_migration --
INSERT INTO sagakit_schema_migrations (version, name, applied_at)
VALUES ($1, $2, extract(epoch FROM clock_timestamp())::double precision);

-- create_saga --
-- One round trip: insert the saga (unless its idempotency key is taken) and
-- its history ($13). $11 owner and $12 lease seconds, both or neither, keep
-- it owned until now + lease. Returns created = false on a taken key.
WITH inserted AS (
    INSERT INTO sagakit_saga (
        saga_id, saga_name, status, version, idempotency_key, context, state,
        failed_step, created_at, updated_at, owner, lease_until
    ) VALUES (
        $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11::text,
        extract(epoch FROM clock_timestamp())::double precision
            + $12::double precision
    )
    ON CONFLICT (saga_name, idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
    RETURNING saga_id
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_id, step, kind, attempt, outcome, result, error, started_at,
        finished_at
    )
    SELECT h.saga_id, h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
           h.started_at, h.finished_at
      FROM inserted,
           ROWS FROM (jsonb_to_recordset($13::jsonb) AS (
               saga_id text, step text, kind text, attempt integer,
               outcome text, result jsonb, error jsonb,
               started_at double precision, finished_at double precision
           )) WITH ORDINALITY AS h(
               saga_id, step, kind, attempt, outcome, result, error,
               started_at, finished_at, n
           )
     ORDER BY h.n
)
SELECT count(*) > 0 AS created FROM inserted;

-- save_saga --
-- One round trip: replace the saga if it is still at version $8 and append
-- its history ($11). $9 owner and $10 lease seconds (both or neither)
-- refresh the lease; NULL keeps it. saved = 0 with found = true is a
-- version conflict; found = false means no such saga.
WITH updated AS (
    UPDATE sagakit_saga
       SET status = $2, version = $3, context = $4::jsonb, state = $5::jsonb,
           failed_step = $6, updated_at = $7,
           owner = coalesce($9::text, owner),
           lease_until = coalesce(
               extract(epoch FROM clock_timestamp())::double precision
                   + $10::double precision,
               lease_until)
     WHERE saga_id = $1 AND version = $8
    RETURNING saga_id
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_id, step, kind, attempt, outcome, result, error, started_at,
        finished_at
    )
    SELECT h.saga_id, h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
           h.started_at, h.finished_at
      FROM updated,
           ROWS FROM (jsonb_to_recordset($11::jsonb) AS (
               saga_id text, step text, kind text, attempt integer,
               outcome text, result jsonb, error jsonb,
               started_at double precision, finished_at double precision
           )) WITH ORDINALITY AS h(
               saga_id, step, kind, attempt, outcome, result, error,
               started_at, finished_at, n
           )
     ORDER BY h.n
)
SELECT (SELECT count(*) FROM updated) AS saved,
       EXISTS (SELECT 1 FROM sagakit_saga WHERE saga_id = $1) AS found;

-- get_saga --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM sagakit_saga WHERE saga_id = $1;

-- find_saga_by_key --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM sagakit_saga WHERE saga_name = $1 AND idempotency_key = $2;

-- get_history --
SELECT saga_id, step, kind, attempt, outcome, result, error, started_at,
       finished_at
  FROM sagakit_step_history WHERE saga_id = $1 ORDER BY id;

-- list_sagas --
-- Optional filters are passed as NULL to disable them
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM sagakit_saga
 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR saga_name = $2)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $3;

-- ids_with_prefix --
SELECT saga_id FROM sagakit_saga
 WHERE left(saga_id, length($1)) = $1
 ORDER BY saga_id
 LIMIT $2;

-- unfinished_sagas --
-- $1 NULL means every saga name
SELECT saga_id FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND ($1::text[] IS NULL OR saga_name = ANY($1::text[]))
 ORDER BY created_at, saga_id
 LIMIT $2;

-- claim_sagas --
-- Atomically take unleased or expired non-terminal sagas named in $2, oldest
-- first; rows another claimer has locked are skipped, not waited for. The
-- version bump makes a save by the previous owner fail.
WITH candidates AS (
    SELECT saga_id FROM sagakit_saga
     WHERE status IN ('running', 'compensating')
       AND saga_name = ANY($2::text[])
       AND (lease_until IS NULL
            OR lease_until < extract(epoch FROM clock_timestamp())::double precision)
     ORDER BY created_at, saga_id
     LIMIT $4
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagakit_saga AS s
       SET owner = $1,
           lease_until = extract(epoch FROM clock_timestamp())::double precision
               + $3::double precision,
           version = s.version + 1
      FROM candidates AS c
     WHERE s.saga_id = c.saga_id
    RETURNING s.saga_id, s.saga_name, s.status, s.version, s.idempotency_key,
              s.context, s.state, s.created_at, s.updated_at
)
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at
  FROM claimed
 ORDER BY created_at, saga_id;

-- renew_leases --
-- Extend the leases $1 still holds on the non-terminal sagas in $2
UPDATE sagakit_saga
   SET lease_until = extract(epoch FROM clock_timestamp())::double precision
       + $3::double precision
 WHERE saga_id = ANY($2::text[])
   AND owner = $1
   AND status IN ('running', 'compensating')
RETURNING saga_id;

-- release_leases --
-- Hand the sagas in $2 that $1 still holds back at once
UPDATE sagakit_saga
   SET owner = NULL, lease_until = NULL
 WHERE saga_id = ANY($2::text[]) AND owner = $1;
