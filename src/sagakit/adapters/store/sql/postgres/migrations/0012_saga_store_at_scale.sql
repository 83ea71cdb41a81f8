-- 0012: the saga store at scale (1M stored sagas). Saga ids compare in
-- byte order ("C"), so that an id prefix is a range of the primary key
-- whatever the database's collation. An index per shape of `list` (by saga
-- name, by name and status, waiting), the unfinished sagas in claim order
-- (claims, recovery and unfinished read only them; it replaces
-- sagakit_saga_claim, whose lease_until changed on every save), and the
-- number of sagas per name and status: triggers append each change to
-- sagakit_saga_count_change in the transaction that makes it (no two writers
-- update one row), and now and then fold the changes into
-- sagakit_saga_count; a count reads both, a few rows.
ALTER TABLE sagakit_saga ALTER COLUMN saga_id TYPE text COLLATE "C";

DROP INDEX sagakit_saga_claim;

CREATE INDEX sagakit_saga_name ON sagakit_saga (saga_name, created_at);

CREATE INDEX sagakit_saga_name_status
    ON sagakit_saga (saga_name, status, created_at);

CREATE INDEX sagakit_saga_waiting ON sagakit_saga (created_at)
    WHERE waiting IS NOT NULL;

CREATE INDEX sagakit_saga_unfinished ON sagakit_saga (created_at, saga_id)
    WHERE status IN ('running', 'compensating');

CREATE TABLE sagakit_saga_count (
    saga_name  text NOT NULL,
    status     text NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (saga_name, status)
);

CREATE TABLE sagakit_saga_count_change (
    saga_name  text NOT NULL,
    status     text NOT NULL,
    n          integer NOT NULL
);

CREATE FUNCTION sagakit_saga_count_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, n)
        VALUES (OLD.saga_name, OLD.status, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO sagakit_saga_count_change (saga_name, status, n)
        VALUES (NEW.saga_name, NEW.status, 1);
    END IF;
    -- One change in 256 (on average) folds the changes into the counts,
    -- unless another transaction is folding: folds never wait for each other
    IF random() < 1.0 / 256
       AND pg_try_advisory_xact_lock(7318267413062125618) THEN
        WITH folded AS (
            DELETE FROM sagakit_saga_count_change
            RETURNING saga_name, status, n
        )
        INSERT INTO sagakit_saga_count AS c (saga_name, status, n)
        SELECT saga_name, status, sum(n) FROM folded
         GROUP BY saga_name, status
        ON CONFLICT (saga_name, status) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sagakit_saga_count_insert_delete
    AFTER INSERT OR DELETE ON sagakit_saga
    FOR EACH ROW EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_update
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.saga_name IS DISTINCT FROM NEW.saga_name)
    EXECUTE FUNCTION sagakit_saga_count_change();

-- The sagas stored so far: writers wait for this transaction (the ALTER
-- above locked the table), so none is counted twice or missed
INSERT INTO sagakit_saga_count (saga_name, status, n)
SELECT saga_name, status, count(*) FROM sagakit_saga GROUP BY saga_name, status;
