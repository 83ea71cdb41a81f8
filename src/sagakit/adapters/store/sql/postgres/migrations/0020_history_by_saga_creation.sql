-- 0020: a saga's history lines are found through an index keyed by the
-- saga's creation time (issue 17, goal 3), as SQLite's since its 0017. The
-- index on (saga_id, id) put the lines of each saga at a place as random as
-- its id: at 1M stored sagas, a commit that appended lines changed a leaf
-- of a 300 MB index that no commit had touched since the last checkpoint,
-- and the first change of a page after a checkpoint writes the whole page
-- to the WAL (measured: 7.7 KB of a saga's 23.5 KB). Keyed by
-- (saga_created_at, saga_id, id), the lines of the sagas in flight, created
-- lately, go to the index's last leaves. Every statement that appends lines
-- writes their saga in the same statement and takes saga_created_at from
-- its row; get_history looks the saga's created_at up first.
--
-- Upgrading rewrites every history line once (the new column is filled in
-- from its saga) and builds the new index: on a large store, run it when
-- a pause of the writers is acceptable (it holds the table's lock).
ALTER TABLE sagakit_step_history ADD COLUMN saga_created_at double precision;

ALTER TABLE sagakit_step_history
    DISABLE TRIGGER sagakit_step_history_append_only;

UPDATE sagakit_step_history AS h
   SET saga_created_at = coalesce(
           (SELECT s.created_at FROM sagakit_saga AS s
             WHERE s.saga_id = h.saga_id),
           0);

ALTER TABLE sagakit_step_history
    ENABLE TRIGGER sagakit_step_history_append_only;

ALTER TABLE sagakit_step_history ALTER COLUMN saga_created_at SET NOT NULL;

CREATE INDEX sagakit_step_history_saga_time
    ON sagakit_step_history (saga_created_at, saga_id, id);

DROP INDEX sagakit_step_history_saga;
