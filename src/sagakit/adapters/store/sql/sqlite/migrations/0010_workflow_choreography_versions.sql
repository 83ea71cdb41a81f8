-- 0009: workflow instances and tracked choreographies record the definition
-- they started on, as sagas do since 0008: its version and structural
-- fingerprint (NULL for rows written before this migration: unknown, trust
-- the version).
ALTER TABLE sagakit_workflow ADD COLUMN definition_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE sagakit_workflow ADD COLUMN fingerprint TEXT;
ALTER TABLE sagakit_choreography ADD COLUMN definition_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE sagakit_choreography ADD COLUMN fingerprint TEXT;
