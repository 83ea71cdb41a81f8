-- 0009: a workflow instance keeps what it ended with and what started it.
-- result is the JSON value its last step returned (NULL: none, or not
-- succeeded); start_digest a hash of its first call (step, input, initial
-- state), so a start of the same id with another call is refused (NULL for
-- instances written before this migration: any start returns them).
ALTER TABLE sagakit_workflow ADD COLUMN result TEXT;
ALTER TABLE sagakit_workflow ADD COLUMN start_digest TEXT;
