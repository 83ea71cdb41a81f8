-- Named queries of the PostgreSQL store. Each block starts with "-- name --".
-- Parameters are $n. "now" is always the database clock:
-- extract(epoch FROM clock_timestamp()), so workers on skewed hosts agree.
-- History is passed as one jsonb array of objects whose keys are the
-- sagakit_step_history columns; ordinality keeps the written order. A
-- statement appends lines for the sagas it inserts or updates only (no
-- foreign key checks each line: see migration 0018): one that writes one
-- saga gives a line of another saga no saga id, which NOT NULL refuses
-- (create_sagas and save_sagas cannot tell which saga's write a line came
-- with: the store refuses such a batch before sending it); a line is filed
-- under its saga's created_at, which the statement's INSERT or UPDATE of
-- the saga returns (migration 0020); found, after a
-- save, is looked up only when nothing was updated. Outbox
-- messages are passed as five parallel arrays (NULL for none): message ids,
-- destinations, bodies, saga ids and available_at.

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
-- it owned until now + lease; $14 is the deadline, $15 the definition
-- version and $16 its fingerprint. Returns created = false on a taken key or
-- saga id (no error: one create of a pipelined batch cannot fail the others).
WITH inserted AS (
    INSERT INTO sagakit_saga (
        saga_id, saga_name, status, version, idempotency_key, context, state,
        failed_step, created_at, updated_at, owner, lease_until, deadline,
        definition_version, fingerprint
    ) VALUES (
        $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11::text,
        extract(epoch FROM clock_timestamp())::double precision
            + $12::double precision,
        $14::double precision, $15::integer, $16::text
    )
    ON CONFLICT DO NOTHING
    RETURNING saga_id, created_at
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_created_at, saga_id, step, kind, attempt, outcome, result,
        error, started_at, finished_at
    )
    SELECT inserted.created_at,
           CASE WHEN h.saga_id = inserted.saga_id THEN h.saga_id END,
           h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
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

-- create_sagas --
-- create_saga for many sagas in one statement (group commit): every argument
-- is an array with an element per saga (each saga id at most once), except
-- the history of them all, an array per column with an element per line
-- (each line names its saga): $13 saga id, $17 step, $18 kind, $19 attempt,
-- $20 outcome, $21 result and $22 error (JSON text), $23 started at, $24
-- finished at (parallel arrays: the server reads them for a ninth of the
-- CPU of a jsonb array of objects). A line is appended to the saga it names
-- if this statement inserted it: the store checks, before it sends them,
-- that each line is of its own create's saga. One row per saga, in their
-- order: created = false on a taken key or saga id (a key taken by an
-- earlier saga of the same batch too).
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::integer[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::double precision[],
        $10::double precision[], $11::text[], $12::double precision[],
        $14::double precision[], $15::integer[], $16::text[]
    ) WITH ORDINALITY AS i(
        saga_id, saga_name, status, version, idempotency_key, context, state,
        failed_step, created_at, updated_at, owner, lease, deadline,
        definition_version, fingerprint, n
    )
), inserted AS (
    INSERT INTO sagakit_saga (
        saga_id, saga_name, status, version, idempotency_key, context, state,
        failed_step, created_at, updated_at, owner, lease_until, deadline,
        definition_version, fingerprint
    )
    SELECT saga_id, saga_name, status, version, idempotency_key,
           context::jsonb, state::jsonb, failed_step, created_at, updated_at,
           owner,
           extract(epoch FROM clock_timestamp())::double precision + lease,
           deadline, definition_version, fingerprint
      FROM input ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING saga_id, created_at
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_created_at, saga_id, step, kind, attempt, outcome, result,
        error, started_at, finished_at
    )
    SELECT w.created_at, h.saga_id, h.step, h.kind, h.attempt, h.outcome,
           h.result, h.error, h.started_at, h.finished_at
      FROM sagakit_history_columns(
               $13, $17, $18, $19, $20, $21, $22, $23, $24
           ) AS h
      JOIN inserted AS w ON w.saga_id = h.saga_id
     ORDER BY h.n
)
SELECT i.saga_id IN (SELECT saga_id FROM inserted) AS created
  FROM input AS i
 ORDER BY i.n;

-- create_saga_outbox --
-- create_saga, and its outbox messages ($15-$21: id, destination, body, saga
-- id, available at, held by, hold seconds) in the same statement; $22 and $23
-- are the definition version and fingerprint. A
-- separate statement so that create_saga does not lock and open the outbox
-- on every call.
WITH inserted AS (
    INSERT INTO sagakit_saga (
        saga_id, saga_name, status, version, idempotency_key, context, state,
        failed_step, created_at, updated_at, owner, lease_until, deadline,
        definition_version, fingerprint
    ) VALUES (
        $1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, $11::text,
        extract(epoch FROM clock_timestamp())::double precision
            + $12::double precision,
        $14::double precision, $22::integer, $23::text
    )
    ON CONFLICT DO NOTHING
    RETURNING saga_id, created_at
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_created_at, saga_id, step, kind, attempt, outcome, result,
        error, started_at, finished_at
    )
    SELECT inserted.created_at,
           CASE WHEN h.saga_id = inserted.saga_id THEN h.saga_id END,
           h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
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
), queued AS (
    INSERT INTO sagakit_outbox (
        message_id, destination, body, saga_id, available_at, created_at,
        locked_by, locked_until
    )
    SELECT m.message_id, m.destination, m.body, m.saga_id, m.available_at,
           extract(epoch FROM clock_timestamp())::double precision,
           m.held_by,
           extract(epoch FROM clock_timestamp())::double precision + m.hold
      FROM inserted,
           unnest($15::text[], $16::text[], $17::bytea[], $18::text[],
                  $19::double precision[], $20::text[],
                  $21::double precision[])
               WITH ORDINALITY AS m(
                   message_id, destination, body, saga_id, available_at,
                   held_by, hold, n
               )
     ORDER BY m.n
    ON CONFLICT (message_id) DO NOTHING
)
SELECT count(*) > 0 AS created FROM inserted;

-- save_saga --
-- One round trip: replace the saga if it is still at version $8 and append
-- its history ($11). $9 owner and $10 lease seconds (both or neither)
-- refresh the lease; NULL keeps it. $12 is the deadline, $13 and $14 the
-- definition version and fingerprint (a migration changes them). saved = 0
-- with found = true is a version conflict; found = false means no such saga.
WITH updated AS (
    UPDATE sagakit_saga
       SET status = $2, version = $3, context = $4::jsonb, state = $5::jsonb,
           failed_step = $6, updated_at = $7, deadline = $12::double precision,
           waiting = NULL, definition_version = $13::integer,
           fingerprint = $14::text,
           owner = coalesce($9::text, owner),
           lease_until = coalesce(
               extract(epoch FROM clock_timestamp())::double precision
                   + $10::double precision,
               lease_until)
     WHERE saga_id = $1 AND version = $8
    RETURNING saga_id, created_at
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_created_at, saga_id, step, kind, attempt, outcome, result,
        error, started_at, finished_at
    )
    SELECT updated.created_at,
           CASE WHEN h.saga_id = updated.saga_id THEN h.saga_id END,
           h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
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
       CASE WHEN EXISTS (SELECT 1 FROM updated) THEN true
            ELSE EXISTS (SELECT 1 FROM sagakit_saga WHERE saga_id = $1)
       END AS found;

-- save_sagas --
-- save_saga for many sagas in one statement (group commit): every argument
-- is an array with an element per saga, in one lock order ($1, saga ids,
-- each at most once), except the history of them all, an array per column
-- with an element per line as create_sagas takes it: $11 saga id, $15 step,
-- $16 kind, $17 attempt, $18 outcome, $19 result, $20 error, $21 started
-- at, $22 finished at. A saga is replaced only if still at its
-- expected version ($8), and only its lines are appended (each line to the
-- saga it names, which the store checks is its own save's before sending
-- them). One row per saga:
-- saved, and found (false: no such saga) as save_saga returns them.
WITH input AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::integer[], $4::text[], $5::text[],
        $6::text[], $7::double precision[], $8::integer[], $9::text[],
        $10::double precision[], $12::double precision[], $13::integer[],
        $14::text[]
    ) WITH ORDINALITY AS i(
        saga_id, status, version, context, state, failed_step, updated_at,
        expected, owner, lease, deadline, definition_version, fingerprint, n
    )
), updated AS (
    UPDATE sagakit_saga AS s
       SET status = i.status, version = i.version,
           context = i.context::jsonb, state = i.state::jsonb,
           failed_step = i.failed_step, updated_at = i.updated_at,
           deadline = i.deadline, waiting = NULL,
           definition_version = i.definition_version,
           fingerprint = i.fingerprint,
           owner = coalesce(i.owner, s.owner),
           lease_until = coalesce(
               extract(epoch FROM clock_timestamp())::double precision
                   + i.lease,
               s.lease_until)
      FROM input AS i
     WHERE s.saga_id = i.saga_id AND s.version = i.expected
    RETURNING s.saga_id, s.created_at
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_created_at, saga_id, step, kind, attempt, outcome, result,
        error, started_at, finished_at
    )
    SELECT w.created_at, h.saga_id, h.step, h.kind, h.attempt, h.outcome,
           h.result, h.error, h.started_at, h.finished_at
      FROM sagakit_history_columns(
               $11, $15, $16, $17, $18, $19, $20, $21, $22
           ) AS h
      JOIN updated AS w ON w.saga_id = h.saga_id
     ORDER BY h.n
)
SELECT i.saga_id, u.saga_id IS NOT NULL AS saved,
       u.saga_id IS NOT NULL
       OR EXISTS (SELECT 1 FROM sagakit_saga AS s
                   WHERE s.saga_id = i.saga_id) AS found
  FROM input AS i LEFT JOIN updated AS u ON u.saga_id = i.saga_id
 ORDER BY i.n;

-- save_saga_messaging --
-- save_saga, and in the same statement its outbox messages ($13-$17, $20
-- held by and $21 hold seconds) and an optional inbox entry ($18 consumer,
-- $19 message id, both or neither); $22 and $23 are the definition version
-- and fingerprint. A
-- separate statement so that save_saga does not lock and open the outbox and
-- inbox on every call.
-- With an inbox entry the saga row is locked first (target) and the entry
-- inserted only while the version still holds; the update then runs only if
-- the entry was new, so a duplicate writes nothing. saved = 1 is success;
-- otherwise found = false means no such saga, duplicate = true a message
-- consumed before, anything else a version conflict.
WITH target AS (
    SELECT saga_id FROM sagakit_saga
     WHERE saga_id = $1 AND version = $8 AND $18::text IS NOT NULL
       FOR UPDATE
), received AS (
    INSERT INTO sagakit_inbox (consumer, message_id, received_at)
    SELECT $18::text, $19::text,
           extract(epoch FROM clock_timestamp())::double precision
      FROM target
    ON CONFLICT (consumer, message_id) DO NOTHING
    RETURNING message_id
), updated AS (
    UPDATE sagakit_saga
       SET status = $2, version = $3, context = $4::jsonb, state = $5::jsonb,
           failed_step = $6, updated_at = $7, deadline = $12::double precision,
           waiting = NULL, definition_version = $22::integer,
           fingerprint = $23::text,
           owner = coalesce($9::text, owner),
           lease_until = coalesce(
               extract(epoch FROM clock_timestamp())::double precision
                   + $10::double precision,
               lease_until)
     WHERE saga_id = $1 AND version = $8
       AND ($18::text IS NULL OR EXISTS (SELECT 1 FROM received))
    RETURNING saga_id, created_at
), appended AS (
    INSERT INTO sagakit_step_history (
        saga_created_at, saga_id, step, kind, attempt, outcome, result,
        error, started_at, finished_at
    )
    SELECT updated.created_at,
           CASE WHEN h.saga_id = updated.saga_id THEN h.saga_id END,
           h.step, h.kind, h.attempt, h.outcome, h.result, h.error,
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
), queued AS (
    INSERT INTO sagakit_outbox (
        message_id, destination, body, saga_id, available_at, created_at,
        locked_by, locked_until
    )
    SELECT m.message_id, m.destination, m.body, m.saga_id, m.available_at,
           extract(epoch FROM clock_timestamp())::double precision,
           m.held_by,
           extract(epoch FROM clock_timestamp())::double precision + m.hold
      FROM updated,
           unnest($13::text[], $14::text[], $15::bytea[], $16::text[],
                  $17::double precision[], $20::text[],
                  $21::double precision[])
               WITH ORDINALITY AS m(
                   message_id, destination, body, saga_id, available_at,
                   held_by, hold, n
               )
     ORDER BY m.n
    ON CONFLICT (message_id) DO NOTHING
)
SELECT (SELECT count(*) FROM updated) AS saved,
       CASE WHEN EXISTS (SELECT 1 FROM updated) THEN true
            ELSE EXISTS (SELECT 1 FROM sagakit_saga WHERE saga_id = $1)
       END AS found,
       $18::text IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM received)
           AND (EXISTS (SELECT 1 FROM target)
                OR EXISTS (SELECT 1 FROM sagakit_inbox
                            WHERE consumer = $18 AND message_id = $19))
           AS duplicate;

-- get_saga --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga WHERE saga_id = $1;

-- find_saga_by_key --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga WHERE saga_name = $1 AND idempotency_key = $2;

-- get_history --
SELECT saga_id, step, kind, attempt, outcome, result, error, started_at,
       finished_at
  FROM sagakit_step_history
 WHERE saga_created_at = (SELECT created_at FROM sagakit_saga
                           WHERE saga_id = $1)
   AND saga_id = $1
 ORDER BY id;

-- list_sagas --
-- Newest first: $1 the limit, $2 created before (NULL: any time); with $3
-- (a saga id), created at $2 and before that id too: the page after the
-- saga created at $2 with id $3 (keyset paging). Each
-- filter has a statement of its own (list_sagas_by_*), so that every one
-- reads its index in order and stops at the limit, whatever plan is cached.
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE created_at <= coalesce($2::double precision, 'Infinity')
   AND (created_at < coalesce($2::double precision, 'Infinity') OR saga_id < $3::text)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $1;

-- list_sagas_by_status --
-- list_sagas of status $1; $2 the limit, $3 created before, $4
-- the id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE status = $1 AND created_at <= coalesce($3::double precision, 'Infinity')
   AND (created_at < coalesce($3::double precision, 'Infinity') OR saga_id < $4::text)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $2;

-- list_sagas_by_name --
-- list_sagas of saga $1; $2 the limit, $3 created before, $4 the
-- id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE saga_name = $1 AND created_at <= coalesce($3::double precision, 'Infinity')
   AND (created_at < coalesce($3::double precision, 'Infinity') OR saga_id < $4::text)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $2;

-- list_sagas_by_name_status --
-- list_sagas of saga $1 in status $2; $3 the limit, $4 created
-- before, $5 the id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE saga_name = $1 AND status = $2
   AND created_at <= coalesce($4::double precision, 'Infinity')
   AND (created_at < coalesce($4::double precision, 'Infinity') OR saga_id < $5::text)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $3;

-- list_waiting_sagas --
-- list_sagas of the unfinished sagas marked waiting (few: the partial index
-- holds only them), of saga $1 and status $2 (NULL: any); $3 the limit, $4
-- created before, $5 the id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE waiting IS NOT NULL AND status IN ('running', 'compensating')
   AND created_at <= coalesce($4::double precision, 'Infinity')
   AND (created_at < coalesce($4::double precision, 'Infinity') OR saga_id < $5::text)
   AND ($1::text IS NULL OR saga_name = $1::text)
   AND ($2::text IS NULL OR status = $2::text)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $3;

-- count_by_status --
-- Sagas per status, as the triggers of migration 0015 keep them: the
-- totals folded so far plus the changes since (a few thousand rows at
-- most, however many sagas are stored or running)
SELECT status, sum(n)::bigint AS n FROM (
    SELECT status, n FROM sagakit_saga_count
    UNION ALL
    SELECT status, change FROM sagakit_saga_count_change
) AS counted
 GROUP BY status
HAVING sum(n) > 0;

-- count_saga_by_status --
-- count_by_status of saga $1
SELECT status, sum(n)::bigint AS n FROM (
    SELECT status, n FROM sagakit_saga_count WHERE saga_name = $1
    UNION ALL
    SELECT status, change FROM sagakit_saga_count_change WHERE saga_name = $1
) AS counted
 GROUP BY status
HAVING sum(n) > 0;

-- count_by_status_scan --
-- count_by_status on a schema from before 0015 (no counts kept of every
-- status): reads every saga
SELECT status, count(*) AS n FROM sagakit_saga
 WHERE ($1::text IS NULL OR saga_name = $1::text)
 GROUP BY status;

-- ids_with_prefix --
-- Ids from $1 (a prefix) up to $2 (excluded: the least string above every id
-- that starts with $1), in byte order ("C"): a range of the primary key; $3
-- the limit
SELECT saga_id FROM sagakit_saga
 WHERE saga_id COLLATE "C" >= $1 AND saga_id COLLATE "C" < $2
   AND left(saga_id, length($1)) = $1
 ORDER BY saga_id COLLATE "C"
 LIMIT $3;

-- ids_from_prefix --
-- ids_with_prefix for a prefix that has no upper bound ('' or only
-- U+10FFFF): every id from $1 on; $2 the limit
SELECT saga_id FROM sagakit_saga
 WHERE saga_id COLLATE "C" >= $1 AND left(saga_id, length($1)) = $1
 ORDER BY saga_id COLLATE "C"
 LIMIT $2;

-- unfinished_sagas --
-- Ids of the unfinished sagas named in $1 (NULL: of every saga) in claim
-- order (created_at, saga_id), after saga $2 (NULL: from the first; an id
-- not stored: none): a page of at most $3, read in order from
-- sagakit_saga_unfinished
SELECT saga_id FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND created_at >= CASE WHEN $2::text IS NULL THEN '-Infinity'::double precision
       ELSE coalesce((SELECT created_at FROM sagakit_saga WHERE saga_id = $2::text),
                     'Infinity') END
   AND ($2::text IS NULL
        OR created_at > (SELECT created_at FROM sagakit_saga
                          WHERE saga_id = $2::text)
        OR saga_id > $2::text)
   AND ($1::text[] IS NULL OR saga_name = ANY($1::text[]))
 ORDER BY created_at, saga_id
 LIMIT $3;

-- claim_sagas --
-- Atomically take non-terminal sagas named in $2 that are unleased, whose
-- lease expired or whose owner is in $5 (known dead), oldest first; rows
-- another claimer has locked are skipped, not waited for. The version bump
-- makes a save by the previous owner fail. An entry of $2 is a saga name or
-- a definition key (name:version[:fingerprint]). With $6, only sagas after
-- saga $6 in that order (the next batch of a recovery). Each row ends with
-- the owner whose lease the claim took (NULL: none).
WITH candidates AS (
    SELECT saga_id, owner FROM sagakit_saga
     WHERE status IN ('running', 'compensating')
       AND (saga_name = ANY($2::text[])
            OR saga_name || ':' || definition_version
               || coalesce(':' || fingerprint, '') = ANY($2::text[]))
       AND (lease_until IS NULL
            OR lease_until < extract(epoch FROM clock_timestamp())::double precision
            OR owner = ANY($5::text[]))
       AND created_at >= CASE WHEN $6::text IS NULL
           THEN '-Infinity'::double precision
           ELSE coalesce((SELECT created_at FROM sagakit_saga
                           WHERE saga_id = $6::text), 'Infinity') END
       AND ($6::text IS NULL
            OR created_at > (SELECT created_at FROM sagakit_saga
                              WHERE saga_id = $6::text)
            OR saga_id > $6::text)
     ORDER BY created_at, saga_id
     LIMIT $4
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagakit_saga AS s
       SET owner = $1,
           lease_until = extract(epoch FROM clock_timestamp())::double precision
               + $3::double precision,
           version = s.version + 1,
           waiting = NULL
      FROM candidates AS c
     WHERE s.saga_id = c.saga_id
    RETURNING s.saga_id, s.saga_name, s.status, s.version, s.idempotency_key,
              s.context, s.state, s.created_at, s.updated_at, s.deadline,
              s.definition_version, s.fingerprint, s.waiting,
              c.owner AS previous_owner
)
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting,
       previous_owner
  FROM claimed
 ORDER BY created_at, saga_id;

-- stranded_sagas --
-- Non-terminal sagas named in $1 whose definition key is not in $2, not
-- marked waiting yet and not leased (or leased by an owner in $4, known dead)
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND saga_name = ANY($1::text[])
   AND NOT (saga_name || ':' || definition_version
            || coalesce(':' || fingerprint, '') = ANY($2::text[]))
   AND waiting IS NULL
   AND (lease_until IS NULL
        OR lease_until < extract(epoch FROM clock_timestamp())::double precision
        OR owner = ANY($4::text[]))
 ORDER BY created_at, saga_id
 LIMIT $3;

-- mark_waiting --
UPDATE sagakit_saga SET waiting = $2
 WHERE saga_id = $1 AND status IN ('running', 'compensating');

-- live_definitions --
SELECT saga_name, definition_version, fingerprint, count(*) AS n
  FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
 GROUP BY saga_name, definition_version, fingerprint;

-- lease_holders --
-- The owners of non-terminal sagas named in $1, each once
SELECT DISTINCT owner FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND owner IS NOT NULL
   AND saga_name = ANY($1::text[]);

-- renew_leases --
-- Extend the leases $1 still holds on the non-terminal sagas in $2
UPDATE sagakit_saga
   SET lease_until = extract(epoch FROM clock_timestamp())::double precision
       + $3::double precision
 WHERE saga_id = ANY($2::text[])
   AND owner = $1
   AND status IN ('running', 'compensating')
RETURNING saga_id;

-- saga_leases --
-- Owner, whether its lease is live (by the database clock) and version of the
-- non-terminal sagas in $1
SELECT saga_id, owner,
       coalesce(lease_until >= extract(epoch FROM clock_timestamp())::double precision,
                false) AS live,
       version
  FROM sagakit_saga
 WHERE saga_id = ANY($1::text[]) AND status IN ('running', 'compensating');

-- release_leases --
-- Hand the sagas in $2 that $1 still holds back at once
UPDATE sagakit_saga
   SET owner = NULL, lease_until = NULL
 WHERE saga_id = ANY($2::text[]) AND owner = $1;

-- due_deadlines --
-- Non-terminal sagas named in $1 whose deadline has passed, earliest first
SELECT saga_id FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND deadline <= extract(epoch FROM clock_timestamp())::double precision
   AND saga_name = ANY($1::text[])
 ORDER BY deadline, saga_id
 LIMIT $2;

-- claim_outbox --
-- Hold for $1 until now + $2 seconds up to $3 messages that are due and that
-- no relay holds (or whose hold expired), oldest first; rows another claimer
-- has locked are skipped, not waited for.
WITH candidates AS (
    SELECT message_id FROM sagakit_outbox
     WHERE available_at <= extract(epoch FROM clock_timestamp())::double precision
       AND (locked_until IS NULL
            OR locked_until < extract(epoch FROM clock_timestamp())::double precision)
     ORDER BY available_at, created_at, message_id
     LIMIT $3
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagakit_outbox AS o
       SET locked_by = $1,
           locked_until = extract(epoch FROM clock_timestamp())::double precision
               + $2::double precision
      FROM candidates AS c
     WHERE o.message_id = c.message_id
    RETURNING o.message_id, o.destination, o.body, o.saga_id, o.available_at,
              o.created_at
)
SELECT message_id, destination, body, saga_id, available_at
  FROM claimed
 ORDER BY available_at, created_at, message_id;

-- release_outbox --
-- End the holds of $1 (of everyone if NULL): the messages are free to claim;
-- returns how many
WITH released AS (
    UPDATE sagakit_outbox SET locked_by = NULL, locked_until = NULL
     WHERE locked_until IS NOT NULL
       AND ($1::text IS NULL OR locked_by = $1::text)
    RETURNING 1
)
SELECT count(*) FROM released;

-- delete_outbox --
-- Forget the messages in $1: they were published
DELETE FROM sagakit_outbox WHERE message_id = ANY($1::text[]);

-- record_inbox --
-- Remember that $1 took message $2 with reply $3; nothing if it did before
INSERT INTO sagakit_inbox (consumer, message_id, reply, received_at)
VALUES ($1, $2, $3,
        extract(epoch FROM clock_timestamp())::double precision)
ON CONFLICT (consumer, message_id) DO NOTHING
RETURNING message_id;

-- inbox_reply --
SELECT reply FROM sagakit_inbox WHERE consumer = $1 AND message_id = $2;

-- workflow_insert --
-- A workflow instance and its history ($16, a jsonb array) in one statement;
-- an existing (app, instance_id) is kept as it is (created = false). $17 is
-- the result, $18 the start digest, $19 and $20 its definition version and
-- fingerprint.
WITH inserted AS (
    INSERT INTO sagakit_workflow (
        app, instance_id, status, step, input, due_at, state, version,
        attempts, transitions, error, created_at, updated_at, owner,
        lease_until, result, start_digest, definition_version, fingerprint
    ) VALUES (
        $1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8, $9, $10, $11, $12, $13,
        $14, $15, $17::jsonb, $18::text, $19, $20
    )
    ON CONFLICT (app, instance_id) DO NOTHING
    RETURNING app, instance_id
), appended AS (
    INSERT INTO sagakit_workflow_history (
        app, instance_id, step, attempt, outcome, detail, error, recorded_at
    )
    SELECT i.app, i.instance_id, h.step, h.attempt, h.outcome, h.detail,
           h.error, h.recorded_at
      FROM inserted AS i,
           ROWS FROM (jsonb_to_recordset($16::jsonb) AS (
               step text, attempt integer, outcome text, detail jsonb,
               error text, recorded_at double precision
           )) WITH ORDINALITY AS h(
               step, attempt, outcome, detail, error, recorded_at, n
           )
     ORDER BY h.n
)
SELECT count(*) > 0 AS created FROM inserted;

-- workflow_get --
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE app = $1 AND instance_id = $2;

-- workflow_save --
-- Optimistic replace ($14 is the expected version) and its history ($16) in
-- one statement; found tells a stale version from a missing instance. $17 is
-- the result, $18 and $19 the definition version and fingerprint; the start
-- digest is written once, by workflow_insert.
WITH updated AS (
    UPDATE sagakit_workflow
       SET status = $3, step = $4, input = $5::jsonb, due_at = $6,
           state = $7::jsonb, version = $8, attempts = $9, transitions = $10,
           error = $11, updated_at = $12, owner = $13, lease_until = $15,
           result = $17::jsonb, definition_version = $18, fingerprint = $19
     WHERE app = $1 AND instance_id = $2 AND version = $14
    RETURNING app, instance_id
), appended AS (
    INSERT INTO sagakit_workflow_history (
        app, instance_id, step, attempt, outcome, detail, error, recorded_at
    )
    SELECT u.app, u.instance_id, h.step, h.attempt, h.outcome, h.detail,
           h.error, h.recorded_at
      FROM updated AS u,
           ROWS FROM (jsonb_to_recordset($16::jsonb) AS (
               step text, attempt integer, outcome text, detail jsonb,
               error text, recorded_at double precision
           )) WITH ORDINALITY AS h(
               step, attempt, outcome, detail, error, recorded_at, n
           )
     ORDER BY h.n
)
SELECT (SELECT count(*) FROM updated) AS saved,
       EXISTS (SELECT 1 FROM sagakit_workflow
                WHERE app = $1 AND instance_id = $2) AS found;

-- workflow_save_many --
-- workflow_save of several instances in one statement, each column an array
-- ($1 .. $19 as workflow_save binds them, history $16 a jsonb array per
-- instance, as text): one row per save, in order, saying whether it was
-- saved and, if not, whether the instance exists.
WITH given AS (
    SELECT *
      FROM unnest(
               $1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
               $6::double precision[], $7::text[], $8::integer[],
               $9::integer[], $10::integer[], $11::text[],
               $12::double precision[], $13::text[], $14::integer[],
               $15::double precision[], $16::text[], $17::text[],
               $18::integer[], $19::text[]
           ) WITH ORDINALITY AS g(
               app, instance_id, status, step, input, due_at, state, version,
               attempts, transitions, error, updated_at, owner, expected,
               lease_until, history, result, definition_version, fingerprint,
               n
           )
), updated AS (
    UPDATE sagakit_workflow AS w
       SET status = g.status, step = g.step, input = g.input::jsonb,
           due_at = g.due_at, state = g.state::jsonb, version = g.version,
           attempts = g.attempts, transitions = g.transitions,
           error = g.error, updated_at = g.updated_at, owner = g.owner,
           lease_until = g.lease_until, result = g.result::jsonb,
           definition_version = g.definition_version,
           fingerprint = g.fingerprint
      FROM given AS g
     WHERE w.app = g.app AND w.instance_id = g.instance_id
       AND w.version = g.expected
    RETURNING w.app, w.instance_id
), appended AS (
    INSERT INTO sagakit_workflow_history (
        app, instance_id, step, attempt, outcome, detail, error, recorded_at
    )
    SELECT g.app, g.instance_id, h.step, h.attempt, h.outcome, h.detail,
           h.error, h.recorded_at
      FROM given AS g
      JOIN updated AS u ON u.app = g.app AND u.instance_id = g.instance_id,
           ROWS FROM (jsonb_to_recordset(g.history::jsonb) AS (
               step text, attempt integer, outcome text, detail jsonb,
               error text, recorded_at double precision
           )) WITH ORDINALITY AS h(
               step, attempt, outcome, detail, error, recorded_at, n
           )
     ORDER BY g.n, h.n
)
SELECT EXISTS (SELECT 1 FROM updated AS u
                WHERE u.app = g.app AND u.instance_id = g.instance_id) AS saved,
       EXISTS (SELECT 1 FROM sagakit_workflow AS w
                WHERE w.app = g.app AND w.instance_id = g.instance_id) AS found
  FROM given AS g
 ORDER BY g.n;

-- workflow_claim --
-- Take instances of $1 and definition version $7 whose step is in $5 and
-- whose fingerprint is $8 or unknown (NULL $8: any) that are claimable at $3
-- (now): pending ones due by then, running ones whose lease expired.
-- Earliest wake-up first, at most $6; rows another claimer has locked are
-- skipped. The search is one range of sagakit_workflow_wake (its expression
-- and WHERE repeated exactly); step and fingerprint only filter what it
-- finds. The version bump makes a save by a previous owner fail.
WITH candidates AS (
    SELECT instance_id FROM sagakit_workflow
     WHERE app = $1 AND definition_version = $7::integer
       AND status IN ('pending', 'running')
       AND CASE status WHEN 'pending' THEN due_at ELSE lease_until END <= $3::double precision
       AND (status = 'pending' OR lease_until < $3::double precision)
       AND step = ANY($5::text[])
       AND ($8::text IS NULL OR fingerprint IS NULL OR fingerprint = $8)
     ORDER BY CASE status WHEN 'pending' THEN due_at ELSE lease_until END, instance_id
     LIMIT $6
       FOR UPDATE SKIP LOCKED
)
UPDATE sagakit_workflow AS w
   SET status = 'running', owner = $2,
       lease_until = $3::double precision + $4::double precision,
       version = w.version + 1, attempts = w.attempts + 1,
       updated_at = $3::double precision
  FROM candidates AS c
 WHERE w.app = $1 AND w.instance_id = c.instance_id
RETURNING w.app, w.instance_id, w.status, w.step, w.input, w.due_at, w.state,
          w.version, w.attempts, w.transitions, w.error, w.created_at,
          w.updated_at, w.owner, w.lease_until, w.result, w.start_digest,
          w.definition_version, w.fingerprint;

-- workflow_claim_any_version --
-- workflow_claim of every definition version ($7 is NULL): the index cannot
-- order across versions, so this reads all of $1's unfinished ones.
WITH candidates AS (
    SELECT instance_id FROM sagakit_workflow
     WHERE app = $1 AND $7::integer IS NULL
       AND status IN ('pending', 'running')
       AND CASE status WHEN 'pending' THEN due_at ELSE lease_until END <= $3::double precision
       AND (status = 'pending' OR lease_until < $3::double precision)
       AND step = ANY($5::text[])
       AND ($8::text IS NULL OR fingerprint IS NULL OR fingerprint = $8)
     ORDER BY CASE status WHEN 'pending' THEN due_at ELSE lease_until END, instance_id
     LIMIT $6
       FOR UPDATE SKIP LOCKED
)
UPDATE sagakit_workflow AS w
   SET status = 'running', owner = $2,
       lease_until = $3::double precision + $4::double precision,
       version = w.version + 1, attempts = w.attempts + 1,
       updated_at = $3::double precision
  FROM candidates AS c
 WHERE w.app = $1 AND w.instance_id = c.instance_id
RETURNING w.app, w.instance_id, w.status, w.step, w.input, w.due_at, w.state,
          w.version, w.attempts, w.transitions, w.error, w.created_at,
          w.updated_at, w.owner, w.lease_until, w.result, w.start_digest,
          w.definition_version, w.fingerprint;

-- workflow_renew --
UPDATE sagakit_workflow
   SET lease_until = $4::double precision + $5::double precision
 WHERE app = $1 AND instance_id = $3 AND owner = $2 AND status = 'running'
RETURNING instance_id;

-- workflow_next_due --
-- When the first instance workflow_claim (same $1 app, $2 steps, $3 version,
-- $4 fingerprint) would take becomes claimable; no row if none ever does.
-- The first entry of one range of sagakit_workflow_wake.
SELECT CASE status WHEN 'pending' THEN due_at ELSE lease_until END AS wake
  FROM sagakit_workflow
 WHERE app = $1 AND definition_version = $3::integer
   AND status IN ('pending', 'running')
   AND CASE status WHEN 'pending' THEN due_at ELSE lease_until END IS NOT NULL
   AND step = ANY($2::text[])
   AND ($4::text IS NULL OR fingerprint IS NULL OR fingerprint = $4)
 ORDER BY wake
 LIMIT 1;

-- workflow_next_due_any_version --
-- workflow_next_due of every definition version ($3 is NULL)
SELECT min(CASE status WHEN 'pending' THEN due_at ELSE lease_until END)
  FROM sagakit_workflow
 WHERE app = $1 AND $3::integer IS NULL
   AND status IN ('pending', 'running')
   AND step = ANY($2::text[])
   AND ($4::text IS NULL OR fingerprint IS NULL OR fingerprint = $4);

-- workflow_unfinished --
SELECT count(*) FROM sagakit_workflow
 WHERE app = $1 AND status IN ('pending', 'running');

-- workflow_live --
-- Pending or running instances by app, definition and pending step
SELECT app, definition_version, fingerprint, step, count(*)
  FROM sagakit_workflow
 WHERE status IN ('pending', 'running')
 GROUP BY app, definition_version, fingerprint, step;

-- workflow_live_before_versions --
-- workflow_live on a schema from before 0009: every instance is version 1
SELECT app, 1, NULL::text, step, count(*)
  FROM sagakit_workflow
 WHERE status IN ('pending', 'running')
 GROUP BY app, step;

-- workflow_history --
SELECT app, instance_id, step, attempt, outcome, detail, error, recorded_at
  FROM sagakit_workflow_history
 WHERE app = $1 AND instance_id = $2
 ORDER BY id;

-- workflow_list --
-- Newest first. Optional filters are passed as NULL to disable them: $1
-- status, $2 app, $4 created before; $3 is the limit
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR app = $2)
   AND ($4::double precision IS NULL OR created_at < $4)
 ORDER BY created_at DESC, instance_id DESC, app DESC
 LIMIT $3;

-- workflow_list_of_app_in_status --
-- workflow_list of app $2 in status $1 (both given), created before $4
-- (Infinity: any): one range of sagakit_workflow_status, newest first
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE app = $2 AND status = $1 AND created_at < $4::double precision
 ORDER BY created_at DESC, instance_id DESC, app DESC
 LIMIT $3;

-- workflow_count_by_status --
-- Instances per status, of app $1 (NULL: of every app)
SELECT status, count(*) AS n FROM sagakit_workflow
 WHERE ($1::text IS NULL OR app = $1::text)
 GROUP BY status;

-- workflow_ids_with_prefix --
-- (app, instance_id) of the instances whose id starts with $1, of app $2
-- (NULL: of every app), in id order
SELECT app, instance_id FROM sagakit_workflow
 WHERE left(instance_id, length($1)) = $1 AND ($2::text IS NULL OR app = $2)
 ORDER BY instance_id, app
 LIMIT $3;

-- event_subscribe --
-- Route event type $1 to the queue $3 of service $2 (replacing its queue)
INSERT INTO sagakit_event_route (event_type, service, queue, subscribed_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (event_type, service)
DO UPDATE SET queue = excluded.queue, subscribed_at = excluded.subscribed_at;

-- event_subscribers --
SELECT DISTINCT queue FROM sagakit_event_route WHERE event_type = $1 ORDER BY queue;

-- event_log_insert --
INSERT INTO sagakit_event_log (
    correlation_id, choreography, service, event_type, message_id, outcome,
    detail, recorded_at
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- event_timeline --
SELECT correlation_id, choreography, service, event_type, message_id, outcome,
       detail, recorded_at
  FROM sagakit_event_log
 WHERE correlation_id = $1
 ORDER BY id;

-- choreography_lock --
-- Create the tracker's row of $1 (choreography $2, definition version $5 and
-- fingerprint $6) at $3, due by $4, or lock the existing row (kept as it is)
-- until the end of the transaction, so that concurrent recorders of one
-- correlation id take turns.
INSERT INTO sagakit_choreography (
    correlation_id, name, status, started_at, updated_at, deadline,
    definition_version, fingerprint
) VALUES ($1, $2, 'in_progress', $3, $3, $4, $5, $6)
ON CONFLICT (correlation_id) DO UPDATE SET name = sagakit_choreography.name;

-- choreography_seen --
-- Event types of choreography $2 that correlation $1 published or consumed
SELECT DISTINCT event_type FROM sagakit_event_log
 WHERE correlation_id = $1 AND choreography = $2
   AND outcome IN ('published', 'consumed');

-- choreography_update --
UPDATE sagakit_choreography
   SET status = $2, updated_at = $3, deadline = $4
 WHERE correlation_id = $1;

-- choreography_get --
SELECT correlation_id, name, status, started_at, updated_at, deadline,
       definition_version, fingerprint
  FROM sagakit_choreography
 WHERE correlation_id = $1;

-- choreography_list --
-- $1 NULL means every status
SELECT correlation_id, name, status, started_at, updated_at, deadline,
       definition_version, fingerprint
  FROM sagakit_choreography
 WHERE $1::text IS NULL OR status = $1
 ORDER BY updated_at DESC, correlation_id
 LIMIT $2;

-- choreography_mark_stalled --
-- In-progress or compensating choreographies overdue at $1 become stalled;
-- rows another checker has locked are skipped, so each is flagged once.
UPDATE sagakit_choreography AS c
   SET status = 'stalled'
  FROM (SELECT correlation_id FROM sagakit_choreography
         WHERE status IN ('in_progress', 'compensating') AND deadline < $1
         ORDER BY deadline, correlation_id
         LIMIT $2
           FOR UPDATE SKIP LOCKED) AS due
 WHERE c.correlation_id = due.correlation_id
RETURNING c.correlation_id, c.name, c.status, c.started_at, c.updated_at,
          c.deadline, c.definition_version, c.fingerprint;

-- choreography_live --
-- Choreographies that have not ended, by definition
SELECT name, definition_version, fingerprint, count(*)
  FROM sagakit_choreography
 WHERE status IN ('in_progress', 'compensating', 'stalled')
 GROUP BY name, definition_version, fingerprint;

-- choreography_live_before_versions --
-- choreography_live on a schema from before 0009: every one is version 1
SELECT name, 1, NULL::text, count(*)
  FROM sagakit_choreography
 WHERE status IN ('in_progress', 'compensating', 'stalled')
 GROUP BY name;

-- event_outbox_stage --
-- Stage event $1 of service $2 on the caller's connection, in its
-- transaction; an id staged already keeps the first (no row returned)
INSERT INTO sagakit_event_outbox (
    message_id, service, event_type, correlation_id, body, created_at
) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id;

-- event_outbox_claim --
-- Hold for $2 until $3 (now) + $4 seconds up to $5 events staged by service
-- $1 that nobody holds, whose hold expired or that $2 holds already, in
-- staging order; rows another claimer has locked are skipped, not waited for.
WITH candidates AS (
    SELECT message_id FROM sagakit_event_outbox
     WHERE service = $1
       AND (locked_until IS NULL
            OR locked_until < $3::double precision
            OR locked_by = $2::text)
     ORDER BY seq
     LIMIT $5
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagakit_event_outbox AS o
       SET locked_by = $2::text,
           locked_until = $3::double precision + $4::double precision
      FROM candidates AS c
     WHERE o.message_id = c.message_id
    RETURNING o.seq, o.message_id, o.service, o.event_type, o.correlation_id,
              o.body, o.created_at
)
SELECT message_id, service, event_type, correlation_id, body, created_at
  FROM claimed
 ORDER BY seq;

-- event_outbox_delete --
-- Forget the staged events in $1: they were published
DELETE FROM sagakit_event_outbox WHERE message_id = ANY($1::text[]);

-- lock_serialise --
-- Inside a save that changes semantic locks: one such transaction at a time,
-- so the busy checks and the wait-for cycle check see every other change
SELECT pg_advisory_xact_lock(7318267413062125618);

-- lock_release --
-- Saga $1 lets go of the keys $2 it holds
DELETE FROM sagakit_lock WHERE saga_id = $1 AND lock_key = ANY($2::text[]);

-- lock_unwait --
-- Saga $1 leaves the queues of the (key, step) pairs $2, $3
DELETE FROM sagakit_lock_waiter AS w
 USING unnest($2::text[], $3::text[]) AS u(lock_key, step)
 WHERE w.saga_id = $1 AND w.lock_key = u.lock_key AND w.step = u.step;

-- lock_busy --
-- Of the keys $2 that saga $1 asks for with steps $3, those it cannot take,
-- each with the saga in the way: another holder, else the first other saga
-- queued before this step's own place in the key's queue (before any if it
-- has none)
SELECT lock_key, blocker FROM (
    SELECT u.lock_key, COALESCE(
        (SELECT h.saga_id FROM sagakit_lock AS h
          WHERE h.lock_key = u.lock_key AND h.saga_id <> $1),
        (SELECT e.saga_id FROM sagakit_lock_waiter AS e
          WHERE e.lock_key = u.lock_key AND e.saga_id <> $1
            AND e.position < COALESCE(
                (SELECT m.position FROM sagakit_lock_waiter AS m
                  WHERE m.lock_key = u.lock_key AND m.saga_id = $1
                    AND m.step = u.step),
                9223372036854775807)
          ORDER BY e.position
          LIMIT 1)) AS blocker
      FROM unnest($2::text[], $3::text[]) AS u(lock_key, step)
) AS asked
 WHERE blocker IS NOT NULL;

-- lock_acquire --
-- Saga $1 takes the keys $2 for steps $3 (found free: a key it holds already
-- stays as it is) at $4 (NULL: now); lock_unwait leaves their queues
INSERT INTO sagakit_lock (lock_key, saga_id, step, acquired_at)
SELECT u.lock_key, $1, u.step,
       COALESCE($4::double precision, extract(epoch FROM clock_timestamp()))
  FROM unnest($2::text[], $3::text[]) AS u(lock_key, step)
ON CONFLICT (lock_key) DO NOTHING;

-- lock_wait --
-- Saga $1 queues its steps $3 for the keys $2 since $4, at the back of each
-- key's queue (a place it has already is kept)
INSERT INTO sagakit_lock_waiter (lock_key, saga_id, step, since)
SELECT u.lock_key, $1, u.step, u.since
  FROM unnest($2::text[], $3::text[], $4::double precision[])
       AS u(lock_key, step, since)
ON CONFLICT (lock_key, saga_id, step) DO NOTHING;

-- lock_reach --
-- Every saga that saga $1 waits for, directly or through others, with
-- reached = true for those: the holder of each key a saga queues for and
-- the saga just before it in that queue (the one before that is reached
-- through it). $1 itself is among them with reached = true if it waits for
-- itself: a deadlock.
WITH RECURSIVE reach (saga_id, reached) AS (
    SELECT $1::text COLLATE "C", false
    UNION
    SELECT b.blocker, true
      FROM reach AS r
      CROSS JOIN LATERAL (
          SELECT h.saga_id AS blocker
            FROM sagakit_lock_waiter AS w
            JOIN sagakit_lock AS h ON h.lock_key = w.lock_key
           WHERE w.saga_id = r.saga_id AND h.saga_id <> r.saga_id
          UNION ALL
          SELECT (SELECT e.saga_id FROM sagakit_lock_waiter AS e
                   WHERE e.lock_key = w.lock_key AND e.position < w.position
                   ORDER BY e.position DESC
                   LIMIT 1)
            FROM sagakit_lock_waiter AS w
           WHERE w.saga_id = r.saga_id
      ) AS b
     WHERE b.blocker IS NOT NULL AND b.blocker <> r.saga_id
)
SELECT DISTINCT saga_id FROM reach WHERE reached;

-- lock_edges --
-- The waits-for edges (waiter, blocker) out of the sagas $1, as lock_reach
-- follows them (to name the sagas of a deadlock)
SELECT w.saga_id AS waiter, h.saga_id AS blocker
  FROM sagakit_lock_waiter AS w
  JOIN sagakit_lock AS h ON h.lock_key = w.lock_key
 WHERE w.saga_id = ANY($1::text[]) AND h.saga_id <> w.saga_id
UNION
SELECT w.saga_id, (SELECT e.saga_id FROM sagakit_lock_waiter AS e
                    WHERE e.lock_key = w.lock_key AND e.position < w.position
                    ORDER BY e.position DESC
                    LIMIT 1)
  FROM sagakit_lock_waiter AS w
 WHERE w.saga_id = ANY($1::text[]);

-- lock_holders --
-- The holders of the keys $1
SELECT lock_key, saga_id, step, acquired_at
  FROM sagakit_lock
 WHERE lock_key = ANY($1::text[]);

-- lock_list --
-- Holders of keys starting with $1 (NULL: any), of saga $2 (NULL: any), by
-- key; $3 the limit
SELECT lock_key, saga_id, step, acquired_at
  FROM sagakit_lock
 WHERE ($1::text IS NULL OR starts_with(lock_key, $1::text))
   AND ($2::text IS NULL OR saga_id = $2::text)
 ORDER BY lock_key
 LIMIT $3;

-- lock_waiters --
-- Queue places for keys starting with $1 (NULL: any), of saga $2 (NULL:
-- any), by key and queue order; $3 the limit
SELECT lock_key, saga_id, step, since, position
  FROM sagakit_lock_waiter
 WHERE ($1::text IS NULL OR starts_with(lock_key, $1::text))
   AND ($2::text IS NULL OR saga_id = $2::text)
 ORDER BY lock_key, position
 LIMIT $3;

-- locks_ready --
-- Those of the sagas $1 that queue with a step none of whose places is
-- blocked: no other saga holds the key, none queues for it before
SELECT DISTINCT w.saga_id
  FROM sagakit_lock_waiter AS w
 WHERE w.saga_id = ANY($1::text[])
   AND NOT EXISTS (
       SELECT 1 FROM sagakit_lock_waiter AS x
        WHERE x.saga_id = w.saga_id AND x.step = w.step
          AND (EXISTS (SELECT 1 FROM sagakit_lock AS h
                        WHERE h.lock_key = x.lock_key
                          AND h.saga_id <> x.saga_id)
               OR EXISTS (SELECT 1 FROM sagakit_lock_waiter AS e
                           WHERE e.lock_key = x.lock_key
                             AND e.saga_id <> x.saga_id
                             AND e.position < x.position)))
 ORDER BY w.saga_id;

-- create_database --
-- The statement that makes database $1, a throw-away one for a test
-- (sagakit.adapters.store.scratch): a name cannot be a bind parameter, so
-- the server quotes it and the caller runs what this returns
SELECT format('CREATE DATABASE %I', $1::text);

-- drop_database --
-- The statement that drops database $1 and ends its connections
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text);

-- notification_add --
-- Notifications (0016) as parallel arrays: $1 event ids, $2 kinds, $3 saga
-- ids, $4 saga names, $5 versions, $6 details (JSON text), $7 occurred at;
-- pending and due now, unless the event id is known. Returns those written.
INSERT INTO sagakit_notification (
    event_id, kind, saga_id, saga_name, version, detail, occurred_at, status,
    attempts, next_at)
SELECT e, k, s, n, v, d::jsonb, o, 'pending', 0,
       extract(epoch FROM clock_timestamp())::double precision
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[],
              $6::text[], $7::double precision[]) AS t(e, k, s, n, v, d, o)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- notification_claim --
-- Hold for $1 until now + $2 seconds up to $3 pending notifications that are
-- due and that nobody holds (or whose hold expired), of the sagas named in
-- $4 (NULL: of any or none), the earliest due first; rows another claimer
-- has locked are skipped, not waited for.
WITH candidates AS (
    SELECT event_id FROM sagakit_notification
     WHERE status = 'pending'
       AND next_at <= extract(epoch FROM clock_timestamp())::double precision
       AND (locked_until IS NULL
            OR locked_until < extract(epoch FROM clock_timestamp())::double precision)
       AND ($4::text[] IS NULL OR saga_name = ANY($4::text[]))
     ORDER BY next_at, event_id
     LIMIT $3
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagakit_notification AS n
       SET locked_by = $1,
           locked_until = extract(epoch FROM clock_timestamp())::double precision
               + $2::double precision
      FROM candidates AS c
     WHERE n.event_id = c.event_id
    RETURNING n.event_id, n.kind, n.saga_id, n.saga_name, n.version, n.detail,
              n.occurred_at, n.status, n.attempts, n.delivered_to,
              n.last_error, n.finished_at, n.next_at
)
SELECT event_id, kind, saga_id, saga_name, version, detail, occurred_at,
       status, attempts, delivered_to, last_error, finished_at
  FROM claimed
 ORDER BY next_at, event_id;

-- notification_delivered --
-- Notification $1 reached every hook ($2, a JSON array of their names)
UPDATE sagakit_notification
   SET status = 'delivered', attempts = attempts + 1,
       delivered_to = $2::text::jsonb, last_error = NULL,
       finished_at = extract(epoch FROM clock_timestamp())::double precision,
       locked_by = NULL, locked_until = NULL
 WHERE event_id = $1;

-- notification_failed --
-- An attempt at notification $1 failed with $3 ($2: the hooks that have it,
-- a JSON array): due again in $4 seconds, or dropped when $4 is NULL
UPDATE sagakit_notification
   SET status = CASE WHEN $4::double precision IS NULL THEN 'dropped'
                     ELSE 'pending' END,
       attempts = attempts + 1, delivered_to = $2::text::jsonb, last_error = $3,
       next_at = CASE WHEN $4::double precision IS NULL THEN next_at
                      ELSE extract(epoch FROM clock_timestamp())::double precision
                           + $4::double precision END,
       finished_at = CASE WHEN $4::double precision IS NULL
                          THEN extract(epoch FROM clock_timestamp())::double precision
                     END,
       locked_by = NULL, locked_until = NULL
 WHERE event_id = $1;

-- notification_list --
-- The notifications in status $1 (NULL: any), most recent events first; $2
-- the limit
SELECT event_id, kind, saga_id, saga_name, version, detail, occurred_at,
       status, attempts, delivered_to, last_error, finished_at
  FROM sagakit_notification
 WHERE ($1::text IS NULL OR status = $1::text)
 ORDER BY occurred_at DESC, event_id DESC
 LIMIT $2;

-- notification_prune --
-- Forget the notifications of events that occurred before $1
DELETE FROM sagakit_notification WHERE occurred_at < $1 RETURNING event_id;

-- unattended_sagas --
-- Unfinished sagas not updated since $1, named in $2 (NULL: any), that
-- nobody holds, whose lease expired, that wait for a definition or that are
-- paused, oldest first (from sagakit_saga_unfinished), after saga $4
-- (NULL: from the first); $3 the limit. The last two columns: the owner,
-- and whether its lease is live.
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint,
       waiting, owner,
       coalesce(lease_until >= extract(epoch FROM clock_timestamp())
                                   ::double precision, false) AS live
  FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND updated_at < $1
   AND ($2::text[] IS NULL OR saga_name = ANY($2::text[]))
   AND created_at >= CASE WHEN $4::text IS NULL THEN '-Infinity'::double precision
       ELSE coalesce((SELECT created_at FROM sagakit_saga WHERE saga_id = $4::text),
                     'Infinity') END
   AND ($4::text IS NULL
        OR created_at > (SELECT created_at FROM sagakit_saga
                          WHERE saga_id = $4::text)
        OR saga_id > $4::text)
   AND (owner IS NULL OR lease_until IS NULL
        OR lease_until < extract(epoch FROM clock_timestamp())::double precision
        OR waiting IS NOT NULL OR state->>'paused' = 'true')
 ORDER BY created_at, saga_id
 LIMIT $3;

-- find_sagas_by_key --
-- Sagas (of any name) whose idempotency key is $1, newest first, from
-- sagakit_saga_key (0016); $2 the limit
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE idempotency_key = $1
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $2;

-- search_sagas_context --
-- Among the $3 newest sagas (read in order from sagakit_saga_created), those
-- whose context as JSON text holds $1 (lower case; matched lower-cased),
-- newest first; $2 the limit
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM (SELECT * FROM sagakit_saga
         ORDER BY created_at DESC, saga_id DESC
         LIMIT $3) AS newest
 WHERE strpos(lower(newest.context::text), $1) > 0
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $2;
