-- Named queries of the MySQL/MariaDB store. Each block starts with
-- "-- name --". Parameters are $n, as on PostgreSQL (MySQLDatabase turns
-- them into the driver's placeholders, repeating an argument used twice).
-- A block may hold several statements: the store sends them in one round
-- trip, and a write's statements inside START TRANSACTION ... COMMIT (the
-- begin and commit blocks), so one write is one round trip and one commit.
-- Statements that depend on an earlier one read what it found from session
-- variables (@sk_*), which every block sets before it reads them.
-- "Now" for saga leases is the database clock, UNIX_TIMESTAMP(NOW(6)), with
-- the session's time zone at UTC (no DST jumps). A write's history lines
-- and outbox messages are a block each (history_row, outbox_row): MariaDB
-- unpacks a JSON array (JSON_TABLE) many times slower than it inserts a
-- row; lists of ids and names are JSON arrays. Locking reads that take a
-- batch (claims) read an index in the claim order (FORCE INDEX): a sort
-- would lock every row it sorts.

-- begin --
START TRANSACTION;

-- commit --
COMMIT;

-- lock_migrations --
-- Serialise concurrent migrators of this database (the lock is the
-- session's; unlock_migrations gives it back, as does a lost connection)
SELECT GET_LOCK(CONCAT('sagakit.migrate.', LEFT(SHA1(DATABASE()), 20)), 60);

-- unlock_migrations --
SELECT RELEASE_LOCK(CONCAT('sagakit.migrate.', LEFT(SHA1(DATABASE()), 20)));

-- create_migrations_table --
-- The bookkeeping table; created before any migration runs
CREATE TABLE IF NOT EXISTS sagakit_schema_migrations (
    version     INT NOT NULL,
    name        VARCHAR(255) NOT NULL,
    applied_at  DOUBLE NOT NULL,
    PRIMARY KEY (version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- migrations_table_exists --
SELECT count(*) > 0 FROM information_schema.tables
 WHERE table_schema = DATABASE() AND table_name = 'sagakit_schema_migrations';

-- applied_migrations --
SELECT version FROM sagakit_schema_migrations ORDER BY version;

-- record_migration --
INSERT INTO sagakit_schema_migrations (version, name, applied_at)
VALUES ($1, $2, UNIX_TIMESTAMP(NOW(6)));

-- create_saga --
-- Insert the saga unless its id or its idempotency key is taken (no error:
-- one create of a batch cannot fail the others). $11 owner and $12 lease
-- seconds, both or neither, keep it owned until now + lease; $14 is the
-- deadline, $15 the definition version and $16 its fingerprint ($13 is not
-- used). @sk_write says whether it was inserted: the history_row and
-- outbox_row blocks that follow write only then; created answers.
INSERT INTO sagakit_saga (
    saga_id, saga_name, status, version, idempotency_key, context, state,
    failed_step, created_at, updated_at, owner, lease_until, deadline,
    definition_version, fingerprint
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
    UNIX_TIMESTAMP(NOW(6)) + $12, $14, $15, $16
)
ON DUPLICATE KEY UPDATE saga_id = sagakit_saga.saga_id;
SET @sk_write = ROW_COUNT() = 1;

-- created --
SELECT @sk_write AS created;

-- history_row --
-- One history line of the saga written by the block before, if it wrote:
-- saga_id, step, kind, attempt, outcome, result, error, started_at,
-- finished_at (one row per block: far cheaper than unpacking a JSON array)
INSERT INTO sagakit_step_history (
    saga_id, step, kind, attempt, outcome, result, error, started_at,
    finished_at
)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM DUAL WHERE @sk_write;

-- outbox_row --
-- One outbox message of the write before, if it wrote: message id,
-- destination, body, saga id, available at, held by and hold seconds (both
-- or neither). An id written already keeps the first message.
INSERT INTO sagakit_outbox (
    message_id, destination, body, saga_id, available_at, created_at,
    locked_by, locked_until
)
SELECT $1, $2, $3, $4, $5, UNIX_TIMESTAMP(NOW(6)), $6,
       UNIX_TIMESTAMP(NOW(6)) + $7
  FROM DUAL WHERE @sk_write
ON DUPLICATE KEY UPDATE message_id = sagakit_outbox.message_id;

-- save_saga --
-- Replace the saga if it is still at version $8. The row is locked first, so
-- its version read here is the one the update sees. $9 owner and $10 lease
-- seconds (both or neither) refresh the lease; NULL keeps it. $11 is the
-- deadline, $12 and $13 the definition version and fingerprint. @sk_write
-- says whether it was saved (see history_row, outbox_row and saved).
SET @sk_version = (SELECT version FROM sagakit_saga WHERE saga_id = $1
                      FOR UPDATE);
SET @sk_write = @sk_version <=> $8;
UPDATE sagakit_saga
   SET status = $2, version = $3, context = $4, state = $5, failed_step = $6,
       updated_at = $7, deadline = $11, waiting = NULL,
       definition_version = $12, fingerprint = $13,
       owner = COALESCE($9, owner),
       lease_until = COALESCE(UNIX_TIMESTAMP(NOW(6)) + $10, lease_until)
 WHERE saga_id = $1 AND @sk_write;

-- save_saga_received --
-- save_saga with an inbox entry ($14 consumer, $15 message id): the saga is
-- saved only if the entry is new, so a duplicate writes nothing.
SET @sk_version = (SELECT version FROM sagakit_saga WHERE saga_id = $1
                      FOR UPDATE);
INSERT INTO sagakit_inbox (consumer, message_id, received_at)
SELECT $14, $15, UNIX_TIMESTAMP(NOW(6)) FROM DUAL WHERE @sk_version <=> $8
ON DUPLICATE KEY UPDATE consumer = sagakit_inbox.consumer;
SET @sk_write = @sk_version <=> $8 AND ROW_COUNT() = 1;
UPDATE sagakit_saga
   SET status = $2, version = $3, context = $4, state = $5, failed_step = $6,
       updated_at = $7, deadline = $11, waiting = NULL,
       definition_version = $12, fingerprint = $13,
       owner = COALESCE($9, owner),
       lease_until = COALESCE(UNIX_TIMESTAMP(NOW(6)) + $10, lease_until)
 WHERE saga_id = $1 AND @sk_write;

-- saved --
-- What the save before did, after its rows: saved = 1 is success; otherwise
-- found = 0 means no such saga, duplicate = 1 a message consumed before
-- (inbox entry $1, $2; NULL: none), anything else a version conflict ($3 the
-- expected version).
SELECT @sk_write AS saved, @sk_version IS NOT NULL AS found,
       $1 IS NOT NULL AND NOT @sk_write
           AND (@sk_version <=> $3
                OR EXISTS (SELECT 1 FROM sagakit_inbox
                            WHERE consumer = $1 AND message_id = $2))
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
  FROM sagakit_step_history WHERE saga_id = $1 ORDER BY id;

-- list_sagas --
-- Newest first: $1 the limit, $2 created before (NULL: any time). Each
-- filter has a statement of its own (list_sagas_by_*), so that every one
-- reads its index in order and stops at the limit.
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE created_at < COALESCE($2, 1.7976931348623157e308)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $1;

-- list_sagas_by_status --
-- list_sagas of status $1; $2 the limit, $3 created before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE status = $1 AND created_at < COALESCE($3, 1.7976931348623157e308)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $2;

-- list_sagas_by_name --
-- list_sagas of saga $1; $2 the limit, $3 created before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE saga_name = $1 AND created_at < COALESCE($3, 1.7976931348623157e308)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $2;

-- list_sagas_by_name_status --
-- list_sagas of saga $1 in status $2; $3 the limit, $4 created before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE saga_name = $1 AND status = $2
   AND created_at < COALESCE($4, 1.7976931348623157e308)
 ORDER BY created_at DESC, saga_id DESC
 LIMIT $3;

-- list_waiting_sagas --
-- list_sagas of the unfinished sagas marked waiting (few: waiting_since is
-- NULL for the others), of saga $1 and status $2 (NULL: any); $3 the limit,
-- $4 created before
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga
 WHERE waiting_since < COALESCE($4, 1.7976931348623157e308)
   AND status IN ('running', 'compensating')
   AND ($1 IS NULL OR saga_name = $1)
   AND ($2 IS NULL OR status = $2)
 ORDER BY waiting_since DESC, saga_id DESC
 LIMIT $3;

-- count_by_status --
-- Sagas per status: the ended ones as the triggers keep them (summed over
-- their rows), the unfinished ones (few) read from sagakit_saga_status
SELECT status, sum(n) AS n FROM sagakit_saga_count
 GROUP BY status
HAVING sum(n) > 0
UNION ALL
SELECT status, count(*) AS n FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
 GROUP BY status;

-- count_saga_by_status --
-- count_by_status of saga $1 (its unfinished ones from
-- sagakit_saga_name_status)
SELECT status, sum(n) AS n FROM sagakit_saga_count
 WHERE saga_name = $1
 GROUP BY status
HAVING sum(n) > 0
UNION ALL
SELECT status, count(*) AS n FROM sagakit_saga
 WHERE saga_name = $1 AND status IN ('running', 'compensating')
 GROUP BY status;

-- count_by_status_scan --
-- count_by_status read from every saga (no counts kept)
SELECT status, count(*) AS n FROM sagakit_saga
 WHERE $1 IS NULL OR saga_name = $1
 GROUP BY status;

-- ids_with_prefix --
-- Ids from $1 (a prefix) up to $2 (excluded: the least string above every id
-- that starts with $1), in code point order: a range of the primary key; $3
-- the limit. The prefix compares as bytes (utf8mb4_bin pads with spaces).
SELECT saga_id FROM sagakit_saga
 WHERE saga_id >= $1 AND saga_id < $2
   AND CAST(LEFT(saga_id, CHAR_LENGTH($1)) AS BINARY) = CAST($1 AS BINARY)
 ORDER BY saga_id
 LIMIT $3;

-- ids_from_prefix --
-- ids_with_prefix for a prefix that has no upper bound ('' or only
-- U+10FFFF): every id from $1 on; $2 the limit
SELECT saga_id FROM sagakit_saga
 WHERE saga_id >= $1
   AND CAST(LEFT(saga_id, CHAR_LENGTH($1)) AS BINARY) = CAST($1 AS BINARY)
 ORDER BY saga_id
 LIMIT $2;

-- unfinished_sagas --
-- Ids of the unfinished sagas named in $1 (a JSON array; NULL: of every
-- saga) in claim order (created_at, saga_id), after saga $2 (NULL: from the
-- first; an id not stored: none): a page of at most $3, read in order from
-- sagakit_saga_unfinished
SELECT saga_id FROM sagakit_saga FORCE INDEX (sagakit_saga_unfinished)
 WHERE unfinished_at >= CASE WHEN $2 IS NULL THEN -1.7976931348623157e308
       ELSE COALESCE((SELECT created_at FROM sagakit_saga WHERE saga_id = $2),
                     1.7976931348623157e308) END
   AND ($2 IS NULL
        OR unfinished_at > (SELECT created_at FROM sagakit_saga
                             WHERE saga_id = $2)
        OR saga_id > $2)
   AND ($1 IS NULL OR saga_name IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j))
 ORDER BY unfinished_at, saga_id
 LIMIT $3;

-- claim_sagas --
-- Take non-terminal sagas named in $2 (a JSON array) that are unleased,
-- whose lease expired or whose owner is in $5 (a JSON array, known dead),
-- oldest first; rows another claimer has locked are skipped, not waited for.
-- The version bump makes a save by the previous owner fail. An entry of $2
-- is a saga name or a definition key (name:version[:fingerprint]). With $6,
-- only sagas after saga $6 in that order (the next batch of a recovery).
-- $1 is the owner, $3 the lease seconds, $4 the limit. Each row ends with
-- the owner whose lease the claim took (NULL: none).
SET @sk_ids = (
    SELECT JSON_ARRAYAGG(JSON_OBJECT('id', c.saga_id, 'owner', c.owner)) FROM (
        SELECT saga_id, owner
          FROM sagakit_saga FORCE INDEX (sagakit_saga_unfinished)
         WHERE unfinished_at >= CASE WHEN $6 IS NULL
               THEN -1.7976931348623157e308
               ELSE COALESCE((SELECT created_at FROM sagakit_saga
                               WHERE saga_id = $6), 1.7976931348623157e308) END
           AND ($6 IS NULL
                OR unfinished_at > (SELECT created_at FROM sagakit_saga
                                     WHERE saga_id = $6)
                OR saga_id > $6)
           AND (saga_name IN (
                    SELECT j.v FROM JSON_TABLE($2, '$[*]' COLUMNS (
                        v VARCHAR(255) CHARACTER SET utf8mb4
                          COLLATE utf8mb4_bin PATH '$')) AS j)
                OR CONCAT(saga_name, ':', definition_version,
                          COALESCE(CONCAT(':', fingerprint), '')) IN (
                    SELECT j.v FROM JSON_TABLE($2, '$[*]' COLUMNS (
                        v VARCHAR(600) CHARACTER SET utf8mb4
                          COLLATE utf8mb4_bin PATH '$')) AS j))
           AND (lease_until IS NULL
                OR lease_until < UNIX_TIMESTAMP(NOW(6))
                OR owner IN (
                    SELECT j.v FROM JSON_TABLE($5, '$[*]' COLUMNS (
                        v VARCHAR(255) CHARACTER SET utf8mb4
                          COLLATE utf8mb4_bin PATH '$')) AS j))
         ORDER BY unfinished_at, saga_id
         LIMIT $4
           FOR UPDATE SKIP LOCKED) AS c);
UPDATE JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$.id')) AS j
       STRAIGHT_JOIN sagakit_saga AS s ON s.saga_id = j.id
   SET s.owner = $1,
       s.lease_until = UNIX_TIMESTAMP(NOW(6)) + $3,
       s.version = s.version + 1,
       s.waiting = NULL;
SELECT s.saga_id, s.saga_name, s.status, s.version, s.idempotency_key,
       s.context, s.state, s.created_at, s.updated_at, s.deadline,
       s.definition_version, s.fingerprint, s.waiting, j.owner
  FROM JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$.id',
           owner VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$.owner')) AS j
       STRAIGHT_JOIN sagakit_saga AS s ON s.saga_id = j.id
 ORDER BY s.created_at, s.saga_id;

-- stranded_sagas --
-- Non-terminal sagas named in $1 (a JSON array) whose definition key is not
-- in $2 (a JSON array), not marked waiting yet and not leased (or leased by
-- an owner in $4, a JSON array: known dead); $3 the limit
SELECT saga_id, saga_name, status, version, idempotency_key, context, state,
       created_at, updated_at, deadline, definition_version, fingerprint, waiting
  FROM sagakit_saga FORCE INDEX (sagakit_saga_unfinished)
 WHERE unfinished_at IS NOT NULL
   AND saga_name IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j)
   AND CONCAT(saga_name, ':', definition_version,
              COALESCE(CONCAT(':', fingerprint), '')) NOT IN (
       SELECT j.v FROM JSON_TABLE($2, '$[*]' COLUMNS (
           v VARCHAR(600) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j WHERE j.v IS NOT NULL)
   AND waiting IS NULL
   AND (lease_until IS NULL
        OR lease_until < UNIX_TIMESTAMP(NOW(6))
        OR owner IN (
            SELECT j.v FROM JSON_TABLE($4, '$[*]' COLUMNS (
                v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
                  PATH '$')) AS j))
 ORDER BY unfinished_at, saga_id
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
-- The owners of non-terminal sagas named in $1 (a JSON array), each once
SELECT DISTINCT owner FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
   AND owner IS NOT NULL
   AND saga_name IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j);

-- renew_leases --
-- Extend the leases $1 still holds on the non-terminal sagas in $2 (a JSON
-- array); returns the ids it holds (renewed, even where the new end is the
-- old one)
UPDATE JSON_TABLE($2, '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_saga AS s ON s.saga_id = j.id
   SET s.lease_until = UNIX_TIMESTAMP(NOW(6)) + $3
 WHERE s.owner = $1 AND s.status IN ('running', 'compensating');
SELECT s.saga_id
  FROM JSON_TABLE($2, '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_saga AS s ON s.saga_id = j.id
 WHERE s.owner = $1 AND s.status IN ('running', 'compensating');

-- saga_leases --
-- Owner, whether its lease is live (by the database clock) and version of the
-- non-terminal sagas in $1 (a JSON array)
SELECT s.saga_id, s.owner,
       COALESCE(s.lease_until >= UNIX_TIMESTAMP(NOW(6)), 0) AS live,
       s.version
  FROM JSON_TABLE($1, '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_saga AS s ON s.saga_id = j.id
 WHERE s.status IN ('running', 'compensating');

-- release_leases --
-- Hand the sagas in $2 (a JSON array) that $1 still holds back at once
UPDATE JSON_TABLE($2, '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_saga AS s ON s.saga_id = j.id
   SET s.owner = NULL, s.lease_until = NULL
 WHERE s.owner = $1;

-- due_deadlines --
-- Non-terminal sagas named in $1 (a JSON array) whose deadline has passed,
-- earliest first; $2 the limit
SELECT saga_id FROM sagakit_saga FORCE INDEX (sagakit_saga_deadline)
 WHERE due_at <= UNIX_TIMESTAMP(NOW(6))
   AND saga_name IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j)
 ORDER BY due_at, saga_id
 LIMIT $2;

-- claim_outbox --
-- Hold for $1 until now + $2 seconds up to $3 messages that are due and that
-- no relay holds (or whose hold expired), oldest first; rows another claimer
-- has locked are skipped, not waited for.
SET @sk_ids = (
    SELECT JSON_ARRAYAGG(c.message_id) FROM (
        SELECT message_id FROM sagakit_outbox
               FORCE INDEX (sagakit_outbox_available)
         WHERE available_at <= UNIX_TIMESTAMP(NOW(6))
           AND (locked_until IS NULL
                OR locked_until < UNIX_TIMESTAMP(NOW(6)))
         ORDER BY available_at, created_at, message_id
         LIMIT $3
           FOR UPDATE SKIP LOCKED) AS c);
UPDATE JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_outbox AS o ON o.message_id = j.id
   SET o.locked_by = $1,
       o.locked_until = UNIX_TIMESTAMP(NOW(6)) + $2;
SELECT o.message_id, o.destination, o.body, o.saga_id, o.available_at
  FROM JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_outbox AS o ON o.message_id = j.id
 ORDER BY o.available_at, o.created_at, o.message_id;

-- release_outbox --
-- End the holds of $1 (of everyone if NULL): the messages are free to claim;
-- returns how many
UPDATE sagakit_outbox SET locked_by = NULL, locked_until = NULL
 WHERE locked_until IS NOT NULL AND ($1 IS NULL OR locked_by = $1);
SELECT ROW_COUNT();

-- delete_outbox --
-- Forget the messages in $1 (a JSON array): they were published
DELETE o FROM JSON_TABLE($1, '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_outbox AS o ON o.message_id = j.id;

-- record_inbox --
-- Remember that $1 took message $2 with reply $3; nothing if it did before.
-- One statement (it may run on a caller's connection): the affected row
-- count says whether it was new.
INSERT INTO sagakit_inbox (consumer, message_id, reply, received_at)
VALUES ($1, $2, $3, UNIX_TIMESTAMP(NOW(6)))
ON DUPLICATE KEY UPDATE consumer = sagakit_inbox.consumer;

-- inbox_reply --
SELECT reply FROM sagakit_inbox WHERE consumer = $1 AND message_id = $2;

-- workflow_insert --
-- A workflow instance; an existing (app, instance_id) is kept as it is
-- (created = 0). $17 is the result, $18 the start digest, $19 and $20 its
-- definition version and fingerprint ($16 is not used: its history follows
-- in workflow_history_row blocks).
INSERT INTO sagakit_workflow (
    app, instance_id, status, step, input, due_at, state, version,
    attempts, transitions, error, created_at, updated_at, owner,
    lease_until, result, start_digest, definition_version, fingerprint
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $17,
    $18, $19, $20
)
ON DUPLICATE KEY UPDATE app = sagakit_workflow.app;
SET @sk_write = ROW_COUNT() = 1;

-- workflow_history_row --
-- One history line of the instance written by the block before, if it
-- wrote: app, instance_id, step, attempt, outcome, detail, error,
-- recorded_at
INSERT INTO sagakit_workflow_history (
    app, instance_id, step, attempt, outcome, detail, error, recorded_at
)
SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM DUAL WHERE @sk_write;

-- workflow_get --
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE app = $1 AND instance_id = $2;

-- workflow_save --
-- Optimistic replace ($14 is the expected version; the row is locked
-- first); its history follows in workflow_history_row blocks ($16 is not
-- used), then workflow_saved. $17 is the result, $18 and $19 the definition
-- version and fingerprint; the start digest is written once, by
-- workflow_insert.
SET @sk_version = (SELECT version FROM sagakit_workflow
                    WHERE app = $1 AND instance_id = $2 FOR UPDATE);
SET @sk_write = @sk_version <=> $14;
UPDATE sagakit_workflow
   SET status = $3, step = $4, input = $5, due_at = $6, state = $7,
       version = $8, attempts = $9, transitions = $10, error = $11,
       updated_at = $12, owner = $13, lease_until = $15, result = $17,
       definition_version = $18, fingerprint = $19
 WHERE app = $1 AND instance_id = $2 AND @sk_write;

-- workflow_saved --
-- What workflow_save did: saved, and whether the instance exists
SELECT @sk_write AS saved, @sk_version IS NOT NULL AS found;

-- workflow_claim --
-- Take instances of $1 and definition version $7 whose step is in $5 (a
-- JSON array) and whose fingerprint is $8 or unknown (NULL $8: any) that are
-- claimable at $3 (now): pending ones due by then, running ones whose lease
-- expired. Earliest wake-up first, at most $6; rows another claimer has
-- locked are skipped. The search is one range of sagakit_workflow_wake; step
-- and fingerprint only filter what it finds. The version bump makes a save
-- by a previous owner fail. $2 is the owner, $4 the lease seconds.
SET @sk_ids = (
    SELECT JSON_ARRAYAGG(c.instance_id) FROM (
        SELECT instance_id FROM sagakit_workflow
               FORCE INDEX (sagakit_workflow_wake)
         WHERE app = $1 AND definition_version = $7
           AND wake_at <= $3
           AND (status = 'pending' OR lease_until < $3)
           AND step IN (
               SELECT j.v FROM JSON_TABLE($5, '$[*]' COLUMNS (
                   v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
                     PATH '$')) AS j)
           AND ($8 IS NULL OR fingerprint IS NULL OR fingerprint = $8)
         ORDER BY wake_at, instance_id
         LIMIT $6
           FOR UPDATE SKIP LOCKED) AS c);
UPDATE JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_workflow AS w
           ON w.app = $1 AND w.instance_id = j.id
   SET w.status = 'running', w.owner = $2, w.lease_until = $3 + $4,
       w.version = w.version + 1, w.attempts = w.attempts + 1,
       w.updated_at = $3;
SELECT w.app, w.instance_id, w.status, w.step, w.input, w.due_at, w.state,
       w.version, w.attempts, w.transitions, w.error, w.created_at,
       w.updated_at, w.owner, w.lease_until, w.result, w.start_digest,
       w.definition_version, w.fingerprint
  FROM JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_workflow AS w
           ON w.app = $1 AND w.instance_id = j.id;

-- workflow_claim_any_version --
-- workflow_claim of every definition version ($7 is NULL), read in order
-- from sagakit_workflow_wake_any
SET @sk_ids = (
    SELECT JSON_ARRAYAGG(c.instance_id) FROM (
        SELECT instance_id FROM sagakit_workflow
               FORCE INDEX (sagakit_workflow_wake_any)
         WHERE app = $1 AND $7 IS NULL
           AND wake_at <= $3
           AND (status = 'pending' OR lease_until < $3)
           AND step IN (
               SELECT j.v FROM JSON_TABLE($5, '$[*]' COLUMNS (
                   v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
                     PATH '$')) AS j)
           AND ($8 IS NULL OR fingerprint IS NULL OR fingerprint = $8)
         ORDER BY wake_at, instance_id
         LIMIT $6
           FOR UPDATE SKIP LOCKED) AS c);
UPDATE JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_workflow AS w
           ON w.app = $1 AND w.instance_id = j.id
   SET w.status = 'running', w.owner = $2, w.lease_until = $3 + $4,
       w.version = w.version + 1, w.attempts = w.attempts + 1,
       w.updated_at = $3;
SELECT w.app, w.instance_id, w.status, w.step, w.input, w.due_at, w.state,
       w.version, w.attempts, w.transitions, w.error, w.created_at,
       w.updated_at, w.owner, w.lease_until, w.result, w.start_digest,
       w.definition_version, w.fingerprint
  FROM JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_workflow AS w
           ON w.app = $1 AND w.instance_id = j.id;

-- workflow_renew --
-- Extend $2's lease on instance $3 of app $1 to $4 (now) + $5; returns the
-- instance if $2 holds it (renewed, even where the new end is the old one)
UPDATE sagakit_workflow
   SET lease_until = $4 + $5
 WHERE app = $1 AND instance_id = $3 AND owner = $2 AND status = 'running';
SELECT instance_id FROM sagakit_workflow
 WHERE app = $1 AND instance_id = $3 AND owner = $2 AND status = 'running';

-- workflow_next_due --
-- When the first instance workflow_claim (same $1 app, $2 steps, $3 version,
-- $4 fingerprint) would take becomes claimable; no row if none ever does.
-- The first entry of one range of sagakit_workflow_wake.
SELECT wake_at FROM sagakit_workflow FORCE INDEX (sagakit_workflow_wake)
 WHERE app = $1 AND definition_version = $3
   AND wake_at IS NOT NULL
   AND step IN (
       SELECT j.v FROM JSON_TABLE($2, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j)
   AND ($4 IS NULL OR fingerprint IS NULL OR fingerprint = $4)
 ORDER BY wake_at
 LIMIT 1;

-- workflow_next_due_any_version --
-- workflow_next_due of every definition version ($3 is NULL)
SELECT wake_at FROM sagakit_workflow FORCE INDEX (sagakit_workflow_wake_any)
 WHERE app = $1 AND $3 IS NULL
   AND wake_at IS NOT NULL
   AND step IN (
       SELECT j.v FROM JSON_TABLE($2, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j)
   AND ($4 IS NULL OR fingerprint IS NULL OR fingerprint = $4)
 ORDER BY wake_at
 LIMIT 1;

-- workflow_unfinished --
SELECT count(*) FROM sagakit_workflow
 WHERE app = $1 AND status IN ('pending', 'running');

-- workflow_live --
-- Pending or running instances by app, definition and pending step
SELECT app, definition_version, fingerprint, step, count(*)
  FROM sagakit_workflow
 WHERE status IN ('pending', 'running')
 GROUP BY app, definition_version, fingerprint, step;

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
 WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR app = $2)
   AND ($4 IS NULL OR created_at < $4)
 ORDER BY created_at DESC, instance_id DESC, app DESC
 LIMIT $3;

-- workflow_list_of_app_in_status --
-- workflow_list of app $2 in status $1 (both given), created before $4: one
-- range of sagakit_workflow_status, newest first
SELECT app, instance_id, status, step, input, due_at, state, version, attempts,
       transitions, error, created_at, updated_at, owner, lease_until, result,
       start_digest, definition_version, fingerprint
  FROM sagakit_workflow
 WHERE app = $2 AND status = $1 AND created_at < $4
 ORDER BY created_at DESC, instance_id DESC, app DESC
 LIMIT $3;

-- workflow_count_by_status --
-- Instances per status, of app $1 (NULL: of every app)
SELECT status, count(*) AS n FROM sagakit_workflow
 WHERE ($1 IS NULL OR app = $1)
 GROUP BY status;

-- workflow_ids_with_prefix --
-- (app, instance_id) of the instances whose id starts with $1 (compared as
-- bytes), of app $2 (NULL: of every app), in id order
SELECT app, instance_id FROM sagakit_workflow
 WHERE CAST(LEFT(instance_id, CHAR_LENGTH($1)) AS BINARY) = CAST($1 AS BINARY)
   AND ($2 IS NULL OR app = $2)
 ORDER BY instance_id, app
 LIMIT $3;

-- event_subscribe --
-- Route event type $1 to the queue $3 of service $2 (replacing its queue)
INSERT INTO sagakit_event_route (event_type, service, queue, subscribed_at)
VALUES ($1, $2, $3, $4)
ON DUPLICATE KEY UPDATE queue = $3, subscribed_at = $4;

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
-- correlation id take turns. Then log the event ($7 .. $14 as
-- event_log_insert binds them) and read the event types of choreography $2
-- that correlation $1 published or consumed.
INSERT INTO sagakit_choreography (
    correlation_id, name, status, started_at, updated_at, deadline,
    definition_version, fingerprint
) VALUES ($1, $2, 'in_progress', $3, $3, $4, $5, $6)
ON DUPLICATE KEY UPDATE name = sagakit_choreography.name;
INSERT INTO sagakit_event_log (
    correlation_id, choreography, service, event_type, message_id, outcome,
    detail, recorded_at
) VALUES ($7, $8, $9, $10, $11, $12, $13, $14);
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
 WHERE $1 IS NULL OR status = $1
 ORDER BY updated_at DESC, correlation_id
 LIMIT $2;

-- choreography_mark_stalled --
-- In-progress or compensating choreographies overdue at $1 become stalled;
-- rows another checker has locked are skipped, so each is flagged once.
SET @sk_ids = (
    SELECT JSON_ARRAYAGG(c.correlation_id) FROM (
        SELECT correlation_id FROM sagakit_choreography
               FORCE INDEX (sagakit_choreography_deadline)
         WHERE open_deadline < $1
         ORDER BY open_deadline, correlation_id
         LIMIT $2
           FOR UPDATE SKIP LOCKED) AS c);
UPDATE JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_choreography AS c ON c.correlation_id = j.id
   SET c.status = 'stalled';
SELECT c.correlation_id, c.name, c.status, c.started_at, c.updated_at,
       c.deadline, c.definition_version, c.fingerprint
  FROM JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_choreography AS c ON c.correlation_id = j.id;

-- choreography_live --
-- Choreographies that have not ended, by definition
SELECT name, definition_version, fingerprint, count(*)
  FROM sagakit_choreography
 WHERE status IN ('in_progress', 'compensating', 'stalled')
 GROUP BY name, definition_version, fingerprint;

-- event_outbox_stage --
-- Stage event $1 of service $2 on the caller's connection, in its
-- transaction; an id staged already keeps the first (no row affected)
INSERT INTO sagakit_event_outbox (
    message_id, service, event_type, correlation_id, body, created_at
) VALUES ($1, $2, $3, $4, $5, $6)
ON DUPLICATE KEY UPDATE message_id = sagakit_event_outbox.message_id;

-- event_outbox_claim --
-- Hold for $2 until $3 (now) + $4 seconds up to $5 events staged by service
-- $1 that nobody holds, whose hold expired or that $2 holds already, in
-- staging order; rows another claimer has locked are skipped, not waited for.
SET @sk_ids = (
    SELECT JSON_ARRAYAGG(c.message_id) FROM (
        SELECT message_id FROM sagakit_event_outbox
               FORCE INDEX (sagakit_event_outbox_service)
         WHERE service = $1
           AND (locked_until IS NULL OR locked_until < $3 OR locked_by = $2)
         ORDER BY seq
         LIMIT $5
           FOR UPDATE SKIP LOCKED) AS c);
UPDATE JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_event_outbox AS o ON o.message_id = j.id
   SET o.locked_by = $2, o.locked_until = $3 + $4;
SELECT o.message_id, o.service, o.event_type, o.correlation_id, o.body,
       o.created_at
  FROM JSON_TABLE(COALESCE(@sk_ids, '[]'), '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_event_outbox AS o ON o.message_id = j.id
 ORDER BY o.seq;

-- event_outbox_delete --
-- Forget the staged events in $1 (a JSON array): they were published
DELETE o FROM JSON_TABLE($1, '$[*]' COLUMNS (
           id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_event_outbox AS o ON o.message_id = j.id;

-- lock_serialise --
-- Inside a save that changes semantic locks: one such transaction at a time
-- (the guard row stays locked until it ends), so the busy checks and the
-- wait-for cycle check see every other change. The row is written back if
-- it was ever deleted.
INSERT INTO sagakit_lock_guard (id) VALUES (1)
ON DUPLICATE KEY UPDATE id = sagakit_lock_guard.id;

-- lock_release --
-- Saga $1 lets go of the keys $2 (a JSON array) it holds
DELETE FROM sagakit_lock
 WHERE saga_id = $1 AND lock_key IN (
       SELECT k.v FROM JSON_TABLE($2, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS k);

-- lock_unwait --
-- Saga $1 leaves the queues of the (key, step) pairs $2, $3 (JSON arrays)
DELETE w FROM sagakit_lock_waiter AS w
  JOIN JSON_TABLE($2, '$[*]' COLUMNS (
           n FOR ORDINALITY,
           lock_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS k
    ON w.lock_key = k.lock_key
  JOIN JSON_TABLE($3, '$[*]' COLUMNS (
           n FOR ORDINALITY,
           step VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS s
    ON s.n = k.n AND w.step = s.step
 WHERE w.saga_id = $1;

-- lock_busy --
-- Of the keys $2 that saga $1 asks for with steps $3 (JSON arrays), those it
-- cannot take, each with the saga in the way: another holder, else the first
-- other saga queued before this step's own place in the key's queue (before
-- any if it has none)
SELECT lock_key, blocker FROM (
    SELECT k.lock_key, COALESCE(
        (SELECT h.saga_id FROM sagakit_lock AS h
          WHERE h.lock_key = k.lock_key AND h.saga_id <> $1),
        (SELECT e.saga_id FROM sagakit_lock_waiter AS e
          WHERE e.lock_key = k.lock_key AND e.saga_id <> $1
            AND e.position < COALESCE(
                (SELECT m.position FROM sagakit_lock_waiter AS m
                  WHERE m.lock_key = k.lock_key AND m.saga_id = $1
                    AND m.step = s.step),
                9223372036854775807)
          ORDER BY e.position
          LIMIT 1)) AS blocker
      FROM JSON_TABLE($2, '$[*]' COLUMNS (
               n FOR ORDINALITY,
               lock_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
                   PATH '$')) AS k
      JOIN JSON_TABLE($3, '$[*]' COLUMNS (
               n FOR ORDINALITY,
               step VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
                   PATH '$')) AS s
        ON s.n = k.n
) AS asked
 WHERE blocker IS NOT NULL;

-- lock_acquire --
-- Saga $1 takes the keys $2 for steps $3 (JSON arrays, found free: a key it
-- holds already stays as it is) at $4 (NULL: now); lock_unwait leaves their
-- queues
INSERT INTO sagakit_lock (lock_key, saga_id, step, acquired_at)
SELECT k.lock_key, $1, s.step, COALESCE($4, UNIX_TIMESTAMP(NOW(6)))
  FROM JSON_TABLE($2, '$[*]' COLUMNS (
           n FOR ORDINALITY,
           lock_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS k
  JOIN JSON_TABLE($3, '$[*]' COLUMNS (
           n FOR ORDINALITY,
           step VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS s
    ON s.n = k.n
ON DUPLICATE KEY UPDATE lock_key = sagakit_lock.lock_key;

-- lock_wait --
-- Saga $1 queues its steps $3 for the keys $2 since $4 (JSON arrays), at the
-- back of each key's queue (a place it has already is kept)
INSERT INTO sagakit_lock_waiter (lock_key, saga_id, step, since)
SELECT k.lock_key, $1, s.step, t.since
  FROM JSON_TABLE($2, '$[*]' COLUMNS (
           n FOR ORDINALITY,
           lock_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS k
  JOIN JSON_TABLE($3, '$[*]' COLUMNS (
           n FOR ORDINALITY,
           step VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS s
    ON s.n = k.n
  JOIN JSON_TABLE($4, '$[*]' COLUMNS (
           n FOR ORDINALITY, since DOUBLE PATH '$')) AS t
    ON t.n = k.n
 ORDER BY k.n
ON DUPLICATE KEY UPDATE lock_key = sagakit_lock_waiter.lock_key;

-- lock_reach --
-- Every saga that saga $1 waits for, directly or through others: the holder
-- of each key a saga queues for and the saga just before it in that queue
-- (the one before that is reached through it). $1 itself is among them if it
-- waits for itself: a deadlock.
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
    SELECT CAST($1 AS CHAR(255)) COLLATE utf8mb4_bin, 0
    UNION
    SELECT e.blocker, 1
      FROM reach AS r JOIN edge AS e ON e.waiter = r.saga_id
     WHERE e.blocker IS NOT NULL AND e.blocker <> r.saga_id
)
SELECT DISTINCT saga_id FROM reach WHERE reached = 1;

-- lock_edges --
-- The waits-for edges (waiter, blocker) out of the sagas $1 (a JSON array),
-- as lock_reach follows them (to name the sagas of a deadlock)
SELECT w.saga_id AS waiter, h.saga_id AS blocker
  FROM sagakit_lock_waiter AS w
  JOIN sagakit_lock AS h ON h.lock_key = w.lock_key
 WHERE w.saga_id IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j)
   AND h.saga_id <> w.saga_id
UNION
SELECT w.saga_id, (SELECT e.saga_id FROM sagakit_lock_waiter AS e
                    WHERE e.lock_key = w.lock_key AND e.position < w.position
                    ORDER BY e.position DESC
                    LIMIT 1)
  FROM sagakit_lock_waiter AS w
 WHERE w.saga_id IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j);

-- lock_holders --
-- The holders of the keys $1 (a JSON array)
SELECT l.lock_key, l.saga_id, l.step, l.acquired_at
  FROM JSON_TABLE($1, '$[*]' COLUMNS (
           k VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
               PATH '$')) AS j
       STRAIGHT_JOIN sagakit_lock AS l ON l.lock_key = j.k;

-- lock_list --
-- Holders of keys starting with $1 (NULL: any), of saga $2 (NULL: any), by
-- key; $3 the limit
SELECT lock_key, saga_id, step, acquired_at
  FROM sagakit_lock
 WHERE ($1 IS NULL OR LEFT(lock_key, CHAR_LENGTH($1)) = $1)
   AND ($2 IS NULL OR saga_id = $2)
 ORDER BY lock_key
 LIMIT $3;

-- lock_waiters --
-- Queue places for keys starting with $1 (NULL: any), of saga $2 (NULL:
-- any), by key and queue order; $3 the limit
SELECT lock_key, saga_id, step, since, position
  FROM sagakit_lock_waiter
 WHERE ($1 IS NULL OR LEFT(lock_key, CHAR_LENGTH($1)) = $1)
   AND ($2 IS NULL OR saga_id = $2)
 ORDER BY lock_key, position
 LIMIT $3;

-- locks_ready --
-- Those of the sagas $1 (a JSON array) that queue with a step none of whose
-- places is blocked: no other saga holds the key, none queues for it before
SELECT DISTINCT w.saga_id
  FROM sagakit_lock_waiter AS w
 WHERE w.saga_id IN (
       SELECT j.v FROM JSON_TABLE($1, '$[*]' COLUMNS (
           v VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$'))
           AS j)
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
