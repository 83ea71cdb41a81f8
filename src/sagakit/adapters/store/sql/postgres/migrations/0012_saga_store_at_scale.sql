-- 0012: the saga store at scale (1M stored sagas). Saga ids compare in
-- byte order ("C"), so that an id prefix is a range of the primary key
-- whatever the database's collation. An index per shape of `list` (by saga
-- name, by name and status, waiting), the unfinished sagas in claim order
-- (claims, recovery and unfinished read only them; it replaces
-- sagakit_saga_claim, whose lease_until changed on every save), and the
-- number of ended sagas per name and status, kept by triggers in the
-- transaction that ends (or reopens) a saga; the unfinished ones are
-- counted from sagakit_saga_status, which holds few of them.
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
    shard      integer NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (saga_name, status, shard)
);

-- Add change to the count of a name and status in a row of it that no other
-- transaction is changing (a new row if all are): writers never wait for
-- each other, and there are as many rows as writers at once at most
CREATE FUNCTION sagakit_saga_count_add(counted text, ended text, change integer)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    free integer;
BEGIN
    SELECT c.shard INTO free FROM sagakit_saga_count AS c
     WHERE c.saga_name = counted AND c.status = ended
     LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        UPDATE sagakit_saga_count AS c SET n = c.n + change
         WHERE c.saga_name = counted AND c.status = ended AND c.shard = free;
    ELSE
        INSERT INTO sagakit_saga_count AS c (saga_name, status, shard, n)
        VALUES (counted, ended, pg_backend_pid(), change)
        ON CONFLICT (saga_name, status, shard)
        DO UPDATE SET n = c.n + excluded.n;
    END IF;
END;
$$;

CREATE FUNCTION sagakit_saga_count_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status NOT IN ('running', 'compensating') THEN
        PERFORM sagakit_saga_count_add(OLD.saga_name, OLD.status, -1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status NOT IN ('running', 'compensating') THEN
        PERFORM sagakit_saga_count_add(NEW.saga_name, NEW.status, 1);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga
    FOR EACH ROW WHEN (NEW.status NOT IN ('running', 'compensating'))
    EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_update
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    FOR EACH ROW
    WHEN ((OLD.status IS DISTINCT FROM NEW.status
           OR OLD.saga_name IS DISTINCT FROM NEW.saga_name)
          AND (OLD.status NOT IN ('running', 'compensating')
               OR NEW.status NOT IN ('running', 'compensating')))
    EXECUTE FUNCTION sagakit_saga_count_change();

CREATE TRIGGER sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga
    FOR EACH ROW WHEN (OLD.status NOT IN ('running', 'compensating'))
    EXECUTE FUNCTION sagakit_saga_count_change();

-- The sagas ended so far: writers wait for this transaction (the ALTER
-- above locked the table), so none is counted twice or missed
INSERT INTO sagakit_saga_count (saga_name, status, shard, n)
SELECT saga_name, status, 0, count(*) FROM sagakit_saga
 WHERE status NOT IN ('running', 'compensating')
 GROUP BY saga_name, status;
