-- 0015: the number of sagas per name and status, every status counted.
-- 0012 counted the ended sagas and read the unfinished ones from an index,
-- which costs as much as there are unfinished sagas (a backlog of 30,000
-- takes over 20 ms); now the triggers count every status, in one row per
-- name and status (SQLite has one writer at a time: nobody waits on them).
DROP TRIGGER sagakit_saga_count_insert;
DROP TRIGGER sagakit_saga_count_end;
DROP TRIGGER sagakit_saga_count_reopen;
DROP TRIGGER sagakit_saga_count_delete;

INSERT INTO sagakit_saga_count (saga_name, status, n)
SELECT saga_name, status, count(*) FROM sagakit_saga
 WHERE status IN ('running', 'compensating')
 GROUP BY saga_name, status;

CREATE TRIGGER sagakit_saga_count_insert
    AFTER INSERT ON sagakit_saga
BEGIN
    INSERT INTO sagakit_saga_count (saga_name, status, n)
    VALUES (NEW.saga_name, NEW.status, 1)
    ON CONFLICT (saga_name, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sagakit_saga_count_update
    AFTER UPDATE OF saga_name, status ON sagakit_saga
    WHEN OLD.status IS NOT NEW.status OR OLD.saga_name IS NOT NEW.saga_name
BEGIN
    UPDATE sagakit_saga_count SET n = n - 1
     WHERE saga_name = OLD.saga_name AND status = OLD.status;
    INSERT INTO sagakit_saga_count (saga_name, status, n)
    VALUES (NEW.saga_name, NEW.status, 1)
    ON CONFLICT (saga_name, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER sagakit_saga_count_delete
    AFTER DELETE ON sagakit_saga
BEGIN
    UPDATE sagakit_saga_count SET n = n - 1
     WHERE saga_name = OLD.saga_name AND status = OLD.status;
END;
