-- 0015: the number of ended sagas per name and status, kept without a row
-- that writers update. 0012's triggers added each change to a row of
-- sagakit_saga_count: a transaction that ended many sagas updated the same
-- row over and over, each update slower than the last (a 50,000-row insert
-- stalled for minutes), and rows were held until commit. Now each change
-- appends a row (+1 or -1) to sagakit_saga_count_change, which no writer
-- updates or waits for; sagakit_saga_count holds the totals folded so far,
-- one row per name and status, and a count is the total plus the changes
-- not folded yet. Every 1,024th change folds the committed changes into the
-- totals (sagakit_saga_count_fold), in at most one transaction at a time.
-- Writers wait for this migration (it locks sagakit_saga), so no change is
-- counted twice or missed.
LOCK TABLE sagakit_saga IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE sagakit_saga_count RENAME TO sagakit_saga_count_sharded;
ALTER INDEX sagakit_saga_count_pkey RENAME TO sagakit_saga_count_sharded_pkey;

CREATE TABLE sagakit_saga_count (
    saga_name  text NOT NULL,
    status     text NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (saga_name, status)
);

INSERT INTO sagakit_saga_count (saga_name, status, n)
SELECT saga_name, status, sum(n) FROM sagakit_saga_count_sharded
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

-- Append the change of a saga that ends, reopens, is renamed or deleted
-- (0012's triggers call it). Every 1,024th change folds, once per
-- transaction at most: a transaction with many changes does not read its
-- own folded ones again and again.
CREATE OR REPLACE FUNCTION sagakit_saga_count_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    made bigint;
    due boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status NOT IN ('running', 'compensating') THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (OLD.saga_name, OLD.status, -1) RETURNING id INTO made;
        due := made % 1024 = 0;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status NOT IN ('running', 'compensating') THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, change)
        VALUES (NEW.saga_name, NEW.status, 1) RETURNING id INTO made;
        due := due OR made % 1024 = 0;
    END IF;
    IF due AND current_setting('sagakit.count_folded', true)
               IS DISTINCT FROM 'yes' THEN
        PERFORM set_config('sagakit.count_folded', 'yes', true);
        PERFORM sagakit_saga_count_fold();
    END IF;
    RETURN NULL;
END;
$$;

DROP FUNCTION sagakit_saga_count_add(text, text, integer);
