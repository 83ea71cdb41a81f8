-- 0017: a save writes fewer pages (issue 17). The step history was a rowid
-- table with an AUTOINCREMENT id and an index on (saga_id, id): a commit
-- that added lines wrote the table's last page, sqlite_sequence's page and
-- a page of the index for each saga in it, at a place as random as the
-- saga id. It is now one b-tree keyed by its saga's creation time, the saga
-- id and the line's place in that saga's history (seq): the lines of the
-- sagas in flight, created lately, go to the last few pages, which a commit
-- writes once whatever number of sagas it holds. insert_history reads the
-- saga's created_at (no line without its saga: the foreign key is not
-- needed) and gives a line its saga's last seq plus one. Lines keep their
-- order: a migrated line's seq is its old id, which grew with every line.
ALTER TABLE sagakit_step_history RENAME TO sagakit_step_history_0016;

CREATE TABLE sagakit_step_history (
    saga_created_at  REAL NOT NULL,
    saga_id      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    step         TEXT,
    kind         TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    result       TEXT,
    error        TEXT,
    started_at   REAL NOT NULL,
    finished_at  REAL NOT NULL,
    PRIMARY KEY (saga_created_at, saga_id, seq)
) WITHOUT ROWID;

INSERT INTO sagakit_step_history (
    saga_created_at, saga_id, seq, step, kind, attempt, outcome, result,
    error, started_at, finished_at)
SELECT coalesce(s.created_at, 0), h.saga_id, h.id, h.step, h.kind,
       h.attempt, h.outcome, h.result, h.error, h.started_at, h.finished_at
  FROM sagakit_step_history_0016 AS h
  LEFT JOIN sagakit_saga AS s ON s.saga_id = h.saga_id;

-- its index and its trigger go with it
DROP TABLE sagakit_step_history_0016;

CREATE TRIGGER sagakit_step_history_append_only
    BEFORE UPDATE ON sagakit_step_history
BEGIN
    SELECT RAISE(ABORT, 'sagakit_step_history is append-only');
END;
