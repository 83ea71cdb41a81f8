-- 0015: the number of sagas per name and status, every status counted,
-- kept without a row that writers update.
--
-- 0012 counted the ended sagas by adding each change to a row of
-- sagakit_saga_count: a transaction that ended many sagas updated the same
-- row over and over, each update slower than the last (a 50,000-row insert
-- stalled for minutes), and rows were held until commit. It counted the
-- unfinished sagas from an index, which after a busy hour holds an entry for
-- every version of every saga that ran since the last vacuum (80,000 of them
-- for 1,200 unfinished sagas: 2 s for the first count).
--
-- Now a trigger appends each change (+1, -1) to sagakit_saga_count_change,
-- which no writer updates or waits for; sagakit_saga_count holds the totals
-- folded so far, one row per name and status, and a count is the total plus
-- the changes not folded yet. Every 1,024th change folds the committed
-- changes into the totals (sagakit_saga_count_fold), in at most one
-- transaction at a time. Writers wait for this migration (it locks
-- sagakit_saga), so no saga is counted twice or missed.
LOCK TABLE sagakit_saga IN SHARE ROW EXCLUSIVE MODE;

DROP TRIGGER sagakit_saga_count_insert ON sagakit_saga;
DROP TRIGGER sagakit_saga_count_update ON sagakit_saga;
DROP TRIGGER sagakit_saga_count_delete ON sagakit_saga;
DROP FUNCTION sagakit_saga_count_change();
DROP FUNCTION sagakit_saga_count_add(text, text, integer);

ALTER TABLE sagakit_saga_count RENAME TO sagakit_saga_count_sharded;
ALTER INDEX sagakit_saga_count_pkey RENAME TO sagakit_saga_count_sharded_pkey;

CREATE TABLE sagakit_saga_count (
    saga_name  text NOT NULL,
    status     text NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (saga_name, status)
);

INSERT INTO sagakit_saga_count (saga_name, status, n)
SELECT saga_name, status, sum(n) FROM (
    SELECT saga_name, status, n FROM sagakit_saga_count_sharded
    UNION ALL
    SELECT saga_name, status, count(*) FROM sagakit_saga
     WHERE status IN ('running', 'compensating')
     GROUP BY saga_name, status
) AS counted
 GROUP BY saga_name, status
HAVING sum(n) <> 0;

DROP TABLE sagakit_saga_count_sharded;

CREATE TABLE sagakit_saga_count_change (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    saga_name  text NOT NULL,
    status     text NOT NULL,
    change     integer NOT NULL
);

-- Fold the committed changes into the totals; returns how many it folded
-- (0 if another transaction is folding, or in a transaction that is not
-- READ COMMITTED, where a fold could meet a conflict). Any session may call
-- it at any time: counts read the same before and after.
CREATE FUNCTION sagakit_saga_count_fold() RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock(7318267413062125618) THEN
        RETURN 0;
    END IF;
    WITH gone AS (
        DELETE FROM sagakit_saga_count_change
        RETURNING saga_name, status, change
    ), summed AS (
        SELECT saga_name, status, sum(change) AS n, count(*) AS changes
          FROM gone GROUP BY saga_name, status
    ), added AS (
        INSERT INTO sagakit_saga_count AS c (saga_name, status, n)
        SELECT saga_name, status, n FROM summed
        ON CONFLICT (saga_name, status) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT coalesce(sum(changes), 0) INTO folded FROM summed;
    RETURN folded;
END;
$$;

-- Append the change of a saga that is created, changes status or name, or
-- is deleted. Every 1,024th change folds, once per transaction at most: a
-- transaction with many changes does not read its own folded ones again
-- and again.
CREATE FUNCTION sagakit_saga_count_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    made bigint;
    appended integer := 1;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (NEW.saga_name, NEW.status, 1);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (OLD.saga_name, OLD.status, -1);
    ELSE
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (OLD.saga_name, OLD.status, -1), (NEW.saga_name, NEW.status, 1);
        appended := 2;
    END IF;
    made := currval('sagakit_saga_count_change_id_seq');
    IF made % 1024 < appended
       AND current_setting('sagakit.count_folded', true) IS DISTINCT FROM 'yes'
    THEN
        PERFORM set_config('sagakit.count_folded', 'yes', true);
        PERFORM sagakit_saga_count_fold();
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga
    FOR EACH ROW EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_update
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.saga_name IS DISTINCT FROM NEW.saga_name)
    EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga
    FOR EACH ROW EXECUTE FUNCTION sagakit_saga_count_change();
