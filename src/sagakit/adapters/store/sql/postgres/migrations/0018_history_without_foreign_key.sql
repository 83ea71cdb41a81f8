-- 0018: cheaper history lines (issue 17). The foreign key of
-- sagakit_step_history.saga_id checked every line appended against
-- sagakit_saga (a lookup and a row lock per line, ~5 us of server CPU each,
-- about a tenth of a saga's on the failure path). Every statement that
-- appends lines writes their saga in the same statement and keeps only the
-- lines of the sagas it wrote (a line of another saga is refused there): no
-- line is appended without its saga. Sagas are deleted only with their
-- history (purge), as before.
ALTER TABLE sagakit_step_history
    DROP CONSTRAINT IF EXISTS sagakit_step_history_saga_id_fkey;
