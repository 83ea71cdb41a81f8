-- 0019: a notice on the channel sagakit_lock_freed when a transaction that
-- let go of a lock key, or left a key's queue, commits: a driver in another
-- process whose sagas queue for locks listens to it (LISTEN) and looks at
-- the store at once instead of at its next poll. Row triggers: a save that
-- changes no lock pays nothing; PostgreSQL sends one notice per transaction.
CREATE FUNCTION sagakit_lock_freed() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagakit_lock_freed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER sagakit_lock_freed
    AFTER DELETE ON sagakit_lock
    FOR EACH ROW EXECUTE FUNCTION sagakit_lock_freed();

CREATE TRIGGER sagakit_lock_waiter_gone
    AFTER DELETE ON sagakit_lock_waiter
    FOR EACH ROW EXECUTE FUNCTION sagakit_lock_freed();
