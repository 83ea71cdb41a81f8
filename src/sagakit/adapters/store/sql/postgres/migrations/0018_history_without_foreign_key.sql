-- 0018: cheaper history lines (issue 17). The foreign key of
-- sagakit_step_history.saga_id checked every line appended against
-- sagakit_saga (a lookup and a row lock per line, ~5 us of server CPU each,
-- about a tenth of a saga's on the failure path). Every statement that
-- appends lines writes their saga in the same statement and keeps only the
-- lines of the sagas it wrote (a line of another saga is refused there): no
-- line is appended without its saga. Sagas are deleted only with their
-- history (purge), as before. sagakit_history_columns unpacks the lines
-- that a batch statement appends given as an array per column (the server
-- reads them for a ninth of the CPU of sagakit_history_lines' jsonb array
-- of objects, which stays for the sagakit versions that call it).
ALTER TABLE sagakit_step_history
    DROP CONSTRAINT IF EXISTS sagakit_step_history_saga_id_fkey;

CREATE FUNCTION sagakit_history_columns(
    saga_ids text[], steps text[], kinds text[], attempts integer[],
    outcomes text[], results text[], errors text[],
    started double precision[], finished double precision[]
)
    RETURNS TABLE (
        saga_id text, step text, kind text, attempt integer, outcome text,
        result jsonb, error jsonb, started_at double precision,
        finished_at double precision, n bigint
    )
    LANGUAGE sql STABLE AS $$
    SELECT u.saga_id, u.step, u.kind, u.attempt, u.outcome, u.result::jsonb,
           u.error::jsonb, u.started_at, u.finished_at, u.n
      FROM unnest(
               saga_ids, steps, kinds, attempts, outcomes, results, errors,
               started, finished
           ) WITH ORDINALITY AS u(
               saga_id, step, kind, attempt, outcome, result, error,
               started_at, finished_at, n
           )
$$;
