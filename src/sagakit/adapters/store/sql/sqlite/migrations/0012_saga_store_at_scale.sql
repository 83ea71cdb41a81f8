-- 0012: the saga store at scale (1M stored sagas): an index per shape of
-- `list` (by saga name, by name and status, waiting), the unfinished sagas
-- in claim order (claims, recovery and unfinished read only them; it
-- replaces sagakit_saga_claim), and the number of ended sagas per name and
-- status, kept by triggers in the transaction that ends (or reopens) a
-- saga; the unfinished ones are counted from sagakit_saga_status, which
-- holds few of them.
DROP INDEX sagakit_saga_claim;

CREATE INDEX sagakit_saga_name ON sagakit_saga (saga_name, created_at);

CREATE INDEX sagakit_saga_name_status
    ON sagakit_saga (saga_name, status, created_at);

CREATE INDEX sagakit_saga_waiting ON sagakit_saga (created_at)
    WHERE waiting IS NOT NULL;

CREATE INDEX sagakit_saga_unfinished ON sagakit_saga (created_at, saga_id)
    WHERE status IN ('running', 'compensating');

CREATE TABLE sagakit_saga_count (
    saga_name  TEXT NOT NULL,
    status     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (saga_name, status)
) WITHOUT ROWID;

INSERT INTO sagakit_saga_count (saga_name, status, n)
SELECT saga_name, status, count(*) FROM sagakit_saga
 WHERE status NOT IN ('running', 'compensating')
 GROUP BY saga_name, status;

CREATE TRIGGER sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga
    WHEN NEW.status NOT IN ('running', 'compensating')
BEGIN
    INSERT INTO sagakit_saga_count (saga_name, status, n)
    VALUES (NEW.saga_name, NEW.status, 1)
    ON CONFLICT (saga_name, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sagakit_saga_count_end
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    WHEN NEW.status NOT IN ('running', 'compensating')
         AND (OLD.status IS NOT NEW.status OR OLD.saga_name IS NOT NEW.saga_name)
BEGIN
    INSERT INTO sagakit_saga_count (saga_name, status, n)
    VALUES (NEW.saga_name, NEW.status, 1)
    ON CONFLICT (saga_name, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sagakit_saga_count_reopen
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    WHEN OLD.status NOT IN ('running', 'compensating')
         AND (OLD.status IS NOT NEW.status OR OLD.saga_name IS NOT NEW.saga_name)
BEGIN
    UPDATE sagakit_saga_count SET n = n - 1
     WHERE saga_name = OLD.saga_name AND status = OLD.status;
END;

CREATE TRIGGER sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga
    WHEN OLD.status NOT IN ('running', 'compensating')
BEGIN
    UPDATE sagakit_saga_count SET n = n - 1
     WHERE saga_name = OLD.saga_name AND status = OLD.status;
END;
