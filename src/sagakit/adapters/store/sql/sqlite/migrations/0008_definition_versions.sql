-- 0008: each instance records the definition it started on: its version and
-- structural fingerprint (NULL for instances written before this migration:
-- unknown, trust the name). waiting is why no process drives the instance
-- (its definition is not registered where it was looked at), NULL if none.
ALTER TABLE sagakit_saga ADD COLUMN definition_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE sagakit_saga ADD COLUMN fingerprint TEXT;
ALTER TABLE sagakit_saga ADD COLUMN waiting TEXT;
