-- Named queries of the SQLite store. Each block starts with "-- name --".

-- create_migrations_table --
-- The bookkeeping table; created before any migration runs
CREATE TABLE IF NOT EXISTS sagakit_schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  REAL NOT NULL
);

-- migrations_table_exists --
SELECT count(*) FROM sqlite_master
 WHERE type = 'table' AND name = 'sagakit_schema_migrations';

-- applied_migrations --
SELECT version FROM sagakit_schema_migrations ORDER BY version;

-- record_migration --
INSERT INTO sagakit_schema_migrations (version, name, applied_at) VALUES (?, ?, ?);

-- insert_saga --
-- owner and lease_until are NULL unless the creating worker keeps the saga
INSERT INTO sagakit_saga (
    saga_id, saga_name, status, version, idempotency_key, context, state,
    failed_step, created_at, updated_at, owner, lease_until, deadline,
    definition_version, fingerprint
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- update_saga --
-- Optimistic: only succeeds when the stored version is the expected one.
-- ?9 owner and ?10 lease_until refresh the lease; NULL keeps it as it is.
-- ?12 and ?13: the definition version and fingerprint (a migration changes them)
-- ?14: the saga's created_at, which insert_history files the lines under
UPDATE sagakit_saga
   SET status = ?1, version = ?2, context = ?3, state = ?4, failed_step = ?5,
       updated_at = ?6, deadline = ?11, waiting = NULL,
       definition_version = ?12, fingerprint = ?13,
       owner = coalesce(?9, owner), lease_until = coalesce(?10, lease_until)
 WHERE saga_id = ?7 AND version = ?8 AND created_at = ?14;

-- update_saga_in_place --
-- update_saga for a save that leaves status and waiting as they are (?1 and
-- NULL): setting neither, it leaves the indexes on status untouched and the
-- commit writes fewer pages (the deadline, set, touches only its own partial
-- index, and only when the saga is in it: a remote step's next deadline).
-- No row when one of them (or the version) differs: then update_saga runs.
UPDATE sagakit_saga
   SET version = ?2, context = ?3, state = ?4, failed_step = ?5,
       updated_at = ?6, deadline = ?11, definition_version = ?12,
       fingerprint = ?13,
       owner = coalesce(?9, owner), lease_until = coalesce(?10, lease_until)
 WHERE saga_id = ?7 AND version = ?8 AND status = ?1 AND waiting IS NULL
   AND created_at = ?14;

-- insert_history --
-- After its saga's last line (see migration 0017), under its saga's
-- created_at ?10: only a line of the saga ?11 that the transaction has
-- just inserted, or updated where its created_at is ?10 (update_saga,
-- update_saga_in_place), so the saga's row is not read again; a line of
-- another saga gets NULL and is refused (as on PostgreSQL). One row of
-- VALUES: an INSERT ... SELECT would open a statement journal, for 40 %
-- more work.
INSERT INTO sagakit_step_history (
    saga_created_at, saga_id, seq, step, kind, attempt, outcome, result,
    error, started_at, finished_at
) VALUES (
    CASE WHEN ?1 = ?11 THEN ?10 END,
    ?1,
    coalesce((SELECT max(seq) FROM sagakit_step_history
               WHERE saga_created_at = ?10 AND saga_id = ?1), 0) + 1,
    ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9);

-- get_saga --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga WHERE saga_id = ?;

-- find_saga_by_key --
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga WHERE saga_name = ? AND idempotency_key = ?;

-- saga_exists --
-- Its status: a row when the saga exists
SELECT status FROM sagakit_saga WHERE saga_id = ?;

-- saga_version --
-- Why a save updated no row: no saga, another version, or another created_at
SELECT version, created_at FROM sagakit_saga WHERE saga_id = ?;

-- get_history --
SELECT saga_id, step, kind, attempt, outcome, result, error, started_at, finished_at
  FROM sagakit_step_history
 WHERE saga_created_at = (SELECT created_at FROM sagakit_saga WHERE saga_id = ?1)
   AND saga_id = ?1
 ORDER BY seq;

-- list_sagas --
-- Newest first: ?1 the limit, ?2 created before (NULL: any time); with ?3
-- (a saga id), created at ?2 and before that id too: the page after the
-- saga created at ?2 with id ?3 (keyset paging). Each
-- filter has a statement of its own (list_sagas_by_*), so that every one
-- reads its index in order and stops at the limit (a "?n IS NULL OR ..."
-- filter would keep SQLite from using the index).
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE created_at <= coalesce(?2, 9e999)
   AND (created_at < coalesce(?2, 9e999) OR saga_id < ?3)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?1;

-- list_sagas_by_status --
-- list_sagas of status ?1; ?2 the limit, ?3 created before, ?4
-- the id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE status = ?1 AND created_at <= coalesce(?3, 9e999)
   AND (created_at < coalesce(?3, 9e999) OR saga_id < ?4)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?2;

-- list_sagas_by_name --
-- list_sagas of saga ?1; ?2 the limit, ?3 created before, ?4 the
-- id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE saga_name = ?1 AND created_at <= coalesce(?3, 9e999)
   AND (created_at < coalesce(?3, 9e999) OR saga_id < ?4)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?2;

-- list_sagas_by_name_status --
-- list_sagas of saga ?1 in status ?2; ?3 the limit, ?4 created
-- before, ?5 the id before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE saga_name = ?1 AND status = ?2 AND created_at <= coalesce(?4, 9e999)
   AND (created_at < coalesce(?4, 9e999) OR saga_id < ?5)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?3;

-- list_waiting_sagas --
-- list_sagas of the unfinished sagas marked waiting (few: the partial
-- index holds only them), of saga ?1 and status ?2 (NULL: any); ?3 the
-- limit, ?4 created before, ?5 the id before. "+status" keeps the planner off
-- sagakit_saga_status, which holds every unfinished saga.
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE waiting IS NOT NULL AND +status IN ('running', 'compensating')
   AND created_at <= coalesce(?4, 9e999)
   AND (created_at < coalesce(?4, 9e999) OR saga_id < ?5)
   AND (?1 IS NULL OR saga_name = ?1) AND (?2 IS NULL OR status = ?2)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?3;

-- count_by_status --
-- Sagas per status, as the triggers of migration 0015 keep them (one row
-- per saga name and status, however many sagas are stored or running)
SELECT status, sum(n) FROM sagakit_saga_count
 GROUP BY status
HAVING sum(n) > 0;

-- count_saga_by_status --
-- count_by_status of saga ?1
SELECT status, n FROM sagakit_saga_count
 WHERE saga_name = ?1 AND n > 0;

-- count_by_status_scan --
-- count_by_status on a schema from before 0015 (no counts kept of every
-- status): reads every saga
SELECT status, count(*) FROM sagakit_saga
 WHERE ?1 IS NULL OR saga_name = ?1
 GROUP BY status;

-- ids_with_prefix --
-- Ids from ?1 (a prefix) up to ?2 (excluded: the least string above every
-- id that starts with ?1): a range of the primary key; ?3 the limit
SELECT saga_id FROM sagakit_saga
 WHERE saga_id >= ?1 AND saga_id < ?2 AND substr(saga_id, 1, length(?1)) = ?1
 ORDER BY saga_id
 LIMIT ?3;

-- ids_from_prefix --
-- ids_with_prefix for a prefix that has no upper bound ('' or only
-- U+10FFFF): every id from ?1 on; ?2 the limit
SELECT saga_id FROM sagakit_saga
 WHERE saga_id >= ?1 AND substr(saga_id, 1, length(?1)) = ?1
 ORDER BY saga_id
 LIMIT ?2;

-- unfinished_sagas --
-- Ids of the unfinished sagas named in ?1 (a JSON array; NULL: of every
-- saga) in claim order (created_at, saga_id), after saga ?2 (NULL: from the
-- first; an id not stored: none): a page of at most ?3, read in order from sagakit_saga_unfinished
-- (without statistics the planner would rather read sagakit_saga_status and
-- sort every unfinished saga; INDEXED BY makes this fail if it cannot)
SELECT saga_id FROM sagakit_saga INDEXED BY sagakit_saga_unfinished
 WHERE status IN ('running', 'compensating')
   AND created_at >= CASE WHEN ?2 IS NULL THEN -9e999 ELSE coalesce(
       (SELECT created_at FROM sagakit_saga WHERE saga_id = ?2), 9e999) END
   AND (?2 IS NULL
        OR created_at > (SELECT created_at FROM sagakit_saga WHERE saga_id = ?2)
        OR saga_id > ?2)
   AND (?1 IS NULL OR saga_name IN (SELECT value FROM json_each(?1)))
 ORDER BY created_at, saga_id
 LIMIT ?3;

-- claim_candidates --
-- The sagas a claim takes, with who holds them (NULL: nobody): non-terminal
-- sagas of the given names (?2, a JSON array) that are unleased, whose
-- lease expired or whose owner is in ?5 (a JSON array, known dead), oldest
-- first, at most ?4; ?7 is now (?1, ?3: the claimer and its lease, which
-- claim_ids takes). Runs inside BEGIN IMMEDIATE, before claim_ids. An entry
-- of ?2 is a saga name or a definition key (name:version[:fingerprint]).
-- With ?6, only sagas after saga ?6 in that order (the next batch of a
-- recovery). Reads sagakit_saga_unfinished in order, as unfinished_sagas
-- does.
SELECT saga_id, owner FROM sagakit_saga INDEXED BY sagakit_saga_unfinished
 WHERE status IN ('running', 'compensating')
   AND (saga_name IN (SELECT value FROM json_each(?2))
        OR saga_name || ':' || definition_version
           || coalesce(':' || fingerprint, '')
           IN (SELECT value FROM json_each(?2)))
   AND (lease_until IS NULL OR lease_until < ?7
        OR owner IN (SELECT value FROM json_each(?5)))
   AND created_at >= CASE WHEN ?6 IS NULL THEN -9e999 ELSE coalesce(
       (SELECT created_at FROM sagakit_saga WHERE saga_id = ?6), 9e999) END
   AND (?6 IS NULL
        OR created_at > (SELECT created_at FROM sagakit_saga
                          WHERE saga_id = ?6)
        OR saga_id > ?6)
 ORDER BY created_at, saga_id
 LIMIT ?4;

-- claim_ids --
-- Lease the sagas ?2 (a JSON array, from claim_candidates) to ?1 until ?4
-- (now) + ?3. The version bump makes a save by the previous owner fail.
UPDATE sagakit_saga
   SET owner = ?1, lease_until = ?4 + ?3, version = version + 1, waiting = NULL
 WHERE saga_id IN (SELECT value FROM json_each(?2))
RETURNING saga_id, saga_name, status, version, idempotency_key, context, state,
          created_at, updated_at, deadline, definition_version, fingerprint,
          waiting;

-- stranded_sagas --
-- Non-terminal sagas of ?1 (a JSON array) whose definition key is not in ?2
-- (a JSON array), not marked waiting yet and not leased (?5 is now), or
-- leased by an owner in ?4 (a JSON array), known dead
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND saga_name IN (SELECT value FROM json_each(?1))
   AND saga_name || ':' || definition_version || coalesce(':' || fingerprint, '')
       NOT IN (SELECT value FROM json_each(?2))
   AND waiting IS NULL
   AND (lease_until IS NULL OR lease_until < ?5
        OR owner IN (SELECT value FROM json_each(?4)))
 ORDER BY created_at, saga_id
 LIMIT ?3;

-- mark_waiting --
UPDATE sagakit_saga SET waiting = ?2
 WHERE saga_id = ?1 AND status IN ('running', 'compensating');

-- live_definitions --
SELECT saga_name, definition_version, fingerprint, count(*) FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
 GROUP BY saga_name, definition_version, fingerprint;

-- lease_holders --
-- The owners of non-terminal sagas named in ?1 (a JSON array), each once
SELECT DISTINCT owner FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND owner IS NOT NULL
   AND saga_name IN (SELECT value FROM json_each(?1));

-- renew_leases --
-- Extend the leases ?1 still holds on the sagas in ?2 (a JSON array); ?4 is now
UPDATE sagakit_saga
   SET lease_until = ?4 + ?3
 WHERE owner = ?1
   AND status IN ('running', 'compensating')
   AND saga_id IN (SELECT value FROM json_each(?2))
RETURNING saga_id;

-- saga_leases --
-- Owner, whether its lease is live (?2 is now) and version of the non-terminal
-- sagas in ?1 (a JSON array)
SELECT saga_id, owner, coalesce(lease_until >= ?2, 0), version FROM sagakit_saga
 WHERE saga_id IN (SELECT value FROM json_each(?1))
   AND status IN ('running', 'compensating');

-- release_leases --
-- Hand the sagas in ?2 (a JSON array) that ?1 still holds back at once
UPDATE sagakit_saga
   SET owner = NULL, lease_until = NULL
 WHERE owner = ?1 AND saga_id IN (SELECT value FROM json_each(?2));

-- due_deadlines --
-- Non-terminal sagas named in ?1 (a JSON array) whose deadline (?3 is now)
-- has passed, earliest deadline first. Without statistics the planner would
-- scan every running saga through sagakit_saga_claim; the partial deadline
-- index reads only the due ones, in order (and this fails if it cannot).
SELECT saga_id FROM sagakit_saga INDEXED BY sagakit_saga_deadline
 WHERE status IN ('running', 'compensating')
   AND deadline <= ?3
   AND saga_name IN (SELECT value FROM json_each(?1))
 ORDER BY deadline, saga_id
 LIMIT ?2;

-- insert_outbox --
-- Writing an id that exists already keeps the first message; a message its
-- writer publishes itself is written held (locked_by, locked_until), else NULLs
INSERT INTO sagakit_outbox (
    message_id, destination, body, saga_id, available_at, created_at,
    locked_by, locked_until
) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO NOTHING;

-- claim_outbox --
-- Hold for ?1 until ?4 (now) + ?2 the messages that are due and that nobody
-- holds (or whose hold expired), oldest first. Runs inside BEGIN IMMEDIATE.
UPDATE sagakit_outbox
   SET locked_by = ?1, locked_until = ?4 + ?2
 WHERE message_id IN (
       SELECT message_id FROM sagakit_outbox
        WHERE available_at <= ?4
          AND (locked_until IS NULL OR locked_until < ?4)
        ORDER BY available_at, created_at, message_id
        LIMIT ?3)
RETURNING message_id, destination, body, saga_id, available_at, created_at;

-- release_outbox --
-- End the holds of ?1 (of everyone if NULL): the messages are free to claim
UPDATE sagakit_outbox SET locked_by = NULL, locked_until = NULL
 WHERE locked_until IS NOT NULL AND (?1 IS NULL OR locked_by = ?1);

-- delete_outbox --
-- Forget the messages in ?1 (a JSON array): they were published
DELETE FROM sagakit_outbox WHERE message_id IN (SELECT value FROM json_each(?1));

-- insert_inbox --
-- Remember that a consumer took a message; a second time changes nothing
INSERT INTO sagakit_inbox (consumer, message_id, reply, received_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (consumer, message_id) DO NOTHING;

-- inbox_reply --
SELECT reply FROM sagakit_inbox WHERE consumer = ? AND message_id = ?;

-- workflow_insert --
-- A workflow instance; an existing (app, instance_id) is kept as it is
INSERT INTO sagakit_workflow (
    app, instance_id, status, step, input, due_at, state, version, attempts,
    transitions, error, created_at, updated_at, owner, lease_until, result,
    start_digest, definition_version, fingerprint
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (app, instance_id) DO NOTHING;

-- workflow_get --
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE app = ?1 AND instance_id = ?2;

-- workflow_update --
-- Optimistic: only succeeds when the stored version is ?14. The start
-- digest is written once, by workflow_insert.
UPDATE sagakit_workflow
   SET status = ?3, step = ?4, input = ?5, due_at = ?6, state = ?7,
       version = ?8, attempts = ?9, transitions = ?10, error = ?11,
       updated_at = ?12, owner = ?13, lease_until = ?15, result = ?16,
       definition_version = ?17, fingerprint = ?18
 WHERE app = ?1 AND instance_id = ?2 AND version = ?14;

-- workflow_insert_history --
INSERT INTO sagakit_workflow_history (
    app, instance_id, step, attempt, outcome, detail, error, recorded_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- workflow_claim --
-- Take instances of ?1 and definition version ?7 whose step is in ?5 (a JSON
-- array) and whose fingerprint is ?8 or unknown (NULL ?8: any) that are
-- claimable at ?3 (now): pending ones due by then, running ones whose lease
-- expired. Earliest wake-up first, at most ?6. The search is one range of
-- sagakit_workflow_wake (its expression and WHERE repeated exactly); step and
-- fingerprint only filter what it finds. Runs inside BEGIN IMMEDIATE. The
-- version bump makes a save by a previous owner fail.
UPDATE sagakit_workflow
   SET status = 'running', owner = ?2, lease_until = ?3 + ?4,
       version = version + 1, attempts = attempts + 1, updated_at = ?3
 WHERE app = ?1 AND instance_id IN (
       SELECT instance_id FROM sagakit_workflow
        WHERE app = ?1 AND definition_version = ?7
          AND status IN ('pending', 'running')
          AND CASE status WHEN 'pending' THEN due_at ELSE lease_until END <= ?3
          AND (status = 'pending' OR lease_until < ?3)
          AND step IN (SELECT value FROM json_each(?5))
          AND (?8 IS NULL OR fingerprint IS NULL OR fingerprint = ?8)
        ORDER BY CASE status WHEN 'pending' THEN due_at ELSE lease_until END, instance_id
        LIMIT ?6)
RETURNING app, instance_id, status, step, input, due_at, state, version,
          attempts, transitions, error, created_at, updated_at, owner,
          lease_until, result, start_digest, definition_version, fingerprint;

-- workflow_claim_any_version --
-- workflow_claim of every definition version (?7 is not used): the index
-- cannot order across versions, so this reads all of ?1's unfinished ones.
UPDATE sagakit_workflow
   SET status = 'running', owner = ?2, lease_until = ?3 + ?4,
       version = version + 1, attempts = attempts + 1, updated_at = ?3
 WHERE app = ?1 AND instance_id IN (
       SELECT instance_id FROM sagakit_workflow
        WHERE app = ?1
          AND status IN ('pending', 'running')
          AND CASE status WHEN 'pending' THEN due_at ELSE lease_until END <= ?3
          AND (status = 'pending' OR lease_until < ?3)
          AND step IN (SELECT value FROM json_each(?5))
          AND (?8 IS NULL OR fingerprint IS NULL OR fingerprint = ?8)
        ORDER BY CASE status WHEN 'pending' THEN due_at ELSE lease_until END, instance_id
        LIMIT ?6)
RETURNING app, instance_id, status, step, input, due_at, state, version,
          attempts, transitions, error, created_at, updated_at, owner,
          lease_until, result, start_digest, definition_version, fingerprint;

-- workflow_renew --
UPDATE sagakit_workflow
   SET lease_until = ?4 + ?5
 WHERE app = ?1 AND instance_id = ?3 AND owner = ?2 AND status = 'running'
RETURNING instance_id;

-- workflow_next_due --
-- When the first instance workflow_claim (same ?1 app, ?2 steps, ?3 version,
-- ?4 fingerprint) would take becomes claimable; no row if none ever does.
-- The first entry of one range of sagakit_workflow_wake (> -1e308 skips
-- the NULLs, instances waiting for an event, in a form SQLite seeks with).
SELECT CASE status WHEN 'pending' THEN due_at ELSE lease_until END AS wake
  FROM sagakit_workflow
 WHERE app = ?1 AND definition_version = ?3
   AND status IN ('pending', 'running')
   AND CASE status WHEN 'pending' THEN due_at ELSE lease_until END > -1e308
   AND step IN (SELECT value FROM json_each(?2))
   AND (?4 IS NULL OR fingerprint IS NULL OR fingerprint = ?4)
 ORDER BY wake
 LIMIT 1;

-- workflow_next_due_any_version --
-- workflow_next_due of every definition version (?3 is not used)
SELECT min(CASE status WHEN 'pending' THEN due_at ELSE lease_until END)
  FROM sagakit_workflow
 WHERE app = ?1
   AND status IN ('pending', 'running')
   AND step IN (SELECT value FROM json_each(?2))
   AND (?4 IS NULL OR fingerprint IS NULL OR fingerprint = ?4);

-- workflow_unfinished --
SELECT count(*) FROM sagakit_workflow
 WHERE app = ?1 AND status IN ('pending', 'running');

-- workflow_live --
-- Pending or running instances by app, definition and pending step
SELECT app, definition_version, fingerprint, step, count(*)
  FROM sagakit_workflow
 WHERE status IN ('pending', 'running')
 GROUP BY app, definition_version, fingerprint, step;

-- workflow_live_before_versions --
-- workflow_live on a schema from before 0009: every instance is version 1
SELECT app, 1, NULL, step, count(*)
  FROM sagakit_workflow
 WHERE status IN ('pending', 'running')
 GROUP BY app, step;

-- workflow_history --
SELECT app, instance_id, step, attempt, outcome, detail, error, recorded_at
  FROM sagakit_workflow_history
 WHERE app = ?1 AND instance_id = ?2
 ORDER BY id;

-- workflow_list --
-- Newest first. Optional filters are passed as NULL to disable them: ?1
-- status, ?2 app, ?4 created before; ?3 is the limit
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR app = ?2)
   AND (?4 IS NULL OR created_at < ?4)
 ORDER BY created_at DESC, instance_id DESC, app DESC
 LIMIT ?3;

-- workflow_list_of_app_in_status --
-- workflow_list of app ?2 in status ?1 (both given), created before ?4
-- (Infinity: any): one range of sagakit_workflow_status, newest first
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE app = ?2 AND status = ?1 AND created_at < ?4
 ORDER BY created_at DESC, instance_id DESC, app DESC
 LIMIT ?3;

-- workflow_count_by_status --
-- Instances per status, of app ?1 (NULL: of every app)
SELECT status, count(*) FROM sagakit_workflow
 WHERE (?1 IS NULL OR app = ?1)
 GROUP BY status;

-- workflow_ids_with_prefix --
-- (app, instance_id) of the instances whose id starts with ?1, of app ?2
-- (NULL: of every app), in id order
SELECT app, instance_id FROM sagakit_workflow
 WHERE substr(instance_id, 1, length(?1)) = ?1 AND (?2 IS NULL OR app = ?2)
 ORDER BY instance_id, app
 LIMIT ?3;

-- event_subscribe --
-- Route event type ?1 to the queue ?3 of service ?2 (replacing its queue)
INSERT INTO sagakit_event_route (event_type, service, queue, subscribed_at)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (event_type, service)
DO UPDATE SET queue = excluded.queue, subscribed_at = excluded.subscribed_at;

-- event_subscribers --
SELECT DISTINCT queue FROM sagakit_event_route WHERE event_type = ? ORDER BY queue;

-- event_log_insert --
INSERT INTO sagakit_event_log (
    correlation_id, choreography, service, event_type, message_id, outcome,
    detail, recorded_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- event_timeline --
SELECT correlation_id, choreography, service, event_type, message_id, outcome,
       detail, recorded_at
  FROM sagakit_event_log
 WHERE correlation_id = ?
 ORDER BY id;

-- choreography_lock --
-- Create the tracker's row of ?1 (choreography ?2, definition version ?5 and
-- fingerprint ?6) at ?3, due by ?4; an existing row is kept. Runs inside
-- BEGIN IMMEDIATE.
INSERT INTO sagakit_choreography (
    correlation_id, name, status, started_at, updated_at, deadline,
    definition_version, fingerprint
) VALUES (?1, ?2, 'in_progress', ?3, ?3, ?4, ?5, ?6)
ON CONFLICT (correlation_id) DO NOTHING;

-- choreography_seen --
-- Event types of choreography ?2 that correlation ?1 published or consumed
SELECT DISTINCT event_type FROM sagakit_event_log
 WHERE correlation_id = ?1 AND choreography = ?2
   AND outcome IN ('published', 'consumed');

-- choreography_update --
UPDATE sagakit_choreography
   SET status = ?2, updated_at = ?3, deadline = ?4
 WHERE correlation_id = ?1;

-- choreography_get --
SELECT correlation_id, name, status, started_at, updated_at, deadline,
       definition_version, fingerprint
  FROM sagakit_choreography
 WHERE correlation_id = ?;

-- choreography_list --
-- ?1 NULL means every status
SELECT correlation_id, name, status, started_at, updated_at, deadline,
       definition_version, fingerprint
  FROM sagakit_choreography
 WHERE ?1 IS NULL OR status = ?1
 ORDER BY updated_at DESC, correlation_id
 LIMIT ?2;

-- choreography_mark_stalled --
-- In-progress or compensating choreographies overdue at ?1 become stalled
UPDATE sagakit_choreography
   SET status = 'stalled'
 WHERE correlation_id IN (
       SELECT correlation_id FROM sagakit_choreography
        WHERE status IN ('in_progress', 'compensating') AND deadline < ?1
        ORDER BY deadline, correlation_id
        LIMIT ?2)
RETURNING correlation_id, name, status, started_at, updated_at, deadline,
          definition_version, fingerprint;

-- choreography_live --
-- Choreographies that have not ended, by definition
SELECT name, definition_version, fingerprint, count(*)
  FROM sagakit_choreography
 WHERE status IN ('in_progress', 'compensating', 'stalled')
 GROUP BY name, definition_version, fingerprint;

-- choreography_live_before_versions --
-- choreography_live on a schema from before 0009: every one is version 1
SELECT name, 1, NULL, count(*)
  FROM sagakit_choreography
 WHERE status IN ('in_progress', 'compensating', 'stalled')
 GROUP BY name;

-- event_outbox_stage --
-- Stage an event on the caller's connection, in its transaction; an id staged
-- already keeps the first (no row changed)
INSERT INTO sagakit_event_outbox (
    message_id, service, event_type, correlation_id, body, created_at
) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO NOTHING;

-- event_outbox_due --
-- Whether service ?1 staged events that ?2 may claim at ?3 (now); a read, so
-- that an idle poll takes no write lock
SELECT EXISTS (
    SELECT 1 FROM sagakit_event_outbox
     WHERE service = ?1
       AND (locked_until IS NULL OR locked_until < ?3 OR locked_by = ?2));

-- event_outbox_claim --
-- Hold for ?2 until ?3 (now) + ?4 up to ?5 events staged by service ?1 that
-- nobody holds, whose hold expired or that ?2 holds already, in staging order
-- (rowid). Runs inside BEGIN IMMEDIATE.
UPDATE sagakit_event_outbox
   SET locked_by = ?2, locked_until = ?3 + ?4
 WHERE message_id IN (
       SELECT message_id FROM sagakit_event_outbox
        WHERE service = ?1
          AND (locked_until IS NULL OR locked_until < ?3 OR locked_by = ?2)
        ORDER BY rowid
        LIMIT ?5)
RETURNING rowid, message_id, service, event_type, correlation_id, body,
          created_at;

-- event_outbox_delete --
-- Forget the staged events in ?1 (a JSON array): they were published
DELETE FROM sagakit_event_outbox WHERE message_id IN (SELECT value FROM json_each(?1));

-- lock_release --
-- Saga ?1 lets go of the keys ?2 (a JSON array) it holds
DELETE FROM sagakit_lock
 WHERE saga_id = ?1 AND lock_key IN (SELECT value FROM json_each(?2));

-- lock_unwait --
-- Saga ?1 leaves the queues of the (key, step) pairs ?2, ?3 (JSON arrays)
DELETE FROM sagakit_lock_waiter
 WHERE saga_id = ?1
   AND (lock_key, step) IN (
       SELECT k.value, s.value
         FROM json_each(?2) AS k JOIN json_each(?3) AS s ON s.key = k.key);

-- lock_busy --
-- Of the keys ?2 that saga ?1 asks for with steps ?3, those it cannot take,
-- each with the saga in the way: another holder, else the first other saga
-- queued before this step's own place in the key's queue (before any if it
-- has none)
SELECT lock_key, blocker FROM (
    SELECT k.value AS lock_key, COALESCE(
        (SELECT h.saga_id FROM sagakit_lock AS h
          WHERE h.lock_key = k.value AND h.saga_id <> ?1),
        (SELECT e.saga_id FROM sagakit_lock_waiter AS e
          WHERE e.lock_key = k.value AND e.saga_id <> ?1
            AND e.position < COALESCE(
                (SELECT m.position FROM sagakit_lock_waiter AS m
                  WHERE m.lock_key = k.value AND m.saga_id = ?1
                    AND m.step = s.value),
                9223372036854775807)
          ORDER BY e.position
          LIMIT 1)) AS blocker
      FROM json_each(?2) AS k JOIN json_each(?3) AS s ON s.key = k.key
)
 WHERE blocker IS NOT NULL;

-- lock_acquire --
-- Saga ?1 takes the keys ?2 for steps ?3 at ?4 (found free: a key it holds
-- already stays as it is); lock_unwait leaves their queues
INSERT INTO sagakit_lock (lock_key, saga_id, step, acquired_at)
SELECT k.value, ?1, s.value, ?4
  FROM json_each(?2) AS k JOIN json_each(?3) AS s ON s.key = k.key
 WHERE true
ON CONFLICT (lock_key) DO NOTHING;

-- lock_wait --
-- Saga ?1 queues its steps ?3 for the keys ?2 since ?4 (JSON arrays), at the
-- back of each key's queue (a place it has already is kept)
INSERT INTO sagakit_lock_waiter (lock_key, saga_id, step, since)
SELECT k.value, ?1, s.value, t.value
  FROM json_each(?2) AS k
  JOIN json_each(?3) AS s ON s.key = k.key
  JOIN json_each(?4) AS t ON t.key = k.key
 WHERE true
 ORDER BY k.key
ON CONFLICT (lock_key, saga_id, step) DO NOTHING;

-- lock_reach --
-- Every saga that saga ?1 waits for, directly or through others, with
-- reached = 1 for those: the holder of each key a saga queues for and the
-- saga just before it in that queue (the one before that is reached through
-- it). ?1 itself is among them if it waits for itself: a deadlock.
WITH RECURSIVE edge (waiter, blocker) AS (
    SELECT w.saga_id, h.saga_id
      FROM sagakit_lock_waiter AS w
      JOIN sagakit_lock AS h ON h.lock_key = w.lock_key
     WHERE h.saga_id <> w.saga_id
    UNION ALL
    SELECT w.saga_id, (SELECT e.saga_id FROM sagakit_lock_waiter AS e
                        WHERE e.lock_key = w.lock_key
                          AND e.position < w.position
                        ORDER BY e.position DESC
                        LIMIT 1)
      FROM sagakit_lock_waiter AS w
), reach (saga_id, reached) AS (
    SELECT ?1, 0
    UNION
    SELECT e.blocker, 1
      FROM reach AS r JOIN edge AS e ON e.waiter = r.saga_id
     WHERE e.blocker IS NOT NULL AND e.blocker <> r.saga_id
)
SELECT DISTINCT saga_id FROM reach WHERE reached = 1;

-- lock_edges --
-- The waits-for edges (waiter, blocker) out of the sagas ?1 (a JSON array),
-- as lock_reach follows them (to name the sagas of a deadlock)
SELECT w.saga_id AS waiter, h.saga_id AS blocker
  FROM sagakit_lock_waiter AS w
  JOIN sagakit_lock AS h ON h.lock_key = w.lock_key
 WHERE w.saga_id IN (SELECT value FROM json_each(?1)) AND h.saga_id <> w.saga_id
UNION
SELECT w.saga_id, (SELECT e.saga_id FROM sagakit_lock_waiter AS e
                    WHERE e.lock_key = w.lock_key AND e.position < w.position
                    ORDER BY e.position DESC
                    LIMIT 1)
  FROM sagakit_lock_waiter AS w
 WHERE w.saga_id IN (SELECT value FROM json_each(?1));

-- lock_holders --
-- The holders of the keys ?1 (a JSON array)
SELECT lock_key, saga_id, step, acquired_at
  FROM sagakit_lock
 WHERE lock_key IN (SELECT value FROM json_each(?1));

-- lock_list --
-- Holders of keys starting with ?1 (NULL: any), of saga ?2 (NULL: any), by
-- key; ?3 the limit
SELECT lock_key, saga_id, step, acquired_at
  FROM sagakit_lock
 WHERE (?1 IS NULL OR substr(lock_key, 1, length(?1)) = ?1)
   AND (?2 IS NULL OR saga_id = ?2)
 ORDER BY lock_key
 LIMIT ?3;

-- lock_waiters --
-- Queue places for keys starting with ?1 (NULL: any), of saga ?2 (NULL:
-- any), by key and queue order; ?3 the limit
SELECT lock_key, saga_id, step, since, position
  FROM sagakit_lock_waiter
 WHERE (?1 IS NULL OR substr(lock_key, 1, length(?1)) = ?1)
   AND (?2 IS NULL OR saga_id = ?2)
 ORDER BY lock_key, position
 LIMIT ?3;

-- locks_ready --
-- Those of the sagas ?1 (a JSON array) that queue with a step none of whose
-- places is blocked: no other saga holds the key, none queues for it before
SELECT DISTINCT w.saga_id
  FROM sagakit_lock_waiter AS w
 WHERE w.saga_id IN (SELECT value FROM json_each(?1))
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

-- notification_add --
-- A notification (0016), pending and due at ?8 (now), unless its event id
-- is known: ?1 event id, ?2 kind, ?3 saga id, ?4 saga name, ?5 version, ?6
-- detail (JSON text), ?7 occurred at. Returns it if written.
INSERT INTO sagakit_notification (
    event_id, kind, saga_id, saga_name, version, detail, occurred_at, status,
    attempts, next_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- notification_claim --
-- Hold for ?1 until ?2 (now) + ?3 up to ?4 pending notifications that are
-- due and that nobody holds (or whose hold expired), of the sagas named in
-- ?5 (a JSON array; NULL: of any or none), the earliest due first. Runs
-- inside BEGIN IMMEDIATE.
UPDATE sagakit_notification
   SET locked_by = ?1, locked_until = ?2 + ?3
 WHERE event_id IN (
       SELECT event_id FROM sagakit_notification
        WHERE status = 'pending' AND next_at <= ?2
          AND (locked_until IS NULL OR locked_until < ?2)
          AND (?5 IS NULL OR saga_name IN (SELECT value FROM json_each(?5)))
        ORDER BY next_at, event_id
        LIMIT ?4)
RETURNING event_id, kind, saga_id, saga_name, version, detail, occurred_at,
          status, attempts, delivered_to, last_error, finished_at, next_at;

-- notification_delivered --
-- Notification ?1 reached every hook (?2, a JSON array of their names) at ?3
UPDATE sagakit_notification
   SET status = 'delivered', attempts = attempts + 1, delivered_to = ?2,
       last_error = NULL, finished_at = ?3, locked_by = NULL,
       locked_until = NULL
 WHERE event_id = ?1;

-- notification_failed --
-- An attempt at notification ?1 failed with ?3 (?2: the hooks that have it,
-- a JSON array) at ?5: due again ?4 seconds later, or dropped when ?4 is NULL
UPDATE sagakit_notification
   SET status = CASE WHEN ?4 IS NULL THEN 'dropped' ELSE 'pending' END,
       attempts = attempts + 1, delivered_to = ?2, last_error = ?3,
       next_at = CASE WHEN ?4 IS NULL THEN next_at ELSE ?5 + ?4 END,
       finished_at = CASE WHEN ?4 IS NULL THEN ?5 END,
       locked_by = NULL, locked_until = NULL
 WHERE event_id = ?1;

-- notification_list --
-- The notifications in status ?1 (NULL: any), most recent events first; ?2
-- the limit
SELECT event_id, kind, saga_id, saga_name, version, detail, occurred_at,
       status, attempts, delivered_to, last_error, finished_at
  FROM sagakit_notification
 WHERE (?1 IS NULL OR status = ?1)
 ORDER BY occurred_at DESC, event_id DESC
 LIMIT ?2;

-- notification_prune --
-- Forget the notifications of events that occurred before ?1
DELETE FROM sagakit_notification WHERE occurred_at < ?1 RETURNING event_id;

-- unattended_sagas --
-- Unfinished sagas not updated since ?1, named in ?2 (a JSON array; NULL:
-- any), that nobody holds, whose lease expired by ?4 (now), that wait for a
-- definition or that are paused, oldest first (from
-- sagakit_saga_unfinished), after saga ?5 (NULL: from the first); ?3 the
-- limit. The last two columns: the owner, and whether its lease is live.
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint,
       waiting, owner, coalesce(lease_until >= ?4, 0) AS live
  FROM sagakit_saga INDEXED BY sagakit_saga_unfinished
 WHERE status IN ('running', 'compensating')
   AND updated_at < ?1
   AND (?2 IS NULL OR saga_name IN (SELECT value FROM json_each(?2)))
   AND created_at >= CASE WHEN ?5 IS NULL THEN -9e999 ELSE coalesce(
       (SELECT created_at FROM sagakit_saga WHERE saga_id = ?5), 9e999) END
   AND (?5 IS NULL
        OR created_at > (SELECT created_at FROM sagakit_saga WHERE saga_id = ?5)
        OR saga_id > ?5)
   AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?4
        OR waiting IS NOT NULL OR json_extract(state, '$.paused') = 1)
 ORDER BY created_at, saga_id
 LIMIT ?3;

-- find_sagas_by_key --
-- Sagas (of any name) whose idempotency key is ?1, newest first, from
-- sagakit_saga_key (0016); ?2 the limit
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga INDEXED BY sagakit_saga_key
 WHERE idempotency_key = ?1
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?2;

-- search_sagas_context --
-- Among the ?3 newest sagas (read in order from sagakit_saga_created), those
-- whose context as JSON text holds ?1 (lower case; matched lower-cased,
-- ASCII letters only), newest first; ?2 the limit
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM (SELECT * FROM sagakit_saga
         ORDER BY created_at DESC, saga_id DESC
         LIMIT ?3) AS newest
 WHERE instr(lower(newest.context), ?1) > 0
 ORDER BY created_at DESC, saga_id DESC
 LIMIT ?2;
